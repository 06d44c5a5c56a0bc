// Typed live events and the in-process bus they travel on. The GraphQL subscriptions read
// from here; a Redis bridge (src/live/redis-bridge.ts, when REDIS_URL is set) republishes
// across instances.
import { type Delivered, LiveStream, type LiveStreamHooks } from './stream.js';

export type DecisionOutcome =
  | 'ATTEMPT' // a target was chosen and is being called
  | 'SUCCESS'
  | 'FAILOVER' // this attempt failed, the next target will be tried
  | 'SKIPPED' // a candidate was not tried (breaker open, cooling down after 429, …)
  | 'FAILED' // the request failed for good
  | 'REJECTED' // refused before routing (auth, validation, limits)
  | 'CANCELLED'
  | 'CACHE_HIT'; // answered from the response cache (reason: cache_exact | cache_semantic)

export const DECISION_OUTCOMES: readonly DecisionOutcome[] = ['ATTEMPT', 'SUCCESS', 'FAILOVER', 'SKIPPED', 'FAILED', 'REJECTED', 'CANCELLED', 'CACHE_HIT'];

export interface Candidate {
  provider: string;
  model: string;
  state: 'closed' | 'open' | 'half_open';
  ewmaLatencyMs: number | null;
  /** Why it will be (or was) skipped: circuit_open, cooling_down, probe_in_flight, …; null: tried. */
  skipReason?: string | null;
}

export interface RoutingDecision {
  requestId: string;
  receiptId: string | null;
  at: string;
  teamId: string | null;
  apiKeyId: string | null;
  feature: string | null;
  requestedModel: string;
  route: string | null;
  strategy: string | null;
  attempt: number;
  provider: string | null;
  model: string | null;
  outcome: DecisionOutcome;
  reason: string | null;
  latencyMs: number | null;
  candidates: Candidate[];
  /** What decided (DESIGN §5): the rule, the classifier's tier, the experiment and variant. */
  rule?: string | null;
  classifierTier?: string | null;
  experiment?: string | null;
  variant?: string | null;
  /** CASCADE: whether this step's answer passed the acceptance checks, and if not, why. */
  accepted?: boolean | null;
  rejectReason?: string | null;
}

export type BudgetEventKind =
  | 'THRESHOLD' // spend crossed `thresholdPct` of the limit (alerting)
  | 'EXCEEDED' // spend reached the limit (action ALERT: requests continue)
  | 'BLOCKED' // a request was refused because the budget is exhausted (action BLOCK)
  | 'RESET'; // a new period started, spend back to 0

export const BUDGET_EVENT_KINDS: readonly BudgetEventKind[] = ['THRESHOLD', 'EXCEEDED', 'BLOCKED', 'RESET'];

export interface BudgetEvent {
  /** The team the budget belongs to (the key's team for API_KEY budgets). */
  teamId: string | null;
  budgetId: string;
  kind: BudgetEventKind;
  scope: 'TEAM' | 'API_KEY' | 'FEATURE';
  apiKeyId: string | null;
  feature: string | null;
  period: 'DAY' | 'MONTH' | 'TOTAL';
  action: 'BLOCK' | 'ALERT';
  spentUsd: number;
  limitUsd: number;
  /** For THRESHOLD: the percentage crossed (e.g. 80). */
  thresholdPct: number | null;
  /** The request that caused the event, when there is one. */
  requestId: string | null;
  at: string;
}

type Listener<T> = (event: T) => void;

/** A synchronous fan-out. Publishing with no listeners costs one array length check. */
export class Topic<T> {
  private listeners: Listener<T>[] = [];
  private watchers: Array<(count: number) => void> = [];

  get hasListeners(): boolean {
    return this.listeners.length > 0;
  }

  get listenerCount(): number {
    return this.listeners.length;
  }

  publish(event: T): void {
    for (const l of this.listeners) {
      try {
        l(event);
      } catch {
        // A listener's failure must never reach the request that published the event.
      }
    }
  }

  subscribe(listener: Listener<T>): () => void {
    this.listeners = [...this.listeners, listener];
    this.changed();
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.listeners = this.listeners.filter((l) => l !== listener);
      this.changed();
    };
  }

  /** Called with the listener count whenever a listener comes or goes (the Redis bridge uses it). */
  watch(watcher: (count: number) => void): () => void {
    this.watchers = [...this.watchers, watcher];
    return () => {
      this.watchers = this.watchers.filter((w) => w !== watcher);
    };
  }

  private changed(): void {
    const count = this.listeners.length;
    for (const w of this.watchers) {
      try {
        w(count);
      } catch {
        // ignore
      }
    }
  }
}

export interface StreamOptions {
  /** Events kept for a subscriber that has not taken them yet; beyond it the oldest are dropped. */
  capacity?: number;
}

/** Default per-subscriber buffer. */
export const DEFAULT_SUBSCRIBER_CAPACITY = 1000;

/** What the bus reports per open subscription (a LiveStream, or a websocket fan-out member). */
export interface SubscriberStats {
  readonly dropped: number;
  readonly queued: number;
  readonly capacity: number;
}

/** How a subscription resolver opens its event stream (see GraphQLContext.openLiveStream). */
export type LiveStreamOpener = <T extends object>(topic: Topic<T>, accept: (event: T) => boolean) => AsyncIterableIterator<Delivered<T>>;

export class LiveBus {
  readonly decisions = new Topic<RoutingDecision>();
  /** Budget thresholds crossed and blocks (emitted by the budget enforcement). */
  readonly budgets = new Topic<BudgetEvent>();
  /** Buffer size given to each new subscription. */
  subscriberCapacity = DEFAULT_SUBSCRIBER_CAPACITY;
  /**
   * Subscriptions served at once. Each costs the proxy a little on every event it publishes
   * (a filter, a push), inside the request: without a bound, one token opening sockets and
   * streams by the thousand slowed every request.
   */
  maxSubscribers = Number.POSITIVE_INFINITY;

  /** No room for another subscription. */
  get full(): boolean {
    return this.subscribers.size >= this.maxSubscribers;
  }

  private dropped = 0;
  private readonly subscribers = new Set<SubscriberStats>();

  /**
   * A subscriber's bounded queue over `topic`, as an async iterator (what GraphQL subscribe
   * resolvers return). `accept` runs synchronously in the publisher: keep it cheap. When the
   * subscriber falls `capacity` events behind, the OLDEST queued events are dropped (a live
   * view prefers the present), counted per subscriber and in `droppedTotal`, and the next
   * delivered event carries `droppedBefore` = how many were dropped since the previous one.
   * The publisher never waits: a push is O(1) whatever the subscriber does.
   */
  stream<T extends object>(topic: Topic<T>, accept: (event: T) => boolean = () => true, options: StreamOptions = {}): LiveStream<T> {
    const stream: LiveStream<T> = this.source(topic, accept, options.capacity ?? this.subscriberCapacity, {
      onDrop: () => this.countDropped(1),
      onClose: () => this.subscribers.delete(stream),
    });
    this.subscribers.add(stream);
    return stream;
  }

  /**
   * The same bounded queue over `topic`, but not counted as a subscriber: for a websocket
   * fan-out group, whose members are the subscribers (src/live/fanout.ts); `hooks` do the
   * counting.
   */
  source<T extends object>(topic: Topic<T>, accept: (event: T) => boolean, capacity: number, hooks: LiveStreamHooks): LiveStream<T> {
    const stream = new LiveStream<T>(capacity, {
      ...hooks,
      onClose: () => {
        unsubscribe();
        hooks.onClose?.();
      },
    });
    const unsubscribe = topic.subscribe((event) => {
      if (accept(event)) stream.push(event);
    });
    return stream;
  }

  /** Counts an open subscription that is not a LiveStream of this bus; returns its removal. */
  track(subscriber: SubscriberStats): () => void {
    this.subscribers.add(subscriber);
    return () => this.subscribers.delete(subscriber);
  }

  countDropped(n: number): void {
    this.dropped += n;
  }

  /** Events dropped for slow subscribers since start, all subscriptions together (for /metrics). */
  get droppedTotal(): number {
    return this.dropped;
  }

  /** Open subscriptions (GraphQL ones included). */
  get subscriberCount(): number {
    return this.subscribers.size;
  }

  /** Per open subscription: dropped so far and currently queued. */
  subscriberStats(): Array<{ dropped: number; queued: number; capacity: number }> {
    return [...this.subscribers].map((s) => ({ dropped: s.dropped, queued: s.queued, capacity: s.capacity }));
  }
}

export type { Delivered, LiveStream };
