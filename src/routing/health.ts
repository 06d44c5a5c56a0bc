// Per-target health: a circuit breaker (closed → open after N consecutive failures → half-open
// after a cooldown, where one probe decides), a Retry-After cooldown after 429s, and the speed
// estimates LEAST_LATENCY ranks by. Keyed by `provider/model`, in-process: each instance judges
// the upstreams it talks to.

export type BreakerState = 'closed' | 'open' | 'half_open';

export type Admission = { ok: true; probe: boolean } | { ok: false; reason: 'circuit_open' | 'cooling_down' | 'probe_in_flight'; untilMs: number };

interface Entry {
  consecutiveFailures: number;
  openedAt: number;
  state: BreakerState;
  probeInFlight: boolean;
  cooldownUntil: number;
  /** EWMA of a JSON answer's whole time (ms). */
  jsonMs: number | undefined;
  /** EWMA of a stream's time to its first token (ms): a stream's length is the answer's, not the target's. */
  ttftMs: number | undefined;
  /** EWMA of outcomes (1 failed, 0 answered): how many tries an answer takes here. */
  failureRate: number;
  /** EWMA of how long a failed call took (ms): what each failure costs before failover. */
  failMs: number | undefined;
  /** When an outcome last came in. */
  measuredAt: number;
  /** When a request was last sent to re-measure the target (claimRemeasure). */
  remeasuredAt: number;
}

const EWMA_ALPHA = 0.3;
/**
 * An estimate's weight fades with its age (time constant): a sample after a quiet spell mostly
 * replaces what was known, so a target that was slow once is judged by how it is now.
 */
const ESTIMATE_FADE_MS = 10_000;
/** A target not heard from for this long is stale: one request may be sent to re-measure it. */
export const STALE_AFTER_MS = 30_000;
/** The failure rate at which a target's expected failures stop growing (9 a success). */
const MAX_FAILURE_RATE = 0.9;
/**
 * A target failing this often (two failures in a row, or about half its calls) ranks after every
 * target that does not: its failures each spend the route's retry budget (20 % of requests), and
 * past it requests end in their error although a healthy target was there.
 */
export const FAILING_RATE = 0.5;

export class TargetHealth {
  private readonly entries = new Map<string, Entry>();
  /** Told of each Retry-After cooldown this instance starts (the Redis bridge shares them). */
  onCooldown: ((key: string, ms: number) => void) | null = null;

  constructor(
    private readonly opts: { failures: number; cooldownMs: number },
    private readonly now: () => number = Date.now,
  ) {}

  private entry(key: string): Entry {
    let e = this.entries.get(key);
    if (!e) {
      e = {
        consecutiveFailures: 0,
        openedAt: 0,
        state: 'closed',
        probeInFlight: false,
        cooldownUntil: 0,
        jsonMs: undefined,
        ttftMs: undefined,
        failureRate: 0,
        failMs: undefined,
        measuredAt: this.now(),
        remeasuredAt: 0,
      };
      this.entries.set(key, e);
    }
    return e;
  }

  state(key: string): BreakerState {
    const e = this.entries.get(key);
    if (!e) return 'closed';
    if (e.state === 'open' && this.now() - e.openedAt >= this.opts.cooldownMs) return 'half_open';
    return e.state;
  }

  /** Whether a request may go to this target now; reserves the probe slot when half-open. */
  admit(key: string): Admission {
    const e = this.entries.get(key);
    if (!e) return { ok: true, probe: false };
    const now = this.now();
    if (e.cooldownUntil > now) return { ok: false, reason: 'cooling_down', untilMs: e.cooldownUntil };
    if (e.state === 'open') {
      if (now - e.openedAt < this.opts.cooldownMs) {
        return { ok: false, reason: 'circuit_open', untilMs: e.openedAt + this.opts.cooldownMs };
      }
      e.state = 'half_open';
    }
    if (e.state === 'half_open') {
      if (e.probeInFlight) return { ok: false, reason: 'probe_in_flight', untilMs: now };
      e.probeInFlight = true;
      return { ok: true, probe: true };
    }
    return { ok: true, probe: false };
  }

  /** Why a request would skip this target now, or null (reserves nothing: for explanations). */
  skipReason(key: string): 'circuit_open' | 'cooling_down' | 'probe_in_flight' | null {
    const e = this.entries.get(key);
    if (!e) return null;
    const now = this.now();
    if (e.cooldownUntil > now) return 'cooling_down';
    if (e.state === 'open' && now - e.openedAt < this.opts.cooldownMs) return 'circuit_open';
    if (this.state(key) === 'half_open' && e.probeInFlight) return 'probe_in_flight';
    return null;
  }

  /**
   * A call succeeded: `latencyMs` is a JSON answer's whole time, or a stream's time to its first
   * token (`stream`). `probe`: it was admitted as the half-open probe (Admission.probe). While
   * the breaker is not closed only the probe decides: a call admitted before it opened (a long
   * stream) that ends well says nothing about the target now, and closed it with no probe.
   */
  onSuccess(key: string, latencyMs: number, { probe = false, stream = false } = {}): void {
    const e = this.entry(key);
    const weight = this.sampleWeight(e);
    if (stream) e.ttftMs = e.ttftMs === undefined ? latencyMs : e.ttftMs + weight * (latencyMs - e.ttftMs);
    else e.jsonMs = e.jsonMs === undefined ? latencyMs : e.jsonMs + weight * (latencyMs - e.jsonMs);
    e.failureRate -= weight * e.failureRate;
    if (e.state !== 'closed' && !probe) return;
    e.consecutiveFailures = 0;
    e.state = 'closed';
    e.probeInFlight = false;
  }

  /**
   * A call failed. `retryAfterMs` (from a 429) keeps the target out of rotation without counting
   * as broken. `probe` as for onSuccess: a stale call's failure while the breaker is open or
   * half-open neither frees the probe's slot nor restarts the cooldown.
   */
  onFailure(key: string, opts: { retryAfterMs?: number; probe?: boolean; latencyMs?: number } = {}): void {
    const e = this.entry(key);
    const now = this.now();
    const stale = e.state !== 'closed' && !opts.probe;
    if (opts.probe) e.probeInFlight = false;
    if (opts.retryAfterMs !== undefined) {
      this.coolDown(key, opts.retryAfterMs);
      this.onCooldown?.(key, opts.retryAfterMs);
      return;
    }
    // A failure raises the failure rate, never the latency: a target that fails fast is not fast.
    // (A 429 above is not one: its cooldown keeps the target out while it lasts.)
    const weight = this.sampleWeight(e);
    e.failureRate += weight * (1 - e.failureRate);
    if (opts.latencyMs !== undefined) e.failMs = e.failMs === undefined ? opts.latencyMs : e.failMs + weight * (opts.latencyMs - e.failMs);
    if (stale) return;
    e.consecutiveFailures++;
    if (e.state === 'half_open' || e.consecutiveFailures >= this.opts.failures) {
      e.state = 'open';
      e.openedAt = now;
    }
  }

  /**
   * Keeps the target out of rotation for `ms` (a 429's Retry-After, here or on another
   * instance) without counting it as broken.
   */
  coolDown(key: string, ms: number): void {
    const e = this.entry(key);
    e.cooldownUntil = Math.max(e.cooldownUntil, this.now() + ms);
  }

  /**
   * A call that ended for reasons unrelated to the target (client gone, a 4xx about the request,
   * never made): the probe's frees its slot; any other's changes nothing.
   */
  release(key: string, { probe = false } = {}): void {
    const e = this.entries.get(key);
    if (e && probe) e.probeInFlight = false;
  }

  /** The latency estimate for a request's mode (a stream's first token, or a whole JSON answer). */
  ewma(key: string, stream = false): number | undefined {
    const e = this.entries.get(key);
    return stream ? e?.ttftMs : e?.jsonMs;
  }

  /**
   * LEAST_LATENCY's rank (lower first): the time an answer takes here, its latency estimate plus
   * what its failures cost before failover (failure rate p: p/(1−p) failures an answer, each as
   * long as failures take here). A target not yet measured in this mode goes first (so it gets
   * measured), or last if it mostly fails.
   */
  latencyScore(key: string, stream = false): number {
    const e = this.entries.get(key);
    if (!e) return 0;
    const latency = stream ? e.ttftMs : e.jsonMs;
    if (latency === undefined) return e.failureRate < FAILING_RATE ? 0 : Number.POSITIVE_INFINITY;
    const p = Math.min(e.failureRate, MAX_FAILURE_RATE);
    return latency + (p / (1 - p)) * (e.failMs ?? 0);
  }

  /** Failing often enough to rank after every target that is not (FAILING_RATE). */
  isFailing(key: string): boolean {
    return (this.entries.get(key)?.failureRate ?? 0) >= FAILING_RATE;
  }

  /**
   * Whether a request should go to this target to re-measure it: nothing heard for STALE_AFTER_MS.
   * Claims it, so one request per STALE_AFTER_MS goes, however many arrive meanwhile.
   */
  claimRemeasure(key: string): boolean {
    const e = this.entries.get(key);
    const now = this.now();
    if (!e || now - Math.max(e.measuredAt, e.remeasuredAt) < STALE_AFTER_MS) return false;
    e.remeasuredAt = now;
    return true;
  }

  /** A new sample's weight: EWMA_ALPHA, more when the estimate is old (see ESTIMATE_FADE_MS). */
  private sampleWeight(e: Entry): number {
    const now = this.now();
    const weight = Math.max(EWMA_ALPHA, 1 - Math.exp(-(now - e.measuredAt) / ESTIMATE_FADE_MS));
    e.measuredAt = now;
    return weight;
  }
}
