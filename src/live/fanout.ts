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
//   member  one graphql-ws subscription of a group: a bounded queue of those shared payloads,
//           oldest dropped (and counted) when its socket does not keep up. The event right
//           after such a gap is executed again for that member alone, so that its
//           `droppedBefore` is its own.
//   writer  one per socket (src/live/socket-writer.ts): the frames of all its members go out
//           together, corked into one syscall, at most every MIN_WRITE_INTERVAL_MS; nothing more
//           is written until the previous batch has reached the kernel, so a client that stops
//           reading fills its members' queues instead of the kernel's. The writer counts the
//           socket's unsent bytes and closes it (1008 "slow consumer") past the limit.
//
// Members are what the bus counts as subscribers (subscriberCount, subscriberStats); group
// streams are not. graphql-ws still owns the protocol: the member is the async iterator its
// `subscribe` hook returns, and `return()` (client `complete`, socket closed) ends it. The
// member never yields: its `next` frames, built here in graphql-ws's exact format, are written
// by its socket's writer.
import type { ExecutionArgs, ExecutionResult } from 'graphql';
import type { WebSocket } from 'ws';
import type { Delivered, LiveBus, LiveStreamOpener, SubscriberStats } from './events.js';
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

/** One event's result, shared by the members of a group. */
interface Shared {
  /** The event it was executed from (undefined only if the stream did not say). */
  event: Delivered<object> | undefined;
  payload: string;
  /** UTF-8 size of the payload, counted once for every member that queues it. */
  bytes: number;
}

class Group {
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

  constructor(
    readonly fanout: WsFanout,
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

class Member implements AsyncIterableIterator<ExecutionResult>, SubscriberStats {
  readonly capacity: number;
  /** Events this subscriber missed since it subscribed. */
  dropped = 0;
  private readonly ring: Array<Shared | undefined>;
  /** Per slot: events this member dropped just before it (beyond the event's own droppedBefore). */
  private readonly gaps: number[];
  private head = 0;
  private size = 0;
  /** The queue's head executed again with this member's own droppedBefore (in flight while payload is null). */
  private again: { item: Shared; gap: number; payload: string | null } | null = null;
  private readonly prefix: string;
  /** Bytes of the frames in the queue (what the socket's writer counts against its limit). */
  private bytes = 0;
  private readonly untrack: () => void;
  private ended = false;
  private waiter: { resolve: (r: IteratorResult<ExecutionResult>) => void; reject: (err: unknown) => void } | null = null;

  constructor(
    private readonly group: Group,
    private readonly writer: SocketWriter,
    id: string,
  ) {
    this.capacity = group.fanout.bus.subscriberCapacity;
    this.ring = new Array(this.capacity);
    this.gaps = new Array(this.capacity).fill(0);
    this.prefix = `{"id":${JSON.stringify(id)},"type":"next","payload":`;
    this.untrack = group.fanout.bus.track(this);
    writer.add(this);
  }

  private frameBytes(item: Shared): number {
    return this.prefix.length + item.bytes + 1;
  }

  get queued(): number {
    return this.size;
  }

  /**
   * When the queue is full (in events, or in bytes: its share of the socket's limit) the oldest
   * go, and the next one carries the gap. O(1) per event dropped.
   */
  push(item: Shared): void {
    if (this.ended) return;
    let gap = 0;
    let delta = this.frameBytes(item);
    const maxBytes = this.writer.sourceMaxBytes;
    while (this.size > 0 && (this.size === this.capacity || this.bytes + delta > maxBytes)) {
      gap += 1 + this.gaps[this.head]!;
      delta -= this.frameBytes(this.ring[this.head]!);
      this.ring[this.head] = undefined;
      this.head = (this.head + 1) % this.capacity;
      this.size--;
      this.dropped++;
      this.group.fanout.bus.countDropped(1);
    }
    const slot = (this.head + this.size) % this.capacity;
    this.ring[slot] = item;
    this.gaps[slot] = 0;
    this.gaps[this.head] += gap; // the new head (the item itself when the queue was emptied)
    this.size++;
    this.bytes += delta;
    this.writer.mark(this);
    this.writer.queue(delta); // last: it may close the socket and end this member
  }

  /** Appends its queued frames to `frames`; stops at a head that is being executed again. */
  drainInto(frames: string[]): void {
    const before = this.bytes;
    this.takeInto(frames);
    this.writer.queue(this.bytes - before);
  }

  private takeInto(frames: string[]): void {
    while (this.size > 0) {
      const item = this.ring[this.head]!;
      const gap = this.gaps[this.head]!;
      let payload = item.payload;
      if (gap > 0 && item.event) {
        const again = this.again;
        if (!again || again.item !== item || again.gap !== gap) {
          this.executeAgain(item, gap);
          return;
        }
        if (again.payload === null) return;
        payload = again.payload;
        this.again = null;
      }
      frames.push(`${this.prefix + payload}}`);
      this.bytes -= this.frameBytes(item);
      this.ring[this.head] = undefined;
      this.gaps[this.head] = 0;
      this.head = (this.head + 1) % this.capacity;
      this.size--;
    }
  }

  private executeAgain(item: Shared, gap: number): void {
    const again = { item, gap, payload: null as string | null };
    this.again = again;
    const event = item.event!;
    this.group
      .executeAgain({ ...event, droppedBefore: event.droppedBefore + gap })
      .then(
        (payload) => (again.payload = payload),
        () => (again.payload = item.payload), // cannot happen with our resolvers; never stall the queue on it
      )
      .finally(() => {
        if (this.again === again && !this.ended) this.writer.mark(this);
      });
  }

  next(): Promise<IteratorResult<ExecutionResult>> {
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => (this.waiter = { resolve, reject }));
  }

  /** The subscriber went away (client `complete`, socket closed). */
  return(): Promise<IteratorResult<ExecutionResult>> {
    if (this.finish()) this.group.leave(this);
    return Promise.resolve({ value: undefined, done: true });
  }

  /** Its socket was closed as a slow consumer: the same as the subscriber going away. */
  stop(): void {
    void this.return();
  }

  throw(err?: unknown): Promise<IteratorResult<ExecutionResult>> {
    void this.return();
    return Promise.reject(err);
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /** The group's execution ended: graphql-ws then sends `complete` (or `error` with `failure`). */
  end(failure: unknown): void {
    if (!this.finish()) return;
    const w = this.waiter;
    this.waiter = null;
    if (failure !== null) w?.reject(failure);
    else w?.resolve({ value: undefined, done: true });
  }

  private finish(): boolean {
    if (this.ended) return false;
    this.ended = true;
    this.ring.fill(undefined);
    this.size = 0;
    this.writer.queue(-this.bytes);
    this.bytes = 0;
    this.again = null;
    this.untrack();
    this.writer.remove(this);
    const w = this.waiter;
    this.waiter = null;
    w?.resolve({ value: undefined, done: true });
    return true;
  }
}
