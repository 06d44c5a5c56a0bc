// Fault 1: the upstream misbehaves (all on loopback, through the simulated provider).
// Each case asserts the routing behaviour, and the file ends with the nothing-lost check
// over every request it sent.
import net from 'node:net';
import v8 from 'node:v8';
import vm from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { chat, expectNothingLost } from './support.js';

let gw: TestGateway;
let secret: string;
let routeNo = 0;
let sent = 0;
const completed: string[] = [];
const clientCosts = new Map<string, number | null>();

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

beforeAll(async () => {
  gw = await startTestGateway({
    env: {
      TOLLGATE_FIRST_BYTE_TIMEOUT_MS: '400',
      TOLLGATE_ANSWER_TIMEOUT_MS: '400',
      TOLLGATE_IDLE_TIMEOUT_MS: '400',
      TOLLGATE_BREAKER_FAILURES: '5',
      TOLLGATE_BREAKER_COOLDOWN_MS: '1000',
    },
  });
  secret = (await gw.createKey('team-faults')).secret;
  await gw.started.runtime.adminStore.providers.upsertProvider({
    name: 'refused',
    kind: 'OPENAI_COMPATIBLE',
    baseUrl: `http://127.0.0.1:${await freePort()}/v1`,
  });
});
afterAll(async () => {
  await gw?.close();
});

async function route(primaryProvider = 'sim', retries = 0, single = false) {
  routeNo++;
  const name = `fault-${routeNo}`;
  const primary = `p-${routeNo}`;
  const backup = `b-${routeNo}`;
  const store = gw.started.runtime.adminStore;
  await store.routing.upsertRoute({
    name,
    strategy: 'PRIORITY',
    retries,
    targets: single
      ? [{ provider: primaryProvider, model: primary, priority: 0 }]
      : [
          { provider: primaryProvider, model: primary, priority: 0 },
          { provider: 'sim-b', model: backup, priority: 1 },
        ],
  });
  if (primaryProvider === 'sim') await store.pricing.setPrice({ provider: 'sim', model: primary, inputPerMTokUsd: 3, outputPerMTokUsd: 3 });
  await store.pricing.setPrice({ provider: 'sim-b', model: backup, inputPerMTokUsd: 1, outputPerMTokUsd: 1 });
  await gw.started.runtime.app.catalog.load();
  return { name, primary, backup };
}

async function send(model: string, extra: Record<string, unknown> = {}) {
  sent++;
  const r = await chat(gw.baseURL, secret, { model, messages: [{ role: 'user', content: 'hello there' }], ...extra });
  if (r.completed && r.receiptId) {
    completed.push(r.receiptId);
    if (r.cost !== undefined) clientCosts.set(r.receiptId, r.cost);
  }
  return r;
}

async function receipt(id: string | null): Promise<Record<string, any>> {
  const res = await fetch(`${gw.baseURL}/receipts/${id}`, { headers: { authorization: `Bearer ${secret}` } });
  expect(res.status).toBe(200);
  return (await res.json()) as Record<string, any>;
}

const calls = (model: string) => gw.sim.requests.filter((r) => r.body?.model === model).length;

describe('upstream faults before the first byte: fail over, bill one success', () => {
  for (const [label, behaviour] of [
    ['500', { status: 500 }],
    ['503', { status: 503 }],
    ['429 + Retry-After', { status: 429, retryAfterSeconds: 1 }],
  ] as const) {
    it(`${label}: the backup answers, the receipt bills only the backup`, async ({ annotate }) => {
      const { name, primary, backup } = await route();
      gw.sim.behave(primary, { ...behaviour, times: 1 });
      // The 503 case streams (its cost arrives in the closing receipt event); the others are JSON.
      const stream = behaviour.status === 503;
      const r = await send(name, stream ? { stream: true, stream_options: { include_usage: true } } : {});
      expect(r.status).toBe(200);
      expect(r.completed).toBe(true);
      // Streams too: the attempt that is streaming counts in the header written before it ends.
      expect(r.headers.get('x-tollgate-attempts')).toBe('2');
      expect(calls(primary)).toBe(1);
      expect(calls(backup)).toBe(1);
      const rec = await receipt(r.receiptId);
      expect(rec.status).toBe('ok');
      expect(rec.model).toBe(backup);
      expect(rec.attempts.map((a: any) => a.status)).toEqual([behaviour.status, 200]);
      // Billed at the backup's price (1 $/MTok both ways), not the primary's (3 $/MTok).
      expect(rec.cost_usd).toBeCloseTo((rec.prompt_tokens + rec.completion_tokens) / 1e6, 12);
      if (stream) expect(r.cost).toBe(rec.cost_usd);
      await annotate(
        `${label}${stream ? ' (streamed)' : ''}: 200 from ${rec.model} after attempts ${JSON.stringify(rec.attempts.map((a: any) => a.status))}, billed $${rec.cost_usd} (backup price)`,
        'observed',
      );
    });
  }

  it('400: no failover, the client gets the 400, nothing billed', async ({ annotate }) => {
    const { name, primary, backup } = await route();
    gw.sim.behave(primary, { status: 400, times: 1 });
    const r = await send(name);
    expect(r.status).toBe(400);
    expect(JSON.parse(r.text).error.type).toBeTruthy();
    expect(calls(backup)).toBe(0);
    const rec = await receipt(r.receiptId);
    expect(rec.status).toBe('error');
    expect(rec.http_status).toBe(400);
    expect(rec.attempts).toHaveLength(1);
    expect(rec.cost_usd ?? 0).toBe(0);
    await annotate(
      `400 → client got 400 (${JSON.parse(r.text).error.type}), 1 attempt, backup calls 0, receipt status ${rec.status}, cost ${rec.cost_usd ?? 0}`,
      'observed',
    );
  });

  it('connection refused: fails over at once', async ({ annotate }) => {
    const { name, backup } = await route('refused');
    const t0 = Date.now();
    const r = await send(name);
    const took = Date.now() - t0;
    expect(r.status).toBe(200);
    expect(took).toBeLessThan(1000);
    const rec = await receipt(r.receiptId);
    expect(rec.model).toBe(backup);
    expect(rec.attempts[0]).toMatchObject({ provider: 'refused', status: 0, error: 'connect_refused' });
    await annotate(`connection refused → answered by the backup in ${took} ms, first attempt error ${rec.attempts[0].error}`, 'observed');
  });

  it('hang before headers: first-byte timeout (400 ms) then failover; 504 when it is the only target', async ({ annotate }) => {
    const { name, primary, backup } = await route();
    gw.sim.behave(primary, { hang: 'before-headers', times: 1 });
    const t0 = Date.now();
    const r = await send(name);
    const took = Date.now() - t0;
    expect(r.status).toBe(200);
    expect(took).toBeGreaterThanOrEqual(380);
    expect(took).toBeLessThan(2000);
    const rec = await receipt(r.receiptId);
    expect(rec.model).toBe(backup);
    expect(rec.attempts[0]).toMatchObject({ status: 0, error: 'timeout_first_byte' });

    const solo = await route('sim', 0, true);
    gw.sim.behave(solo.primary, { hang: 'before-headers', times: 1 });
    const t1 = Date.now();
    const timedOut = await send(solo.name);
    const soloTook = Date.now() - t1;
    expect(timedOut.status).toBe(504);
    expect(soloTook).toBeLessThan(2000);
    await annotate(`hang before headers → backup answered after ${took} ms (timeout_first_byte); single target → 504 after ${soloTook} ms`, 'observed');
    expect(JSON.parse(timedOut.text).error).toMatchObject({ type: 'api_error', code: 'upstream_error' });
  });
});

describe('upstream faults after the first byte: never fail over', () => {
  it('reset mid-stream: SSE error event, partial receipt with the tokens delivered, backup never called', async ({ annotate }) => {
    const { name, primary, backup } = await route();
    gw.sim.behave(primary, { breakAfterChunks: 3, completionTokens: 20, times: 1 });
    const r = await send(name, { stream: true });
    expect(r.status).toBe(200);
    expect(r.completed).toBe(false);
    expect(r.text).toContain('event: error');
    expect(r.text).toContain('upstream_stream_interrupted');
    expect(r.text).not.toContain('data: [DONE]');
    expect(calls(backup)).toBe(0);
    const rec = await receipt(r.receiptId);
    expect(rec.status).toBe('partial');
    expect(rec.completion_tokens).toBeGreaterThan(0);
    expect(rec.completion_tokens).toBeLessThan(20);
    // The partial answer is billed for what was delivered, and the client is told so.
    expect(rec.cost_usd).toBeGreaterThan(0);
    expect(r.text).toMatch(/\n: tollgate-receipt .*"status":"partial"/);
    await annotate(
      `reset after 3 chunks → SSE error upstream_stream_interrupted, no [DONE], partial receipt billing ${rec.completion_tokens} of 20 completion tokens ($${rec.cost_usd}), backup calls 0`,
      'observed',
    );
  });

  it('slow drip past the idle timeout: cut after 400 ms of silence, partial receipt, no failover', async ({ annotate }) => {
    const { name, primary, backup } = await route();
    gw.sim.behave(primary, { dripMs: 1500, completionTokens: 10, times: 1 });
    const t0 = Date.now();
    const r = await send(name, { stream: true });
    const took = Date.now() - t0;
    expect(r.status).toBe(200);
    expect(took).toBeLessThan(1500 + 1000); // one drip interval at most, never the 15 s the drip would take
    expect(r.text).toContain('event: error');
    expect(calls(backup)).toBe(0);
    const rec = await receipt(r.receiptId);
    expect(rec.status).toBe('partial');
    expect(rec.attempts).toHaveLength(1);
    expect(rec.attempts[0].error).toBe('timeout_idle');
    await annotate(`1.5 s drip → stream cut after ${took} ms with an SSE error (timeout_idle), partial receipt, backup calls 0`, 'observed');
  });
});

describe('every target failing under load', () => {
  it('answers fast 502/503s, bounded retries and upstream calls, no memory or connection growth', async ({ annotate }) => {
    const { name, primary, backup } = await route('sim', 1);
    gw.sim.behave(primary, { status: 503 });
    gw.sim.behave(backup, { status: 502 });
    const before = { primary: calls(primary), backup: calls(backup) };

    const burst = async (n: number, concurrency: number) => {
      const statuses = new Map<number, number>();
      const latencies: number[] = [];
      let attemptsMax = 0;
      let next = 0;
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (next < n) {
            next++;
            const t0 = performance.now();
            const r = await send(name);
            latencies.push(performance.now() - t0);
            statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
            attemptsMax = Math.max(attemptsMax, Number(r.headers.get('x-tollgate-attempts') ?? 0));
          }
        }),
      );
      latencies.sort((a, b) => a - b);
      return { statuses, p50: latencies[Math.floor(latencies.length * 0.5)]!, p99: latencies[Math.floor(latencies.length * 0.99)]!, attemptsMax };
    };

    await burst(200, 32); // warm-up: breakers open, pools and JIT settle
    const N = 1500;
    const measure = async () => {
      gc();
      const heap0 = process.memoryUsage().heapUsed;
      const rss0 = process.memoryUsage().rss;
      const t0 = Date.now();
      const run = await burst(N, 32);
      const seconds = (Date.now() - t0) / 1000;
      await gw.started.runtime.journal.flush();
      gc();
      return { ...run, seconds, heapDelta: process.memoryUsage().heapUsed - heap0, rssDelta: process.memoryUsage().rss - rss0 };
    };
    // Two equal bursts: the first may still grow caches and pools (chDB shares this process,
    // so RSS includes its inserts); the second must find memory flat.
    const first = await measure();
    const second = await measure();
    const mib = (b: number) => (b / 2 ** 20).toFixed(1);
    for (const [i, run] of [first, second].entries()) {
      await annotate(
        `all targets failing, burst ${i + 1}: ${N} requests in ${run.seconds.toFixed(1)} s, statuses ${JSON.stringify([...run.statuses])}, ` +
          `p50 ${run.p50.toFixed(1)} ms, p99 ${run.p99.toFixed(1)} ms, max attempts ${run.attemptsMax}, heap Δ ${mib(run.heapDelta)} MiB, RSS Δ ${mib(run.rssDelta)} MiB, sim connections ${gw.sim.connections()}`,
        'observed',
      );
    }
    const upstreamCalls = calls(primary) - before.primary + (calls(backup) - before.backup);
    await annotate(`upstream calls for ${2 * N + 200} failing requests: ${upstreamCalls}`, 'observed');

    for (const run of [first, second]) {
      // Only gateway errors, and fast: no request waits on a timeout or in a queue (the
      // bound is loose because client, gateway and chDB share one process on 2 shared cores).
      for (const status of run.statuses.keys()) expect([502, 503]).toContain(status);
      // (Timeouts here are 400 ms: 3000 requests queued behind them would take minutes.)
      expect(run.p50).toBeLessThan(1000);
      expect(run.p99).toBeLessThan(3000);
      // Retries bounded: 2 targets × (1 + retries 1) at most.
      expect(run.attemptsMax).toBeLessThanOrEqual(4);
    }
    // With breakers open (5 failures, 1 s cooldown), the upstream sees half-open probes, not 2 × 2 × N calls.
    expect(upstreamCalls).toBeLessThan(N / 4);
    // Memory flat across the second burst; connections to the upstream bounded.
    expect(second.heapDelta).toBeLessThan(16 * 2 ** 20);
    expect(second.rssDelta).toBeLessThan(64 * 2 ** 20);
    expect(gw.sim.connections()).toBeLessThanOrEqual(2 * 32);
    gw.sim.reset();
  }, 240_000);
});

describe('nothing lost', () => {
  it('every request sent has exactly one receipt; spend, chain and signatures check out', async ({ annotate }) => {
    await gw.started.runtime.journal.flush();
    const jwks = await (await fetch(`${gw.url}/.well-known/tollgate/receipt-keys`)).json();
    const report = await expectNothingLost(gw.started.runtime.clickhouse.client, { completed, clientCosts, jwks: jwks as any, total: sent });
    expect(report.rows).toBe(sent);
    expect(completed.length).toBeGreaterThanOrEqual(5);
    await annotate(
      `${sent} requests sent → ${report.rows} receipts (${completed.length} completed, each found once), spend $${report.spendUsd.toFixed(6)} = rollup = client-reported, chain and signatures verify`,
      'observed',
    );
  }, 60_000);
});
