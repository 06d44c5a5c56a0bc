// Retry budgets, one per route (the scheme of Finagle's RetryBudget). Every request deposits
// `percent` of a retry and every retry withdraws one, over a sliding window; a reserve of
// `minPerSecond` lets a quiet route still retry. When every target of a route fails under
// load, retries then add at most `percent` (plus the reserve) to the upstream traffic instead
// of multiplying it by the number of attempts each request may make: no retry storm against
// upstreams that are already down, and the failing requests end fast.
//
// A retry is any attempt after a request's first, failover to another target included. The
// first attempt is never refused. Circuit breakers (routing/health.ts) act per target on
// consecutive failures; the budget acts per route on volume, and covers the time before the
// breakers open and the half-open probes after.

export interface RetryBudgetOptions {
  /** Retries allowed per 100 requests, over the window. */
  percent: number;
  /** Retries allowed per second of window whatever the traffic. */
  minPerSecond: number;
  windowSeconds: number;
}

export const DEFAULT_RETRY_BUDGET: RetryBudgetOptions = { percent: 20, minPerSecond: 10, windowSeconds: 10 };

/** One-second buckets of requests and retries, the oldest overwritten as time moves on. */
export class RetryBudget {
  private readonly seconds: Float64Array;
  private readonly requests: Int32Array;
  private readonly retries: Int32Array;

  constructor(
    private readonly opts: RetryBudgetOptions,
    private readonly now: () => number = Date.now,
  ) {
    this.seconds = new Float64Array(opts.windowSeconds).fill(-1);
    this.requests = new Int32Array(opts.windowSeconds);
    this.retries = new Int32Array(opts.windowSeconds);
  }

  /** Counts a request (once, before its first attempt). */
  request(): void {
    this.requests[this.bucket()]!++;
  }

  /** Counts and allows a retry if the budget has room; false means: do not retry. */
  tryRetry(): boolean {
    if (!this.hasRoom()) return false;
    this.retries[this.bucket()]!++;
    return true;
  }

  /** Whether one more retry would be allowed now (counts nothing). */
  hasRoom(): boolean {
    const second = this.seconds[this.bucket()]!;
    let requests = 0;
    let retries = 0;
    for (let i = 0; i < this.seconds.length; i++) {
      if (second - this.seconds[i]! >= this.seconds.length) continue; // outside the window
      requests += this.requests[i]!;
      retries += this.retries[i]!;
    }
    const allowed = this.opts.minPerSecond * this.opts.windowSeconds + (this.opts.percent / 100) * requests;
    return retries + 1 <= allowed;
  }

  /** The bucket of the current second, emptied first if it last held an older second. */
  private bucket(): number {
    const second = Math.floor(this.now() / 1000);
    const i = second % this.seconds.length;
    if (this.seconds[i] !== second) {
      this.seconds[i] = second;
      this.requests[i] = 0;
      this.retries[i] = 0;
    }
    return i;
  }
}

/** The budgets of all routes, created on first use. */
/**
 * Budgets kept at most: a client may pin any `provider/model` name, and each is a route of its
 * own here. Past the bound the least recently used is dropped (it only starts counting again).
 */
const MAX_BUDGETS = 10_000;

export class RetryBudgets {
  private readonly byRoute = new Map<string, RetryBudget>();

  constructor(
    private readonly opts: RetryBudgetOptions = DEFAULT_RETRY_BUDGET,
    private readonly now: () => number = Date.now,
  ) {}

  for(route: string): RetryBudget {
    let budget = this.byRoute.get(route);
    if (budget) {
      // Most recently used last (a Map keeps insertion order), once the bound is in play.
      if (this.byRoute.size >= MAX_BUDGETS / 2) {
        this.byRoute.delete(route);
        this.byRoute.set(route, budget);
      }
      return budget;
    }
    budget = new RetryBudget(this.opts, this.now);
    if (this.byRoute.size >= MAX_BUDGETS) this.byRoute.delete(this.byRoute.keys().next().value!);
    this.byRoute.set(route, budget);
    return budget;
  }

  get size(): number {
    return this.byRoute.size;
  }
}
