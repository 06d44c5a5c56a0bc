// Websocket fan-out for GraphQL subscriptions (graphql-ws).
//
// Executing and serializing every event once per subscriber, and writing one frame (one
// syscall) per event per socket, cost tens of µs of CPU per delivery: a few hundred dashboards
// watching a busy proxy fell seconds behind and dropped. Here subscriptions that would produce
// the same bytes share the work:
//
//   group   the subscriptions with the same key (the caller's: operation text, variables and
//           an equivalent principal). ONE subscription per group runs through yoga's envelop
//           (context, auth scopes, error masking); its resolver opens the group's event stream
//           (GraphQLContext.openLiveStream) and each event's result is serialized once.
//   member  one graphql-ws subscription of a group (src/live/fanout-member.ts): a bounded
//           queue of those shared payloads, oldest dropped (and counted) when its socket does
//           not keep up. The event right after such a gap is executed again for that member
//           alone, so that its `droppedBefore` is its own.
//   writer  one per socket (src/live/socket-writer.ts): the frames of all its members go out
//           together, corked into one syscall, at most every MIN_WRITE_INTERVAL_MS; nothing more
//           is written until the previous batch has reached the kernel, so a client that stops
//           reading fills its members' queues instead of the kernel's. The writer counts the
//           socket's unsent bytes and closes it (1008 "slow consumer") past the limit.
//
// Members are what the bus counts as subscribers (subscriberCount, subscriberStats); group
// streams are not. graphql-ws still owns the protocol: the member is the async iterator its
// `subscribe` hook returns, and `return()` (client `complete`, socket closed) ends it. The
// member never yields: its `next` frames, in graphql-ws's exact format, are written by its
// socket's writer.
import { type ExecutionArgs, type ExecutionResult, GraphQLError } from 'graphql';
import type { WebSocket } from 'ws';
import type { Delivered, LiveBus, LiveStreamOpener } from './events.js';
import { Member, type MemberGroup, type Shared } from './fanout-member.js';
import { type SocketWriter, SocketWriters, type WriterLimits } from './socket-writer.js';

type OperationResult = AsyncIterable<ExecutionResult> | ExecutionResult;
/** envelop's `subscribe` (yoga.getEnveloped): plugins and masking apply to each result. */
export type SubscribeFn = (args: ExecutionArgs) => OperationResult | Promise<OperationResult>;

export interface FanoutSubscription {
  /** Subscriptions with the same key share one execution: it must cover everything the result depends on. */
  key: string;
  args: ExecutionArgs;
  subscribe: SubscribeFn;
  socket: WebSocket;
  /** The graphql-ws operation id. */
  id: string;
}

const isAsyncIterable = (x: unknown): x is AsyncIterable<ExecutionResult> =>
  typeof x === 'object' && x !== null && typeof (x as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function';

/** TOLLGATE_LIVE_MAX_SUBSCRIBERS reached: a new subscription (a group's first, or a member joining one) is refused. */
export function tooManySubscribers(): GraphQLError {
  return new GraphQLError('This instance serves as many live subscriptions as it may (TOLLGATE_LIVE_MAX_SUBSCRIBERS); try again later.', {
    extensions: { code: 'TOO_MANY_SUBSCRIPTIONS' },
  });
}

/** The `payload` of a graphql-ws `next` message, as graphql-ws itself would write it. */
function nextPayload(result: ExecutionResult): string {
  const { errors, ...rest } = result;
  return JSON.stringify(errors ? { ...rest, errors: errors.map((e) => e.toJSON()) } : rest);
}

export class WsFanout {
  private readonly groups = new Map<string, Group>();
  private readonly writers: SocketWriters;

  constructor(
    readonly bus: LiveBus,
    limits?: WriterLimits,
  ) {
    this.writers = new SocketWriters(limits);
  }

  /** Closes `socket` as a slow consumer if it is over its byte limit (what graphql-ws writes itself). */
  checkBuffer(socket: WebSocket): void {
    this.writers.for(socket).checkBuffer();
  }

  /** Bytes waiting to be sent to websocket subscribers, all sockets together. */
  get bufferedBytes(): number {
    return this.writers.bufferedBytes;
  }

  /** What graphql-ws's `subscribe` hook returns for one subscription. */
  async subscribe(sub: FanoutSubscription): Promise<OperationResult> {
    // Checked here, once per subscriber (a group's re-executions after a gap open no stream).
    if (this.bus.full) return { errors: [tooManySubscribers()] };
    const existing = this.groups.get(sub.key);
    let group = existing;
    if (!group) {
      group = new Group(this, sub.key, sub.args, sub.subscribe);
      this.groups.set(sub.key, group); // before it starts, so that a failed start removes it
      group.start();
    }
    const standalone = await group.started;
    // Not shareable (an error, or a stream not opened through the group): the first subscriber
    // gets that result; the others run on their own, exactly as without the fan-out.
    if (standalone !== null) return existing ? sub.subscribe(sub.args) : standalone;
    if (group.closed) return this.subscribe(sub); // it ended while we waited: start afresh
    const member = group.join(this.writers.for(sub.socket), sub.id);
    group.run();
    return member;
  }

  /** Shared groups now running (for tests and diagnostics). */
  get groupCount(): number {
    return this.groups.size;
  }

  forget(group: Group): void {
    if (this.groups.get(group.key) === group) this.groups.delete(group.key);
  }
}

class Group implements MemberGroup {
  readonly members = new Set<Member>();
  /** Resolves null when the group runs; otherwise with the first subscriber's own result. */
  started: Promise<OperationResult | null> = Promise.resolve(null);
  closed = false;
  private readonly context: object;
  private source: AsyncIterableIterator<unknown> | null = null;
  private results: AsyncIterator<ExecutionResult> | null = null;
  private running = false;
  /** Events the execution has taken from the stream and not yet turned into a result, in order. */
  private readonly executing: Array<Delivered<object>> = [];

  get bus(): LiveBus {
    return this.fanout.bus;
  }

  constructor(
    private readonly fanout: WsFanout,
    readonly key: string,
    private readonly args: ExecutionArgs,
    private readonly subscribeFn: SubscribeFn,
  ) {
    const open: LiveStreamOpener = (topic, accept) => {
      const stream = fanout.bus.source(topic, accept, fanout.bus.subscriberCapacity, {
        onDeliver: (event) => this.executing.push(event),
        // The execution fell behind (CPU): every member misses the event. The next result
        // carries the gap in its droppedBefore, which is then right for all of them.
        onDrop: () => {
          for (const m of this.members) m.dropped++;
          fanout.bus.countDropped(this.members.size);
        },
      });
      this.source = stream;
      return stream;
    };
    this.context = { ...(args.contextValue as object), openLiveStream: open };
  }

  start(): void {
    this.started = this.subscribeOnce();
  }

  /** The one subscription through envelop; its resolver opens the group's stream. */
  private async subscribeOnce(): Promise<OperationResult | null> {
    let result: OperationResult;
    try {
      result = await this.subscribeFn({ ...this.args, contextValue: this.context });
    } catch (err) {
      this.discard();
      throw err;
    }
    if (this.source === null || !isAsyncIterable(result)) {
      this.discard();
      return result;
    }
    this.results = result[Symbol.asyncIterator]();
    return null;
  }

  private discard(): void {
    this.closed = true;
    this.fanout.forget(this);
    void this.source?.return?.();
  }

  join(writer: SocketWriter, id: string): Member {
    const member = new Member(this, writer, id);
    this.members.add(member);
    return member;
  }

  /** Starts executing events (after the first member joined, so it misses none). */
  run(): void {
    if (this.running || !this.results) return;
    this.running = true;
    void this.pump(this.results);
  }

  leave(member: Member): void {
    this.members.delete(member);
    if (this.members.size === 0) this.close();
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    this.fanout.forget(this);
    // Ends the execution's stream, which closes the group's queue and detaches it from the topic.
    void this.results?.return?.();
  }

  private async pump(results: AsyncIterator<ExecutionResult>): Promise<void> {
    let failure: unknown = null;
    try {
      for (;;) {
        const next = await results.next();
        if (next.done || this.closed) break;
        const payload = nextPayload(next.value);
        const shared: Shared = { event: this.executing.shift(), payload, bytes: Buffer.byteLength(payload) };
        for (const m of this.members) m.push(shared);
      }
    } catch (err) {
      failure = err;
    }
    this.closed = true;
    this.fanout.forget(this);
    for (const m of [...this.members]) m.end(failure);
    this.members.clear();
  }

  /** One event executed again for one member (after a gap of its own), through the same envelop. */
  async executeAgain(event: Delivered<object>): Promise<string> {
    const once: LiveStreamOpener = <T extends object>() => single(event as Delivered<T>);
    const result = await this.subscribeFn({ ...this.args, contextValue: { ...this.context, openLiveStream: once } });
    if (!isAsyncIterable(result)) return nextPayload(result);
    const it = result[Symbol.asyncIterator]();
    try {
      const first = await it.next();
      if (first.done) throw new Error('the execution of one event produced no result');
      return nextPayload(first.value);
    } finally {
      await it.return?.();
    }
  }
}

async function* single<T>(event: T): AsyncGenerator<T> {
  yield event;
}
