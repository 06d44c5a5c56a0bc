// Typed live events and the in-process bus they travel on. The GraphQL subscriptions read
// from here; a Redis bridge (when REDIS_URL is set) republishes across instances.

export type DecisionOutcome =
  | 'ATTEMPT' // a target was chosen and is being called
  | 'SUCCESS'
  | 'FAILOVER' // this attempt failed, the next target will be tried
  | 'SKIPPED' // a candidate was not tried (breaker open, cooling down after 429, …)
  | 'FAILED' // the request failed for good
  | 'REJECTED' // refused before routing (auth, validation, limits)
  | 'CANCELLED';

export interface Candidate {
  provider: string;
  model: string;
  state: 'closed' | 'open' | 'half_open';
  ewmaLatencyMs: number | null;
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
}

type Listener<T> = (event: T) => void;

/** A synchronous fan-out. Publishing with no listeners costs one array length check. */
export class Topic<T> {
  private listeners: Listener<T>[] = [];

  get hasListeners(): boolean {
    return this.listeners.length > 0;
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
    return () => {
      this.listeners = this.listeners.filter((l) => l !== listener);
    };
  }
}

export class LiveBus {
  readonly decisions = new Topic<RoutingDecision>();
}
