// Rate limits and budgets held by two Tollgate processes sharing Redis and PostgreSQL: a
// key's RPM and a team's budget are one limit, whichever instance a request reaches.
// Needs REDIS_URL and DATABASE_URL (npm run test:stores in .ci/run); the first block always runs.
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GatewayError } from '../../src/gateway/errors.js';
import { MemoryWindows, RateLimiter, RedisWindows, type TokenReservation, type WindowStore } from '../../src/gateway/limits.js';
import { type SimulatedProvider, startSimulatedProvider } from '../../src/sim/simulated.js';
import { scratchDatabase } from '../support/gateway.js';
import { gqlOk } from '../support/graphql.js';
import { type Instances, type ServerProcess, startInstances } from '../support/processes.js';

const REDIS_URL = process.env.REDIS_URL;

describe('rate limiter with unreachable shared windows (always runs)', () => {
  it('falls back to counting in this process and reports the error', async () => {
    const errors: unknown[] = [];
    const broken: WindowStore = {
      take: () => Promise.reject(new Error('connection refused')),
      addTokens: () => Promise.reject(new Error('connection refused')),
      release: () => Promise.reject(new Error('connection refused')),
    };
    const rl = new RateLimiter(
      () => 0,
      broken,
      (err) => errors.push(err),
    );
    await rl.admit('k', 2, null);
    await rl.admit('k', 2, null);
    await expect(rl.admit('k', 2, null)).rejects.toMatchObject({ status: 429 });
    expect(errors.length).toBe(3);
  });
});

describe.runIf(REDIS_URL)('Redis windows', () => {
  it("admit and refuse exactly as this process's windows, with the same headers", async () => {
    const redis = new Redis(REDIS_URL!);
    try {
      const clock = { t: 7 * 60_000 + 20_000 };
      const shared = new RateLimiter(() => clock.t, new RedisWindows(redis, `tollgate:test:${randomBytes(6).toString('hex')}:`));
      const local = new RateLimiter(() => clock.t, new MemoryWindows());
      const outcome = (rl: RateLimiter) =>
        rl.admit('k', 5, 2_000).then(
          (a) => a.headers,
          (e: GatewayError) => ({ status: String(e.status), ...e.headers }),
        );
      const seen: Array<Record<string, string>> = [];
      // A burst past the request limit, then tokens past theirs, as the windows slide.
      const steps = [0, 0, 0, 0, 0, 0, 1_000, 45_000, 10_000, 20_000, 30_000, 0, 0, 70_000, 1_000, 1_000];
      for (const [i, step] of steps.entries()) {
        clock.t += step;
        const [a, b] = await Promise.all([outcome(shared), outcome(local)]);
        expect(a).toEqual(b);
        seen.push(a);
        // Tokens only after the burst, enough to be refused by the token limit later.
        const spent = i < 7 ? 0 : 700;
        shared.recordTokens('k', spent, 2_000);
        local.recordTokens('k', spent, 2_000);
        await new Promise((r) => setTimeout(r, 20)); // the Redis token count lands
      }
      // The sequence had refusals by both limits, and admissions.
      expect(seen.some((h) => h.status === '429' && h['x-ratelimit-remaining-requests'] === '0')).toBe(true);
      expect(seen.some((h) => h.status === '429' && h['x-ratelimit-remaining-requests'] !== '0')).toBe(true);
      expect(seen.some((h) => h.status === undefined)).toBe(true);
    } finally {
      redis.disconnect();
    }
  });

  it("reserve and release tokens exactly as this process's windows, across a minute boundary", async () => {
    const redis = new Redis(REDIS_URL!);
    try {
      const clock = { t: 9 * 60_000 + 50_000 };
      const shared = new RateLimiter(() => clock.t, new RedisWindows(redis, `tollgate:test:${randomBytes(6).toString('hex')}:`));
      const local = new RateLimiter(() => clock.t, new MemoryWindows());
      type Outcome = { headers: Record<string, string>; reservation: TokenReservation | null };
      const both = async (reserve: number) => {
        const [a, b] = await Promise.all(
          [shared, local].map((rl) =>
            rl.admit('k', null, 1_000, reserve).then(
              (x): Outcome => ({ headers: x.headers, reservation: x.reservation }),
              (e: GatewayError): Outcome => ({ headers: { status: String(e.status), ...e.headers }, reservation: null }),
            ),
          ),
        );
        expect(a!.headers).toEqual(b!.headers);
        return [a!, b!] as const;
      };
      const first = await both(450);
      const second = await both(450);
      expect(first[0].headers['x-ratelimit-remaining-tokens']).toBe('550');
      expect((await both(450))[0].headers.status).toBeUndefined(); // 900 used: still under
      expect((await both(10))[0].headers.status).toBe('429'); // 1,350 used
      // Into the next minute: the first is released from the previous minute's count.
      clock.t += 20_000;
      for (const [i, rl] of [shared, local].entries()) rl.release(first[i]!.reservation!);
      await new Promise((r) => setTimeout(r, 20));
      const after = await both(0);
      expect(after[0].headers['x-ratelimit-remaining-tokens']).toBe(String(Math.floor(1_000 - 900 * (50 / 60))));
      for (const [i, rl] of [shared, local].entries()) rl.release(second[i]!.reservation!);
      await new Promise((r) => setTimeout(r, 20));
      expect((await both(0))[0].headers['x-ratelimit-remaining-tokens']).toBe(String(Math.floor(1_000 - 450 * (50 / 60))));
    } finally {
      redis.disconnect();
    }
  });
});

describe.runIf(REDIS_URL && process.env.DATABASE_URL)('two instances sharing Redis', () => {
  let sim: SimulatedProvider;
  let db: Awaited<ReturnType<typeof scratchDatabase>>;
  let instances: Instances;
  let procs: ServerProcess[];
  const adminToken = `tga-shared-${randomBytes(12).toString('hex')}`;
  let teamId: string;

  beforeAll(async () => {
    sim = await startSimulatedProvider();
    db = await scratchDatabase();
    const yaml = [
      'providers:',
      `  - { name: sim, kind: SIMULATED, baseUrl: "${sim.url}" }`,
      'routes:',
      '  - { name: chat, strategy: PRIORITY, targets: [{ provider: sim, model: m }] }',
      '  - { name: limited, strategy: PRIORITY, retries: 0, targets: [{ provider: sim, model: rl }] }',
      'prices:',
      '  - { provider: sim, model: m, inputPerMTokUsd: 1000, outputPerMTokUsd: 1000 }',
      'teams: [shared]',
    ];
    instances = await startInstances(2, yaml, { TOLLGATE_ADMIN_TOKEN: adminToken, DATABASE_URL: db!.url, REDIS_URL: REDIS_URL! });
    procs = instances.procs;
    const teams = await gqlOk(procs[0].url, adminToken, '{ teams { id name } }');
    teamId = teams.teams.find((t: any) => t.name === 'shared').id;
  }, 120_000);

  afterAll(async () => {
    await instances?.close();
    await sim?.close();
    await db?.drop().catch(() => undefined);
  });

  const createKey = async (input: Record<string, unknown>) =>
    (
      await gqlOk(procs[0].url, adminToken, 'mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { secret apiKey { id } } }', {
        i: { teamId, name: 'k', ...input },
      })
    ).createApiKey;
  const call = (url: string, secret: string) =>
    fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'hi' }], max_tokens: 8 }),
    }).then(async (r) => ({ status: r.status, headers: r.headers, body: (await r.json()) as any }));

  it('an RPM limit holds across both instances, with OpenAI rate-limit headers', async () => {
    const { secret } = await createKey({ rpmLimit: 6 });
    const statuses: number[] = [];
    let last: Awaited<ReturnType<typeof call>> | null = null;
    for (let i = 0; i < 10; i++) {
      last = await call(procs[i % 2].url, secret);
      statuses.push(last.status);
      if (last.status === 200) expect(last.headers.get('x-ratelimit-limit-requests')).toBe('6');
    }
    // A minute boundary may pass mid-test: the sliding window then still counts the earlier ones.
    expect(statuses.filter((s) => s === 200)).toHaveLength(6);
    expect(last!.status).toBe(429);
    expect(last!.body.error.code).toBe('rate_limit_exceeded');
    expect(Number(last!.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(last!.headers.get('x-ratelimit-remaining-requests')).toBe('0');
  });

  it('a team budget holds across both instances under a concurrent burst', async () => {
    const budget = (
      await gqlOk(procs[0].url, adminToken, 'mutation($i: BudgetInput!) { setBudget(input: $i) { id limitUsd } }', {
        i: { scope: 'TEAM', teamId, period: 'DAY', limitUsd: 0.06, action: 'BLOCK' },
      })
    ).setBudget;
    const { secret } = await createKey({});
    await new Promise((r) => setTimeout(r, 2_500)); // both instances pick up the budget (catalog refresh: 2 s)
    sim.behave('m', { latencyMs: 200, times: 40 });
    const results = await Promise.all(Array.from({ length: 40 }, (_, i) => call(procs[i % 2].url, secret)));
    const admitted = results.filter((r) => r.status === 200);
    expect(results.filter((r) => r.status !== 200).every((r) => r.status === 429 && r.body.error.code === 'budget_exceeded')).toBe(true);
    expect(admitted.length).toBeGreaterThan(0);
    expect(admitted.length).toBeLessThan(40);
    // Spend of what was served (each instance has its own receipts store): never above the limit.
    const spent = admitted.reduce((sum, r) => sum + ((r.body.usage.prompt_tokens + r.body.usage.completion_tokens) * 1000) / 1e6, 0);
    expect(spent).toBeLessThanOrEqual(budget.limitUsd + 1e-9);
  });

  it("an upstream's Retry-After holds for both instances: the other one does not call it either", async () => {
    const { secret } = await createKey({});
    sim.behave('rl', { status: 429, retryAfterSeconds: 20 });
    const ask = (url: string) =>
      fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'limited', messages: [{ role: 'user', content: 'hi' }] }),
      });
    const upstreamCalls = () => sim.requests.filter((r) => r.body?.model === 'rl').length;
    const first = await ask(procs[0].url);
    expect(first.status).toBe(429);
    expect(first.headers.get('retry-after')).toBe('20');
    expect(upstreamCalls()).toBe(1);
    await new Promise((r) => setTimeout(r, 300)); // one Redis pub/sub hop
    const second = await ask(procs[1].url);
    expect(second.status).toBe(429);
    expect(Number(second.headers.get('retry-after'))).toBeGreaterThan(15);
    expect(upstreamCalls()).toBe(1);
  });
});
