// One graphql-ws subscription of a fan-out group (src/live/fanout.ts): a bounded queue of the
// group's shared payloads, oldest dropped (and counted) when its socket does not keep up, and
// the async iterator graphql-ws's `subscribe` hook gets. It never yields: its socket's writer
// (src/live/socket-writer.ts) drains its frames, built here in graphql-ws's exact format.
import type { ExecutionResult } from 'graphql';
import type { Delivered, LiveBus, SubscriberStats } from './events.js';
import type { FrameSource, SocketWriter } from './socket-writer.js';

/** One event's result, shared by the members of a group. */
export interface Shared {
  /** The event it was executed from (undefined only if the stream did not say). */
  event: Delivered<object> | undefined;
  payload: string;
  /** UTF-8 size of the payload, counted once for every member that queues it. */
  bytes: number;
}

/** What a member needs of its group. */
export interface MemberGroup {
  readonly bus: LiveBus;
  /** One event executed again for one member (after a gap of its own): that member's payload. */
  executeAgain(event: Delivered<object>): Promise<string>;
  /** The member ended (subscriber gone, socket closed, or the group's own end). */
  leave(member: Member): void;
}

export class Member implements AsyncIterableIterator<ExecutionResult>, SubscriberStats, FrameSource {
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
  /** A failure that ended the group while no next() waited: the next one rejects with it. */
  private failure: unknown = null;
  private waiter: { resolve: (r: IteratorResult<ExecutionResult>) => void; reject: (err: unknown) => void } | null = null;

  constructor(
    private readonly group: MemberGroup,
    private readonly writer: SocketWriter,
    id: string,
  ) {
    this.capacity = group.bus.subscriberCapacity;
    this.ring = new Array(this.capacity);
    this.gaps = new Array(this.capacity).fill(0);
    this.prefix = `{"id":${JSON.stringify(id)},"type":"next","payload":`;
    this.untrack = group.bus.track(this);
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
      this.group.bus.countDropped(1);
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
    if (this.failure !== null) {
      const failure = this.failure;
      this.failure = null;
      return Promise.reject(failure);
    }
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
    // Taken before finish(), which resolves a waiting next() as done: a failure must reach the
    // client as an error, not as a normal end. Without a waiter, the next next() gets it.
    const w = this.waiter;
    this.waiter = null;
    if (!this.finish()) return;
    if (failure === null) w?.resolve({ value: undefined, done: true });
    else if (w) w.reject(failure);
    else this.failure = failure;
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
