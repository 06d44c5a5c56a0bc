// One subscriber's bounded queue, consumed as an async iterator. The publishing side (push)
// is synchronous and O(1): a ring buffer; when full the oldest event is overwritten and
// counted. The consuming side gets each event with `droppedBefore`: how many events were
// dropped since the previous delivery to this subscriber.

export type Delivered<T> = T & { droppedBefore: number };

export interface LiveStreamHooks {
  onDrop?: () => void;
  onClose?: () => void;
  /** Sees each event as it is handed to the consumer (the websocket fan-out pairs results with events). */
  // biome-ignore lint/suspicious/noExplicitAny: one hook sees events of every topic's type
  onDeliver?: (event: Delivered<any>) => void;
}

/**
 * Deliveries do not run inside the publisher's call (the proxy's request path) nor in one
 * unbounded microtask burst: a consumer asking for the next event gets a queued one at once
 * while the turn's budget lasts; otherwise streams with a waiting consumer and a queued event
 * are woken from one setImmediate (which renews the budget), round-robin: at most about
 * DELIVERIES_PER_TURN deliveries per event-loop turn. Each delivery
 * is then executed and sent by the GraphQL transport in that turn's microtasks. So between two
 * turns the proxy's own I/O always runs; when the subscribers need more CPU than is left, their
 * queues fill and drop (oldest first, counted) instead of the proxy slowing down.
 */
export const DELIVERIES_PER_TURN = 128;

class DeliveryScheduler {
  // biome-ignore lint/suspicious/noExplicitAny: streams of every topic's event type, woken alike
  private ready = new Set<LiveStream<any>>();
  private scheduled = false;
  private budget = DELIVERIES_PER_TURN;

  // biome-ignore lint/suspicious/noExplicitAny: as above
  wake(stream: LiveStream<any>): void {
    this.ready.add(stream);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.run);
    }
  }

  /** One delivery out of the budget; false when it is spent (until the next run renews it). */
  take(): boolean {
    if (this.budget === 0) return false;
    this.budget--;
    return true;
  }

  private readonly run = (): void => {
    this.scheduled = false;
    this.budget = DELIVERIES_PER_TURN;
    for (const stream of this.ready) {
      if (this.budget === 0) break;
      this.ready.delete(stream);
      if (stream.deliverOne()) this.budget--;
    }
    if (this.ready.size > 0 && !this.scheduled) {
      this.scheduled = true;
      setImmediate(this.run);
    }
  };
}

const scheduler = new DeliveryScheduler();

export class LiveStream<T extends object> implements AsyncIterableIterator<Delivered<T>> {
  private readonly ring: Array<T | undefined>;
  private head = 0;
  private size = 0;
  private pendingDrops = 0;
  private waiter: ((r: IteratorResult<Delivered<T>>) => void) | null = null;
  private closed = false;
  /** Dropped for this subscriber since it subscribed. */
  dropped = 0;

  constructor(
    readonly capacity: number,
    private readonly hooks: LiveStreamHooks = {},
  ) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError('capacity must be a positive integer');
    this.ring = new Array(capacity);
  }

  get queued(): number {
    return this.size;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Called by the publisher. Never blocks, never throws: O(1), no delivery work here. */
  push(event: T): void {
    if (this.closed) return;
    if (this.size === this.capacity) {
      // Drop the oldest: overwrite the head.
      this.ring[this.head] = undefined;
      this.head = (this.head + 1) % this.capacity;
      this.size--;
      this.dropped++;
      this.pendingDrops++;
      this.hooks.onDrop?.();
    }
    this.ring[(this.head + this.size) % this.capacity] = event;
    this.size++;
    if (this.waiter) scheduler.wake(this);
  }

  next(): Promise<IteratorResult<Delivered<T>>> {
    if (this.closed && this.size === 0) return Promise.resolve({ value: undefined, done: true });
    if (this.waiter) return Promise.reject(new Error('LiveStream: next() called while another next() is pending'));
    // Within this turn's budget a queued event is handed over at once (a consumer that keeps
    // up drains several per turn); beyond it, the consumer waits for the next turn.
    if (this.size > 0 && scheduler.take()) {
      const event = this.ring[this.head]!;
      this.ring[this.head] = undefined;
      this.head = (this.head + 1) % this.capacity;
      this.size--;
      return Promise.resolve({ value: this.deliver(event), done: false });
    }
    return new Promise((resolve) => {
      this.waiter = resolve;
      if (this.size > 0) scheduler.wake(this);
    });
  }

  /** Called by the scheduler: hands one event to the waiting consumer. */
  deliverOne(): boolean {
    const w = this.waiter;
    if (!w || this.size === 0) return false;
    const event = this.ring[this.head]!;
    this.ring[this.head] = undefined;
    this.head = (this.head + 1) % this.capacity;
    this.size--;
    this.waiter = null;
    w({ value: this.deliver(event), done: false });
    return true;
  }

  return(): Promise<IteratorResult<Delivered<T>>> {
    this.close();
    return Promise.resolve({ value: undefined, done: true });
  }

  throw(err?: unknown): Promise<IteratorResult<Delivered<T>>> {
    this.close();
    return Promise.reject(err);
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /** Ends the stream: queued events are discarded, a pending next() resolves done. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.ring.fill(undefined);
    this.size = 0;
    const w = this.waiter;
    this.waiter = null;
    w?.({ value: undefined, done: true });
    this.hooks.onClose?.();
  }

  private deliver(event: T): Delivered<T> {
    const droppedBefore = this.pendingDrops;
    this.pendingDrops = 0;
    const delivered = { ...event, droppedBefore };
    this.hooks.onDeliver?.(delivered);
    return delivered;
  }
}
