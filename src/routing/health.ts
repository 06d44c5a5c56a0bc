// Per-target health: a circuit breaker (closed → open after N consecutive failures → half-open
// after a cooldown, where one probe decides), a Retry-After cooldown after 429s, and an EWMA
// of latency for LEAST_LATENCY. Keyed by `provider/model`, in-process: each instance judges
// the upstreams it talks to.

export type BreakerState = 'closed' | 'open' | 'half_open';

export type Admission = { ok: true; probe: boolean } | { ok: false; reason: 'circuit_open' | 'cooling_down' | 'probe_in_flight'; untilMs: number };

interface Entry {
  consecutiveFailures: number;
  openedAt: number;
  state: BreakerState;
  probeInFlight: boolean;
  cooldownUntil: number;
  ewmaMs: number | undefined;
}

const EWMA_ALPHA = 0.3;

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
      e = { consecutiveFailures: 0, openedAt: 0, state: 'closed', probeInFlight: false, cooldownUntil: 0, ewmaMs: undefined };
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
   * A call succeeded. `probe`: it was admitted as the half-open probe (Admission.probe). While
   * the breaker is not closed only the probe decides: a call admitted before it opened (a long
   * stream) that ends well says nothing about the target now, and closed it with no probe.
   */
  onSuccess(key: string, latencyMs: number, { probe = false } = {}): void {
    const e = this.entry(key);
    e.ewmaMs = e.ewmaMs === undefined ? latencyMs : e.ewmaMs + EWMA_ALPHA * (latencyMs - e.ewmaMs);
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
  onFailure(key: string, opts: { retryAfterMs?: number; latencyMs?: number; probe?: boolean } = {}): void {
    const e = this.entry(key);
    const now = this.now();
    const stale = e.state !== 'closed' && !opts.probe;
    if (opts.probe) e.probeInFlight = false;
    // Failures count as slow for LEAST_LATENCY so a broken target sinks in the order.
    if (opts.latencyMs !== undefined) {
      const penalty = Math.max(opts.latencyMs, e.ewmaMs ?? 0) * 2;
      e.ewmaMs = e.ewmaMs === undefined ? penalty : e.ewmaMs + EWMA_ALPHA * (penalty - e.ewmaMs);
    }
    if (opts.retryAfterMs !== undefined) {
      this.coolDown(key, opts.retryAfterMs);
      this.onCooldown?.(key, opts.retryAfterMs);
      return;
    }
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

  ewma(key: string): number | undefined {
    return this.entries.get(key)?.ewmaMs;
  }
}
