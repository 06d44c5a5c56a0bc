// RateLimiter: per-key RPM/TPM with a sliding-window counter, on an injected clock.
import { describe, expect, it } from 'vitest';
import { GatewayError } from '../../src/gateway/errors.js';
import { RateLimiter } from '../../src/gateway/limits.js';

function clock(start = 0) {
  const c = { t: start, now: () => c.t };
  return c;
}

async function rejection(fn: () => Promise<unknown>): Promise<GatewayError> {
  try {
    await fn();
  } catch (err) {
    expect(err).toBeInstanceOf(GatewayError);
    return err as GatewayError;
  }
  throw new Error('expected a 429');
}

describe('RateLimiter: RPM', () => {
  it('admits exactly N requests in a window, then answers 429 with retry-after and x-ratelimit headers', async () => {
    const c = clock(10_000); // 10 s into a window: 50 s until it resets
    const rl = new RateLimiter(c.now);
    const remaining: string[] = [];
    for (let i = 0; i < 5; i++) {
      const a = await rl.admit('k', 5, null);
      remaining.push(a.headers['x-ratelimit-remaining-requests']!);
      expect(a.headers['x-ratelimit-limit-requests']).toBe('5');
      expect(a.requests).toMatchObject({ limit: 5 });
    }
    expect(remaining).toEqual(['4', '3', '2', '1', '0']);

    const e = await rejection(() => rl.admit('k', 5, null));
    expect(e.status).toBe(429);
    expect(e.type).toBe('rate_limit_error');
    expect(e.code).toBe('rate_limit_exceeded');
    // Not the boundary (50 s): just after it this minute's 5 still count in full. 4 of 5 fit at
    // 12 s into the next minute (5 × 48/60 = 4): 62 s from now.
    expect(e.headers['retry-after']).toBe('62');
    expect(e.headers['x-ratelimit-limit-requests']).toBe('5');
    expect(e.headers['x-ratelimit-remaining-requests']).toBe('0');
    // Reset: back to the initial state (OpenAI's meaning), when this minute's 5 have decayed to
    // nothing at the end of the next one: 110 s. Never sooner than Retry-After.
    expect(e.headers['x-ratelimit-reset-requests']).toBe('110s');
    // Still rejected a moment later; rejected requests do not count (see the sliding test below).
    c.t += 1_000;
    expect((await rejection(() => rl.admit('k', 5, null))).headers['retry-after']).toBe('61');
  });

  it('a client that waits Retry-After is admitted; one that retries earlier is not', async () => {
    for (const [start, rpm, burst] of [
      [10_000, 5, 5],
      [59_000, 10, 10],
      [30_000, 3, 3],
    ] as const) {
      for (const early of [true, false]) {
        const c = clock(start);
        const rl = new RateLimiter(c.now);
        for (let i = 0; i < burst; i++) await rl.admit('k', rpm, null);
        const wait = Number((await rejection(() => rl.admit('k', rpm, null))).headers['retry-after']) * 1000;
        c.t += early ? wait - 2_000 : wait;
        if (early) await rejection(() => rl.admit('k', rpm, null));
        else expect((await rl.admit('k', rpm, null)).requests).toBeDefined();
      }
    }
    // Tokens: 1,000 of 1,000 used at 30 s; below the limit once they decay in the next minute.
    const c = clock(30_000);
    const rl = new RateLimiter(c.now);
    await rl.admit('k', null, 1_000);
    rl.recordTokens('k', 1_000, 1_000);
    const wait = Number((await rejection(() => rl.admit('k', null, 1_000))).headers['retry-after']) * 1000;
    c.t += wait;
    expect((await rl.admit('k', null, 1_000)).tokens).toBeDefined();
  });

  it('x-ratelimit-reset-* is when the window is empty again, never sooner than Retry-After', async () => {
    const c = clock(0);
    const rl = new RateLimiter(c.now);
    await rl.admit('k', 4, 1_000);
    rl.recordTokens('k', 1_000, 1_000);
    // 30 s into the next minute: the tokens are all the previous minute's (half weight now),
    // gone at its end; the requests include this one, gone at the end of the minute after.
    c.t = 90_000;
    const a = await rl.admit('k', 4, 1_000);
    expect(a.headers['x-ratelimit-reset-tokens']).toBe('30s');
    expect(a.headers['x-ratelimit-reset-requests']).toBe('90s');
    for (const [start, rpm] of [
      [0, 3],
      [20_000, 5],
      [59_500, 2],
    ] as const) {
      const c2 = clock(start);
      const limited = new RateLimiter(c2.now);
      for (let i = 0; i < rpm; i++) await limited.admit('k', rpm, null);
      const e = await rejection(() => limited.admit('k', rpm, null));
      expect(Number.parseInt(e.headers['x-ratelimit-reset-requests']!, 10)).toBeGreaterThanOrEqual(Number(e.headers['retry-after']));
    }
  });

  it('retry-after is at least 1 s even at the very end of a window', async () => {
    const c = clock(59_999);
    const rl = new RateLimiter(c.now);
    await rl.admit('k', 1, null);
    expect(Number((await rejection(() => rl.admit('k', 1, null))).headers['retry-after'])).toBeGreaterThanOrEqual(1);
  });

  it('sliding window: the previous window counts in full at its end and decays linearly after', async () => {
    const c = clock(0);
    const rl = new RateLimiter(c.now);
    for (let i = 0; i < 4; i++) await rl.admit('k', 4, null);
    await rejection(() => rl.admit('k', 4, null));

    // Start of the next window: the previous 4 still weigh 4 × 1.0.
    c.t = 60_000;
    await rejection(() => rl.admit('k', 4, null));

    // Half-way: 4 × 0.5 = 2 used, so exactly 2 more fit.
    c.t = 90_000;
    await rl.admit('k', 4, null);
    await rl.admit('k', 4, null);
    await rejection(() => rl.admit('k', 4, null));

    // Next window: the 2 admitted at 90 s become the previous window (weight 1 at its start).
    c.t = 120_000;
    await rl.admit('k', 4, null);
    await rl.admit('k', 4, null);
    await rejection(() => rl.admit('k', 4, null));
  });

  it('a gap of more than one window forgets everything', async () => {
    const c = clock(0);
    const rl = new RateLimiter(c.now);
    for (let i = 0; i < 3; i++) await rl.admit('k', 3, null);
    c.t = 125_000; // two windows later
    for (let i = 0; i < 3; i++) await rl.admit('k', 3, null);
    await rejection(() => rl.admit('k', 3, null));
  });

  it('keys are independent', async () => {
    const rl = new RateLimiter(clock(0).now);
    await rl.admit('a', 1, null);
    await rejection(() => rl.admit('a', 1, null));
    await expect(rl.admit('b', 1, null)).resolves.toBeDefined();
    await rejection(() => rl.admit('b', 1, null));
  });

  it('null or 0 limits mean unlimited and set no headers', async () => {
    const rl = new RateLimiter(clock(0).now);
    for (let i = 0; i < 1000; i++) {
      const a = await rl.admit('k', null, null);
      expect(a.headers).toEqual({});
    }
    await expect(rl.admit('k', 0, 0)).resolves.toEqual({ headers: {}, reservation: null });
  });
});

describe('RateLimiter: TPM', () => {
  it('admits while recorded tokens are under the limit and blocks once they reach it', async () => {
    const c = clock(0);
    const rl = new RateLimiter(c.now);
    expect((await rl.admit('k', null, 100)).headers['x-ratelimit-remaining-tokens']).toBe('100');
    rl.recordTokens('k', 60, 100);
    const a = await rl.admit('k', null, 100);
    expect(a.headers['x-ratelimit-limit-tokens']).toBe('100');
    expect(a.headers['x-ratelimit-remaining-tokens']).toBe('40');
    rl.recordTokens('k', 40, 100);
    const e = await rejection(() => rl.admit('k', null, 100));
    expect(e.status).toBe(429);
    expect(e.headers['x-ratelimit-remaining-tokens']).toBe('0');
    expect(Number(e.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(e.message).toMatch(/tokens per minute/);
  });

  it('tokens decay with the sliding window', async () => {
    const c = clock(0);
    const rl = new RateLimiter(c.now);
    rl.recordTokens('k', 100, 100);
    await rejection(() => rl.admit('k', null, 100));
    c.t = 60_000 + 30_000; // previous window at half weight: 50 used
    expect((await rl.admit('k', null, 100)).headers['x-ratelimit-remaining-tokens']).toBe('50');
  });

  it('recordTokens ignores zero/negative amounts and is per key', async () => {
    const rl = new RateLimiter(clock(0).now);
    rl.recordTokens('k', 100, 100);
    rl.recordTokens('k', -100, 100);
    rl.recordTokens('k', 0, 100);
    await rejection(() => rl.admit('k', null, 100));
    await expect(rl.admit('other', null, 100)).resolves.toBeDefined();
  });

  it('a TPM rejection does not consume an RPM slot', async () => {
    const c = clock(0);
    const rl = new RateLimiter(c.now);
    rl.recordTokens('k', 10, 100);
    for (let i = 0; i < 5; i++) await rejection(() => rl.admit('k', 2, 10));
    // Had the 5 rejections counted as requests, remaining-requests would be 0 here.
    const e = await rejection(() => rl.admit('k', 2, 10));
    expect(e.headers['x-ratelimit-remaining-requests']).toBe('1');
  });

  it('an admitted request reserves its tokens until released: concurrent requests cannot all pass', async () => {
    const c = clock(10_000);
    const rl = new RateLimiter(c.now);
    // Nothing recorded yet: without the reservation all five would be admitted.
    const admitted = [];
    for (let i = 0; i < 3; i++) admitted.push(await rl.admit('k', null, 1_000, 400));
    expect(admitted.map((a) => a.headers['x-ratelimit-remaining-tokens'])).toEqual(['600', '200', '0']);
    await rejection(() => rl.admit('k', null, 1_000, 400));
    // Their answers used 50 tokens each: recorded, and the reservations given back.
    for (const a of admitted) {
      rl.recordTokens('k', 50, 1_000);
      rl.release(a.reservation!);
    }
    await Promise.resolve();
    expect((await rl.admit('k', null, 1_000)).headers['x-ratelimit-remaining-tokens']).toBe('850');
    // No reservation without a TPM limit, or when the request is refused; never more than the limit.
    expect((await rl.admit('other', 10, null, 400)).reservation).toBeNull();
    expect((await rl.admit('big', null, 1_000, 1e20)).reservation?.tokens).toBe(1_000);
  });

  it("a reservation is released from its own minute's window, never below zero", async () => {
    const c = clock(59_000);
    const rl = new RateLimiter(c.now);
    const a = await rl.admit('k', null, 1_000, 600);
    // Released 31 s into the next minute, once the window has rolled over: the reservation is
    // the previous minute's count (30 s in, it weighs half: 700 left without the release).
    c.t = 90_000;
    expect((await rl.admit('k', null, 1_000)).headers['x-ratelimit-remaining-tokens']).toBe('700');
    rl.release(a.reservation!);
    await Promise.resolve();
    expect((await rl.admit('k', null, 1_000)).headers['x-ratelimit-remaining-tokens']).toBe('1000');
    // Released twice: no negative count that would lend tokens to the next requests.
    rl.release(a.reservation!);
    await Promise.resolve();
    rl.recordTokens('k', 1_000, 1_000);
    await rejection(() => rl.admit('k', null, 1_000));
  });
});
