// Every target of a route failing under load, with the circuit breakers out of the way (a
// threshold no run reaches): only the route's retry budget stands between each request's
// 2 targets × (1 + 2 retries) = 6 attempts and the upstreams. Upstream calls must stay near one
// per request (plus the budget's 20 % and its reserve), answers must be fast 502s, and nothing
// may be lost.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { chat, expectNothingLost, metric } from './support.js';

const PERCENT = 20;
const RESERVE_PER_SECOND = 2;
const WINDOW_SECONDS = 10;

let gw: TestGateway;
let secret: string;

beforeAll(async () => {
  gw = await startTestGateway({
    env: {
      TOLLGATE_BREAKER_FAILURES: '1000000',
      TOLLGATE_RETRY_BUDGET_PERCENT: String(PERCENT),
      TOLLGATE_RETRY_BUDGET_MIN_PER_SECOND: String(RESERVE_PER_SECOND),
    },
  });
  secret = (await gw.createKey('team-budget')).secret;
  const store = gw.started.runtime.adminStore;
  await store.routing.upsertRoute({
    name: 'storm',
    strategy: 'PRIORITY',
    retries: 2,
    targets: [
      { provider: 'sim', model: 'storm-primary', priority: 0 },
      { provider: 'sim-b', model: 'storm-backup', priority: 1 },
    ],
  });
  await gw.started.runtime.app.catalog.load();
  gw.sim.behave('storm-primary', { status: 503 });
  gw.sim.behave('storm-backup', { status: 503 });
});
afterAll(async () => {
  await gw?.close();
});

describe('every target failing, breakers never opening', () => {
  it('the retry budget keeps upstream calls near one per request; answers are fast 502s; nothing lost', async ({ annotate }) => {
    const N = 600;
    const concurrency = 16;
    const statuses = new Map<number, number>();
    const latencies: number[] = [];
    let next = 0;
    const t0 = Date.now();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < N) {
          next++;
          const started = performance.now();
          const r = await chat(gw.baseURL, secret, { model: 'storm', messages: [{ role: 'user', content: 'hello' }] });
          latencies.push(performance.now() - started);
          statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        }
      }),
    );
    const seconds = (Date.now() - t0) / 1000;
    latencies.sort((a, b) => a - b);
    const upstreamCalls = gw.sim.requests.filter((r) => String(r.body?.model ?? '').startsWith('storm-')).length;
    const refused = await metric(gw.url, 'tollgate_retries_refused_total');
    // Each window of 10 s allows its reserve plus 20 % of its requests.
    const windows = Math.ceil(seconds / WINDOW_SECONDS) + 1;
    const bound = N + (PERCENT / 100) * N + RESERVE_PER_SECOND * WINDOW_SECONDS * windows;
    const p50 = latencies[Math.floor(N / 2)]!;
    const p99 = latencies[Math.floor(N * 0.99)]!;
    await annotate(
      `${N} requests (${concurrency} at a time, 6 attempts each allowed by the route) in ${seconds.toFixed(1)} s: statuses ${JSON.stringify([...statuses])}, ` +
        `${upstreamCalls} upstream calls (bound ${bound}; ${6 * N} without a budget), ${refused} retries refused, p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms`,
      'observed',
    );
    expect([...statuses.keys()]).toEqual([502]);
    expect(upstreamCalls).toBeGreaterThanOrEqual(N); // every request made its first attempt
    expect(upstreamCalls).toBeLessThanOrEqual(bound);
    expect(refused).toBeGreaterThan(0);
    expect(p50).toBeLessThan(500); // no request waits out 6 attempts' backoff once the budget is spent

    await gw.started.runtime.journal.flush();
    const report = await expectNothingLost(gw.started.runtime.clickhouse.client, { completed: [], total: N });
    expect(report.rows).toBe(N);
  }, 120_000);
});
