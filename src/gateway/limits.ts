// Per-key RPM and TPM limits with a sliding-window counter: the current minute's count plus
// the previous minute's count weighted by how much of it still overlaps the last 60 s. It
// needs two numbers per key and window, and is within a few percent of an exact log.
//
// Windows live in this process (MemoryWindows), or in Redis (RedisWindows) so that every
// instance counts against the same limit: there one Lua script checks both limits and counts
// the request, atomically. If Redis cannot be reached, the limiter falls back to this
// process's own windows (limits then hold per instance) rather than refusing traffic.
// Tokens are known only after the response. So that concurrent requests cannot all pass a TPM
// limit nobody has counted against yet, an admitted request reserves what it says it may use
// (its estimated prompt and its own output limit) until its receipt, which releases the
// reservation; the tokens the upstream reports count from then on.
import type { Redis } from 'ioredis';
import { rateLimited } from './errors.js';

const WINDOW_MS = 60_000;

export interface LimitSnapshot {
  limit: number;
  remaining: number;
  /** Until the window is back to its initial state (OpenAI's meaning of x-ratelimit-reset-*). */
  resetMs: number;
}

export interface Admission {
  requests?: LimitSnapshot;
  tokens?: LimitSnapshot;
  /** Headers for every response: OpenAI's x-ratelimit-* names. */
  headers: Record<string, string>;
  /** The tokens this request holds against TPM until its receipt (RateLimiter.release). */
  reservation: TokenReservation | null;
}

export interface TokenReservation {
  keyId: string;
  tokens: number;
  /** The minute the reservation was counted in (released from that minute's window). */
  minute: number;
  store: WindowStore;
}

/** A window's counts: this minute's (this request included when counted) and the previous minute's. */
type Window = readonly [current: number, previous: number];

/** What a window store reports for one key: what is used, and whether the request was counted. */
export interface Take {
  requestsUsed: number;
  tokensUsed: number;
  /** null: admitted and counted; otherwise the limit that refused it. */
  refusedBy: 'requests' | 'tokens' | null;
  requests: Window;
  tokens: Window;
}

export interface WindowStore {
  /**
   * Checks used + 1 ≤ rpm and used tokens < tpm; only if both hold, counts the request and
   * `reserve` tokens (with a tpm).
   */
  take(keyId: string, rpm: number | null, tpm: number | null, now: number, reserve: number): Promise<Take>;
  addTokens(keyId: string, tokens: number, now: number): Promise<void>;
  /** Takes back tokens reserved in `minute` (never below 0); nothing once that minute is gone. */
  release(keyId: string, tokens: number, minute: number): Promise<void>;
}

/** Weight of the previous minute still inside the last 60 s. */
function overlap(now: number): number {
  return (WINDOW_MS - (now % WINDOW_MS)) / WINDOW_MS;
}

/**
 * How long until `current + previous × overlap` falls to `room`: within this minute as the
 * previous one's weight decays, or, when this minute's count alone is over, in the next one,
 * as this minute's count decays in its turn. (The next minute boundary is not the answer: right
 * after it the minute before still counts almost in full.)
 */
export function slidingWaitMs(current: number, previous: number, room: number, now: number): number {
  const toBoundary = WINDOW_MS - (now % WINDOW_MS);
  if (current <= room) return previous > 0 ? Math.max(0, toBoundary - ((room - current) / previous) * WINDOW_MS) : 0;
  return toBoundary + (1 - Math.max(0, room) / current) * WINDOW_MS;
}

export class MemoryWindows implements WindowStore {
  private readonly windows = new Map<string, { start: number; current: number; previous: number }>();

  async take(keyId: string, rpm: number | null, tpm: number | null, now: number, reserve: number): Promise<Take> {
    const r = this.window(`r:${keyId}`, now);
    const t = this.window(`t:${keyId}`, now);
    const weight = overlap(now);
    const requestsUsed = r.current + r.previous * weight;
    const tokensUsed = t.current + t.previous * weight;
    const refusedBy = rpm && requestsUsed + 1 > rpm ? 'requests' : tpm && tokensUsed >= tpm ? 'tokens' : null;
    if (!refusedBy && rpm) r.current += 1;
    if (!refusedBy && tpm) t.current += reserve;
    return { requestsUsed, tokensUsed, refusedBy, requests: [r.current, r.previous], tokens: [t.current, t.previous] };
  }

  async addTokens(keyId: string, tokens: number, now: number): Promise<void> {
    this.window(`t:${keyId}`, now).current += tokens;
  }

  async release(keyId: string, tokens: number, minute: number): Promise<void> {
    const w = this.windows.get(`t:${keyId}`);
    if (!w) return;
    const start = minute * WINDOW_MS;
    // The window is rolled over lazily: its `current` may still be the reservation's minute.
    if (w.start === start) w.current = Math.max(0, w.current - tokens);
    else if (w.start === start + WINDOW_MS) w.previous = Math.max(0, w.previous - tokens);
  }

  private window(key: string, now: number) {
    const start = now - (now % WINDOW_MS);
    let w = this.windows.get(key);
    if (!w) this.windows.set(key, (w = { start, current: 0, previous: 0 }));
    else if (w.start !== start) {
      w.previous = start - w.start === WINDOW_MS ? w.current : 0;
      w.current = 0;
      w.start = start;
    }
    return w;
  }
}

// KEYS: requests current, requests previous, tokens current, tokens previous.
// ARGV: rpm (0 = none), tpm (0 = none), weight of the previous minute, tokens to reserve.
const TAKE = `
local weight = tonumber(ARGV[3])
local rc = tonumber(redis.call('GET', KEYS[1]) or '0')
local rp = tonumber(redis.call('GET', KEYS[2]) or '0')
local tc = tonumber(redis.call('GET', KEYS[3]) or '0')
local tp = tonumber(redis.call('GET', KEYS[4]) or '0')
local r = rc + rp * weight
local t = tc + tp * weight
local rpm = tonumber(ARGV[1])
local tpm = tonumber(ARGV[2])
local refused = 0
if rpm > 0 and r + 1 > rpm then refused = 1 elseif tpm > 0 and t >= tpm then refused = 2 end
if refused == 0 and rpm > 0 then
  redis.call('INCR', KEYS[1])
  redis.call('PEXPIRE', KEYS[1], 180000)
end
local reserve = tonumber(ARGV[4])
if refused == 0 and tpm > 0 and reserve > 0 then
  redis.call('INCRBY', KEYS[3], reserve)
  redis.call('PEXPIRE', KEYS[3], 180000)
end
return {refused, tostring(r), tostring(t), rc, rp, tc, tp}
`;

// KEYS: the tokens of the reservation's minute. ARGV: the tokens reserved.
const RELEASE = `
local left = tonumber(redis.call('GET', KEYS[1]) or '0')
if left > 0 then
  redis.call('SET', KEYS[1], math.max(0, left - tonumber(ARGV[1])), 'KEEPTTL')
end
`;

export class RedisWindows implements WindowStore {
  private readonly redis: Redis & {
    rateTake(n: number, ...args: Array<string | number>): Promise<[number, string, string, number, number, number, number]>;
    rateRelease(n: number, key: string, tokens: number): Promise<null>;
  };

  constructor(
    redis: Redis,
    private readonly prefix = 'tollgate:rl:',
  ) {
    redis.defineCommand('rateTake', { lua: TAKE });
    redis.defineCommand('rateRelease', { lua: RELEASE });
    this.redis = redis as RedisWindows['redis'];
  }

  async take(keyId: string, rpm: number | null, tpm: number | null, now: number, reserve: number): Promise<Take> {
    const minute = Math.floor(now / WINDOW_MS);
    const k = (kind: 'r' | 't', m: number) => this.key(keyId, kind, m);
    const [refused, r, t, rc, rp, tc, tp] = await this.redis.rateTake(
      4,
      k('r', minute),
      k('r', minute - 1),
      k('t', minute),
      k('t', minute - 1),
      rpm ?? 0,
      tpm ?? 0,
      overlap(now),
      reserve,
    );
    const refusedBy = refused === 1 ? 'requests' : refused === 2 ? 'tokens' : null;
    // rc and tc are read before the script counts this request and its reservation.
    const counted = refusedBy === null && rpm ? 1 : 0;
    const reserved = refusedBy === null && tpm ? reserve : 0;
    return {
      requestsUsed: Number(r),
      tokensUsed: Number(t),
      refusedBy,
      requests: [Number(rc) + counted, Number(rp)],
      tokens: [Number(tc) + reserved, Number(tp)],
    };
  }

  async addTokens(keyId: string, tokens: number, now: number): Promise<void> {
    const key = this.key(keyId, 't', Math.floor(now / WINDOW_MS));
    await this.redis.multi().incrby(key, tokens).pexpire(key, 180_000).exec();
  }

  async release(keyId: string, tokens: number, minute: number): Promise<void> {
    await this.redis.rateRelease(1, this.key(keyId, 't', minute), tokens);
  }

  /** One key per limit kind (r: requests, t: tokens) and minute; take and addTokens must agree. */
  private key(keyId: string, kind: 'r' | 't', minute: number): string {
    return `${this.prefix}${keyId}:${kind}:${minute}`;
  }
}

export class RateLimiter {
  private readonly local = new MemoryWindows();

  constructor(
    private readonly now: () => number = Date.now,
    /** Shared windows (Redis); without it, this process's own. */
    private readonly shared: WindowStore | null = null,
    private readonly onError: (err: unknown) => void = () => undefined,
  ) {}

  /**
   * Admits one request for the key or throws a 429 with Retry-After; counts the request, and
   * with a TPM limit reserves `reserveTokens` until release().
   */
  async admit(keyId: string, rpm: number | null, tpm: number | null, reserveTokens = 0): Promise<Admission> {
    const headers: Record<string, string> = {};
    const admission: Admission = { headers, reservation: null };
    if (!rpm && !tpm) return admission;
    const now = this.now();
    // At most the limit: a request asking for more is admitted as one that fills it.
    const reserve = tpm ? Math.min(tpm, Math.max(0, Math.ceil(reserveTokens))) : 0;
    const { taken, store } = await this.take(keyId, rpm, tpm, now, reserve);
    const [rc, rp] = taken.requests;
    const [tc, tp] = taken.tokens;
    if (rpm) {
      // What is left after this request, as OpenAI reports it.
      admission.requests = { limit: rpm, remaining: Math.max(0, Math.floor(rpm - taken.requestsUsed - 1)), resetMs: slidingWaitMs(rc, rp, 0, now) };
      setHeaders(headers, 'requests', admission.requests);
    }
    if (tpm) {
      const reserved = taken.refusedBy ? 0 : reserve;
      admission.tokens = { limit: tpm, remaining: Math.max(0, Math.floor(tpm - taken.tokensUsed - reserved)), resetMs: slidingWaitMs(tc, tp, 0, now) };
      setHeaders(headers, 'tokens', admission.tokens);
    }
    // Retry-After is when the sliding window admits again (requests: room for one more; tokens:
    // the count below the limit), not the next minute boundary.
    if (taken.refusedBy === 'requests') {
      throw rateLimited(`Rate limit reached: ${rpm} requests per minute for this key.`, slidingWaitMs(rc, rp, (rpm ?? 0) - 1, now) / 1000, {
        ...headers,
        'x-ratelimit-remaining-requests': '0',
      });
    }
    if (taken.refusedBy === 'tokens') {
      throw rateLimited(`Rate limit reached: ${tpm} tokens per minute for this key.`, (slidingWaitMs(tc, tp, (tpm ?? 0) - 1e-9, now) + 1) / 1000, headers);
    }
    if (reserve > 0) admission.reservation = { keyId, tokens: reserve, minute: Math.floor(now / WINDOW_MS), store };
    return admission;
  }

  /** Gives back a reservation (once the request's own tokens are recorded). */
  release(reservation: TokenReservation): void {
    const { store, keyId, tokens, minute } = reservation;
    store.release(keyId, tokens, minute).catch((err: unknown) => {
      // Left in a shared window it only counts against the key until its minute has passed.
      this.onError(err);
    });
  }

  recordTokens(keyId: string, tokens: number, tpm: number | null): void {
    if (tokens <= 0 || !tpm) return;
    const now = this.now();
    const store = this.shared ?? this.local;
    store.addTokens(keyId, tokens, now).catch((err: unknown) => {
      this.onError(err);
      void this.local.addTokens(keyId, tokens, now);
    });
  }

  /** Takes from the shared windows, or this process's when they cannot be reached; says which. */
  private async take(keyId: string, rpm: number | null, tpm: number | null, now: number, reserve: number): Promise<{ taken: Take; store: WindowStore }> {
    if (this.shared) {
      try {
        return { taken: await this.shared.take(keyId, rpm, tpm, now, reserve), store: this.shared };
      } catch (err) {
        this.onError(err);
      }
    }
    return { taken: await this.local.take(keyId, rpm, tpm, now, reserve), store: this.local };
  }
}

function setHeaders(headers: Record<string, string>, kind: 'requests' | 'tokens', snap: LimitSnapshot): void {
  headers[`x-ratelimit-limit-${kind}`] = String(snap.limit);
  headers[`x-ratelimit-remaining-${kind}`] = String(snap.remaining);
  headers[`x-ratelimit-reset-${kind}`] = `${Math.ceil(snap.resetMs / 1000)}s`;
}
