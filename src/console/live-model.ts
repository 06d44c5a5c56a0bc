// What the live panel knows: per-second counts of the routing decisions that arrived (for
// rates and the chart) and the last requests, each with its decisions in order (candidates,
// skips, hops, final outcome). Pure data, no DOM.

export interface Candidate {
  provider: string;
  model: string;
  state: 'CLOSED' | 'OPEN' | 'HALF_OPEN';
  ewmaLatencyMs: number | null;
}

export type Outcome = 'ATTEMPT' | 'SUCCESS' | 'FAILOVER' | 'SKIPPED' | 'FAILED' | 'REJECTED' | 'CANCELLED' | 'CACHE_HIT';

export interface Decision {
  requestId: string;
  receiptId: string | null;
  at: string;
  teamId: string | null;
  feature: string | null;
  requestedModel: string;
  route: string | null;
  strategy: string | null;
  attempt: number;
  provider: string | null;
  model: string | null;
  outcome: Outcome;
  reason: string | null;
  latencyMs: number | null;
  droppedBefore: number;
  candidates: Candidate[];
}

export const DECISION_FIELDS = `requestId receiptId at teamId feature requestedModel route strategy attempt provider model
  outcome reason latencyMs droppedBefore candidates { provider model state ewmaLatencyMs }`;

/** Outcomes that end a request: each is one request in the rates. */
export const FINAL: ReadonlySet<Outcome> = new Set(['SUCCESS', 'FAILED', 'REJECTED', 'CANCELLED', 'CACHE_HIT']);
const ERROR: ReadonlySet<Outcome> = new Set(['FAILED', 'REJECTED', 'CANCELLED']);

export interface Counts {
  requests: number;
  errors: number;
  failovers: number;
  cacheHits: number;
}

const zero = (): Counts => ({ requests: 0, errors: 0, failovers: 0, cacheHits: 0 });

export interface RequestTrace {
  requestId: string;
  receiptId: string | null;
  teamId: string | null;
  feature: string | null;
  requestedModel: string;
  route: string | null;
  strategy: string | null;
  firstAt: string;
  events: Decision[];
  final: Decision | null;
}

/** Seconds of history for the chart; the rates are over the last RATE_SECONDS. */
export const HISTORY_SECONDS = 300;
export const RATE_SECONDS = 10;
const KEEP_REQUESTS = 200;

/** provider/model of a decision; decisions without one (rejections, all targets failed) share a row. */
export const targetKey = (provider: string | null, model: string | null) => (provider ? `${provider}/${model ?? ''}` : '(no provider)');

export class LiveModel {
  /** Unix second → totals and per-target counts of the decisions that arrived in it. */
  private readonly seconds = new Map<number, { total: Counts; byTarget: Map<string, Counts> }>();
  readonly requests = new Map<string, RequestTrace>();
  /** Events the server dropped for this subscriber (it read too slowly). */
  dropped = 0;
  /** Decisions received since the last reset. */
  received = 0;

  /** The second this panel started listening: the chart starts there (or a minute back). */
  private readonly firstSecond: number;

  private readonly startedAt: number;

  constructor(private readonly now: () => number = Date.now) {
    this.startedAt = now();
    this.firstSecond = Math.floor(this.startedAt / 1000);
  }

  add(d: Decision): void {
    this.received++;
    this.dropped += d.droppedBefore;
    const second = Math.floor(this.now() / 1000);
    let bucket = this.seconds.get(second);
    if (!bucket) {
      bucket = { total: zero(), byTarget: new Map() };
      this.seconds.set(second, bucket);
      for (const s of this.seconds.keys()) if (s <= second - HISTORY_SECONDS) this.seconds.delete(s);
    }
    const key = targetKey(d.provider, d.model);
    let target = bucket.byTarget.get(key);
    if (!target) bucket.byTarget.set(key, (target = zero()));
    for (const c of [bucket.total, target]) {
      if (FINAL.has(d.outcome)) c.requests++;
      if (ERROR.has(d.outcome)) c.errors++;
      if (d.outcome === 'FAILOVER') c.failovers++;
      if (d.outcome === 'CACHE_HIT') c.cacheHits++;
    }
    this.trace(d);
  }

  private trace(d: Decision): void {
    let t = this.requests.get(d.requestId);
    if (!t) {
      t = {
        requestId: d.requestId,
        receiptId: d.receiptId,
        teamId: d.teamId,
        feature: d.feature,
        requestedModel: d.requestedModel,
        route: d.route,
        strategy: d.strategy,
        firstAt: d.at,
        events: [],
        final: null,
      };
      this.requests.set(d.requestId, t);
      if (this.requests.size > KEEP_REQUESTS) this.requests.delete(this.requests.keys().next().value!);
    }
    t.receiptId ??= d.receiptId;
    t.route ??= d.route;
    t.events.push(d);
    if (FINAL.has(d.outcome)) t.final = d;
  }

  /** Requests, newest first. */
  latest(n: number): RequestTrace[] {
    return [...this.requests.values()].slice(-n).reverse();
  }

  /**
   * Per-second rates over the last RATE_SECONDS - 1 complete seconds and the current one so
   * far, divided by the time that covers (since listening began, if later; at least a second):
   * dividing by RATE_SECONDS showed a steady rate 0–10 % low, and ramping up from zero.
   */
  rates(): { total: Counts; byTarget: Map<string, Counts>; seconds: number } {
    const now = this.now();
    const from = Math.floor(now / 1000) - RATE_SECONDS + 1;
    const covered = Math.max(1, (now - Math.max(from * 1000, this.startedAt)) / 1000);
    const total = zero();
    const byTarget = new Map<string, Counts>();
    for (const [s, b] of this.seconds) {
      if (s < from) continue;
      addInto(total, b.total);
      for (const [k, c] of b.byTarget) {
        let t = byTarget.get(k);
        if (!t) byTarget.set(k, (t = zero()));
        addInto(t, c);
      }
    }
    const perSecond = (c: Counts): Counts => ({
      requests: c.requests / covered,
      errors: c.errors / covered,
      failovers: c.failovers / covered,
      cacheHits: c.cacheHits / covered,
    });
    return { total: perSecond(total), byTarget: new Map([...byTarget].map(([k, c]) => [k, perSecond(c)])), seconds: covered };
  }

  /**
   * The chart's columns: unix seconds, then requests, errors, failovers, cache hits per
   * second; from when the panel started listening (at least the last minute), up to the last
   * HISTORY_SECONDS.
   */
  series(): [number[], number[], number[], number[], number[]] {
    const end = Math.floor(this.now() / 1000);
    const from = Math.max(end - HISTORY_SECONDS + 1, Math.min(this.firstSecond, end - 59));
    const cols: [number[], number[], number[], number[], number[]] = [[], [], [], [], []];
    for (let s = from; s <= end; s++) {
      const c = this.seconds.get(s)?.total ?? zero();
      cols[0].push(s);
      cols[1].push(c.requests);
      cols[2].push(c.errors);
      cols[3].push(c.failovers);
      cols[4].push(c.cacheHits);
    }
    return cols;
  }
}

function addInto(into: Counts, c: Counts): void {
  into.requests += c.requests;
  into.errors += c.errors;
  into.failovers += c.failovers;
  into.cacheHits += c.cacheHits;
}
