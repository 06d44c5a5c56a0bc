// Fault 2: ClickHouse (the server path: @clickhouse/client over HTTP, CLICKHOUSE_URL) is
// unavailable for a while, then slow past the client's timeout. ClickHouse here is the
// test-only HTTP endpoint over chDB in a child process (clickhouse-http.ts), behind a TCP
// fault proxy (tcp-proxy.ts); the Tollgate under test runs in this process without chDB.
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { type ClickHouseClient, createClient } from '@clickhouse/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { type Started, startServer } from '../../src/main.js';
import { type SimulatedProvider, startSimulatedProvider } from '../../src/sim/simulated.js';
import { type ClickHouseHttp, startClickHouseHttp } from './clickhouse-http.js';
import { chat, eventually, expectNothingLost, metric } from './support.js';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.js';

// Tollgate has no environment variable for the ClickHouse request timeout (the client's
// default is 30 s); the test sets it on the parsed config so "slow" need not mean 30 s.
const CLICKHOUSE_TIMEOUT_MS = 1500;
const DRAIN_TIMEOUT_MS = 2000;

let tmp: string;
let ch: ClickHouseHttp;
let proxy: TcpProxy;
let sim: SimulatedProvider;
let config: ReturnType<typeof loadConfig>;
let gw: Started;
let secret: string;
let direct: ClickHouseClient;
const completed: string[] = [];
const clientCosts = new Map<string, number | null>();

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'tollgate-faults-ch-'));
  ch = await startClickHouseHttp(path.join(tmp, 'chdb'));
  proxy = await startTcpProxy({ host: '127.0.0.1', port: ch.port });
  sim = await startSimulatedProvider({ defaults: { completionTokens: 6 } });
  config = loadConfig({
    TOLLGATE_DATA_DIR: path.join(tmp, 'data'),
    TOLLGATE_PORT: '0',
    TOLLGATE_LOG_LEVEL: 'silent',
    TOLLGATE_BATCH_MAX_MS: '50',
    TOLLGATE_DRAIN_TIMEOUT_MS: String(DRAIN_TIMEOUT_MS),
    CLICKHOUSE_URL: proxy.via(ch.url),
  } as NodeJS.ProcessEnv);
  (config.clickhouse as { requestTimeoutMs?: number }).requestTimeoutMs = CLICKHOUSE_TIMEOUT_MS;
  gw = await startServer(config, { quiet: true });
  const store = gw.runtime.adminStore;
  await store.providers.upsertProvider({ name: 'sim', kind: 'SIMULATED', baseUrl: sim.url, apiKey: 'x' });
  await store.routing.upsertRoute({ name: 'chat-default', strategy: 'PRIORITY', targets: [{ provider: 'sim', model: 'sim-chat' }] });
  await store.pricing.setPrice({ provider: 'sim', model: 'sim-chat', inputPerMTokUsd: 0.15, outputPerMTokUsd: 0.6 });
  await gw.runtime.app.catalog.load();
  const team = await store.teams.ensureTeam('team-ch');
  secret = (await store.teams.createApiKey({ teamId: team.id, name: 'faults' })).secret;
  direct = createClient({ url: ch.url });
}, 120_000);
afterAll(async () => {
  await gw?.stop();
  await direct?.close();
  await proxy?.close();
  await sim?.close();
  await ch?.close();
  await rm(tmp, { recursive: true, force: true });
});

async function traffic(n: number, tag: string): Promise<{ ok: number; maxMs: number }> {
  let ok = 0;
  let maxMs = 0;
  for (let i = 0; i < n; i += 5) {
    await Promise.all(
      Array.from({ length: Math.min(5, n - i) }, async (_, j) => {
        const stream = (i + j) % 2 === 0;
        const t0 = Date.now();
        const r = await chat(`${gw.url}/v1`, secret, { model: 'chat-default', stream, messages: [{ role: 'user', content: `${tag} ${i + j}` }] });
        maxMs = Math.max(maxMs, Date.now() - t0);
        if (r.completed && r.receiptId) {
          ok++;
          completed.push(r.receiptId);
          if (r.cost !== undefined) clientCosts.set(r.receiptId, r.cost);
        }
      }),
    );
  }
  return { ok, maxMs };
}

const count = async () => Number(((await (await direct.query({ query: 'SELECT count() AS n FROM receipts', format: 'JSONEachRow' })).json()) as any[])[0].n);

describe('ClickHouse faults (server path over HTTP)', () => {
  it('is served by the test endpoint: migrations applied, receipts land', async ({ annotate }) => {
    await traffic(10, 'warm');
    await gw.runtime.journal.flush();
    expect(await count()).toBe(10);
    expect((await fetch(`${gw.url}/readyz`)).status).toBe(200);
    await annotate(`10 requests → 10 receipts in ClickHouse over HTTP (${(await ch.stats()).statements} statements served), /readyz 200`, 'observed');
  });

  it('down for a while: traffic unaffected, the WAL grows, full replay on recovery, no duplicate', async ({ annotate }) => {
    const before = await count();
    proxy.setMode('reset');
    const t0 = Date.now();
    const during = await traffic(60, 'down');
    const outageTraffic = Date.now() - t0;
    expect(during.ok).toBe(60); // every request answered while ClickHouse is down
    expect(during.maxMs).toBeLessThan(2000); // and none waits for ClickHouse (loose: 2 shared cores)
    await new Promise((r) => setTimeout(r, 300)); // let the open segment seal and its insert fail
    const queued = await metric(gw.url, 'tollgate_receipts_queued');
    const segments = await metric(gw.url, 'tollgate_wal_segments');
    const errors = await metric(gw.url, 'tollgate_receipt_insert_errors');
    await annotate(
      `ClickHouse down: 60 requests in ${outageTraffic} ms (max ${during.maxMs} ms), WAL ${segments} segments / ${queued} receipts queued, ${errors} failed inserts`,
      'observed',
    );
    expect(queued).toBe(60);
    expect(segments).toBeGreaterThanOrEqual(1);
    expect(errors).toBeGreaterThan(0);
    expect(await count()).toBe(before);
    expect((await fetch(`${gw.url}/readyz`)).status).not.toBe(200);

    proxy.setMode('pass');
    const t1 = Date.now();
    await eventually(async () => (await metric(gw.url, 'tollgate_receipts_queued')) === 0, 20_000, 'WAL replay');
    await annotate(`ClickHouse back: WAL drained in ${Date.now() - t1} ms`, 'observed');
    expect(await metric(gw.url, 'tollgate_wal_segments')).toBe(0);
    expect(await count()).toBe(before + 60);
  }, 90_000);

  it(`slow past the client timeout (${CLICKHOUSE_TIMEOUT_MS} ms): the retried insert is deduplicated`, async ({ annotate }) => {
    const before = await count();
    const tokensBefore = (await ch.stats()).tokens;
    proxy.setDelay(CLICKHOUSE_TIMEOUT_MS + 1000); // every answer from ClickHouse arrives after the client gave up
    let retried: Array<[string, number]>;
    try {
      const during = await traffic(20, 'slow');
      expect(during.ok).toBe(20);
      // None waits for ClickHouse: a request that did would take the 2.5 s delay at least.
      expect(during.maxMs).toBeLessThan(2000);
      // The insert reaches ClickHouse (and is applied), its acknowledgement comes too late,
      // Tollgate retries it with the same token.
      retried = (await eventually(
        async () => {
          const { tokens } = await ch.stats();
          const list = Object.entries(tokens).filter(([t, n]) => n >= 2 && n > (tokensBefore[t] ?? 0) + 1);
          return list.length > 0 ? list : null;
        },
        30_000,
        'an insert retried with the same deduplication token',
      ))!;
      // While acknowledgements are late, what ClickHouse applied is counted once already
      // (segments go in order, so the later ones may not have been sent yet).
      const applied = await count();
      expect(applied).toBeGreaterThan(before);
      expect(applied).toBeLessThanOrEqual(before + 20);
      expect(await metric(gw.url, 'tollgate_receipts_queued')).toBeGreaterThan(0);
    } finally {
      proxy.setDelay(0);
    }
    await eventually(async () => (await metric(gw.url, 'tollgate_receipts_queued')) === 0, 30_000, 'WAL drained');
    const { tokens } = await ch.stats();
    await annotate(
      `ClickHouse slow: ${retried.length} insert(s) sent ≥ 2 times with one token, e.g. ${JSON.stringify(retried[0])}; rows ${await count()}`,
      'observed',
    );
    expect(await count()).toBe(before + 20);
    expect(Object.values(tokens).some((n) => n >= 2)).toBe(true);
  }, 90_000);

  it('down at SIGTERM: the shutdown is bounded, the WAL keeps the receipts, the next start inserts them', async ({ annotate }) => {
    const before = await count();
    proxy.setMode('reset');
    let stopMs: number;
    try {
      expect((await traffic(10, 'stop')).ok).toBe(10);
      const t0 = Date.now();
      await gw.stop(); // what SIGTERM runs
      stopMs = Date.now() - t0;
    } finally {
      proxy.setMode('pass');
    }
    // The drain, then the journal's own bounded close (5 s); it used to wait for ClickHouse for ever.
    expect(stopMs).toBeLessThan(DRAIN_TIMEOUT_MS + 5000 + 3000);
    const kept = (await readdir(path.join(tmp, 'data', 'wal'))).filter((f) => f.endsWith('.jsonl'));
    expect(kept.length).toBeGreaterThan(0);
    expect(await count()).toBe(before);

    gw = await startServer(config, { quiet: true });
    await eventually(async () => (await metric(gw.url, 'tollgate_receipts_queued')) === 0, 20_000, 'WAL replay after the restart');
    expect(await count()).toBe(before + 10);
    await annotate(
      `ClickHouse down at SIGTERM: stopped in ${stopMs} ms, ${kept.length} WAL segment(s) kept; after the restart all 10 receipts inserted`,
      'observed',
    );
  }, 90_000);

  it('nothing lost: one receipt per completed response, spend and chain check out', async ({ annotate }) => {
    await gw.runtime.journal.flush();
    const jwks = await (await fetch(`${gw.url}/.well-known/tollgate/receipt-keys`)).json();
    const report = await expectNothingLost(direct, { completed, clientCosts, jwks: jwks as any, total: completed.length });
    expect(report.rows).toBe(100);
    await annotate(
      `${completed.length} completed → ${report.rows} receipts, no duplicate after the outage and the retried inserts; spend $${report.spendUsd.toFixed(6)} = rollup = client-reported; chain and signatures verify`,
      'observed',
    );
  }, 90_000);
});
