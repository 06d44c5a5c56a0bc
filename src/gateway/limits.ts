// Per-key RPM and TPM limits with a sliding-window counter: the current minute's count plus
// the previous minute's count weighted by how much of it still overlaps the last 60 s. It
// needs two numbers per key and window, and is within a few percent of an exact log.
// In-process for now; the budgets issue moves the counters to Redis for multi-instance use.
import { rateLimited } from './errors.js';

const WINDOW_MS = 60_000;

interface Window {
  start: number;
  current: number;
  previous: number;
}

export interface LimitSnapshot {
  limit: number;
  remaining: number;
  resetMs: number;
}

export interface Admission {
  requests?: LimitSnapshot;
  tokens?: LimitSnapshot;
  /** Headers for every response: OpenAI's x-ratelimit-* names. */
  headers: Record<string, string>;
}

class SlidingWindow {
  private readonly windows = new Map<string, Window>();

  constructor(private readonly now: () => number) {}

  private window(key: string): Window {
    const now = this.now();
    const start = now - (now % WINDOW_MS);
    let w = this.windows.get(key);
    if (!w) {
      w = { start, current: 0, previous: 0 };
      this.windows.set(key, w);
    } else if (w.start !== start) {
      w.previous = start - w.start === WINDOW_MS ? w.current : 0;
      w.current = 0;
      w.start = start;
    }
    return w;
  }

  used(key: string): { used: number; resetMs: number } {
    const w = this.window(key);
    const elapsed = this.now() - w.start;
    const used = w.current + w.previous * ((WINDOW_MS - elapsed) / WINDOW_MS);
    return { used, resetMs: WINDOW_MS - elapsed };
  }

  add(key: string, amount: number): void {
    this.window(key).current += amount;
  }
}

export class RateLimiter {
  private readonly requests: SlidingWindow;
  private readonly tokens: SlidingWindow;

  constructor(now: () => number = Date.now) {
    this.requests = new SlidingWindow(now);
    this.tokens = new SlidingWindow(now);
  }

  /** Admits one request for the key or throws a 429 with Retry-After; counts the request. */
  admit(keyId: string, rpm: number | null, tpm: number | null): Admission {
    const headers: Record<string, string> = {};
    const admission: Admission = { headers };
    if (rpm) {
      const { used, resetMs } = this.requests.used(keyId);
      const snap = { limit: rpm, remaining: Math.max(0, Math.floor(rpm - used - 1)), resetMs };
      setHeaders(headers, 'requests', snap);
      if (used + 1 > rpm) {
        throw rateLimited(`Rate limit reached: ${rpm} requests per minute for this key.`, resetMs / 1000, {
          ...headers,
          'x-ratelimit-remaining-requests': '0',
        });
      }
      admission.requests = snap;
    }
    if (tpm) {
      const { used, resetMs } = this.tokens.used(keyId);
      const snap = { limit: tpm, remaining: Math.max(0, Math.floor(tpm - used)), resetMs };
      setHeaders(headers, 'tokens', snap);
      if (used >= tpm) {
        throw rateLimited(`Rate limit reached: ${tpm} tokens per minute for this key.`, resetMs / 1000, headers);
      }
      admission.tokens = snap;
    }
    if (rpm) this.requests.add(keyId, 1);
    return admission;
  }

  /** Tokens are known only after the response; they count against the following requests. */
  recordTokens(keyId: string, tokens: number): void {
    if (tokens > 0) this.tokens.add(keyId, tokens);
  }
}

function setHeaders(headers: Record<string, string>, kind: 'requests' | 'tokens', snap: LimitSnapshot): void {
  headers[`x-ratelimit-limit-${kind}`] = String(snap.limit);
  headers[`x-ratelimit-remaining-${kind}`] = String(snap.remaining);
  headers[`x-ratelimit-reset-${kind}`] = `${Math.ceil(snap.resetMs / 1000)}s`;
}
