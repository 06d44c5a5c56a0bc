// Analytics questions that ask too much: an answer with more rows than the gateway will hold,
// a query past its memory limit, and a filter too long for a URL (thousands of end users),
// on the embedded engine and on the server path (@clickhouse/client over HTTP).
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AnalyticsContext, costPerTask, usage } from '../../src/analytics/index.js';
import { insertSyntheticReceipts } from '../../src/analytics/synthetic.js';
import { type ClickHouseStore, openClickHouse } from '../../src/store/clickhouse.js';
import { migrateClickHouse } from '../../src/store/clickhouse-migrate.js';
import { type ClickHouseHttp, startClickHouseHttp } from '../faults/clickhouse-http.js';

const from = new Date('2026-10-01T00:00:00.000Z');
const to = new Date('2026-10-02T00:00:00.000Z');
const SYNTHETIC = { rows: 4_000, from, spanMs: 86_400_000, models: 2, teams: 2, endUsersPerTeam: 100 };

let dir: string;
let embedded: ClickHouseStore;
let http: ClickHouseHttp;
let server: ClickHouseStore;

const context = (store: ClickHouseStore, bounds: Partial<AnalyticsContext> = {}): AnalyticsContext => ({
  clickhouse: store.client,
  receiptsTable: 'receipts',
  analyticsTimeoutMs: 30_000,
  analyticsMaxRows: 100_000,
  analyticsMaxMemoryBytes: 0,
  principal: { role: 'ADMIN', teamId: null },
  ...bounds,
});

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'tollgate-analytics-bounds-'));
  embedded = await openClickHouse({ dataDir: path.join(dir, 'embedded') });
  await migrateClickHouse(embedded.client);
  await insertSyntheticReceipts(embedded.client, SYNTHETIC);
  http = await startClickHouseHttp(path.join(dir, 'server'));
  server = await openClickHouse({ url: http.url, dataDir: path.join(dir, 'unused') });
  await migrateClickHouse(server.client);
  await insertSyntheticReceipts(server.client, SYNTHETIC);
}, 120_000);

afterAll(async () => {
  await embedded?.close();
  await server?.close();
  await http?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('analytics bounds', () => {
  it('an answer past TOLLGATE_ANALYTICS_MAX_ROWS is refused with a clear error, not held', async () => {
    const n = (await usage(context(embedded), { from, to }, ['END_USER'])).length;
    expect(n).toBeGreaterThan(190); // 2 teams × 100 end users, hashed
    // The embedded engine stops the query itself (it hands a result over whole); a server's
    // streamed answer is cut as it comes; either way the same error.
    for (const [store, analyticsEmbedded] of [
      [embedded, true],
      [embedded, false],
      [server, false],
    ] as const) {
      const err = await usage(context(store, { analyticsEmbedded, analyticsMaxRows: n - 1 }), { from, to }, ['END_USER']).catch((e) => e);
      expect(err.extensions?.code).toBe('ANALYTICS_RESULT_TOO_LARGE');
      expect(err.message).toContain(`more than ${n - 1} rows`);
      // The bound is on the answer: exactly at it still answers.
      expect((await usage(context(store, { analyticsEmbedded, analyticsMaxRows: n }), { from, to }, ['END_USER'])).length).toBe(n);
    }
    // Not on a subquery: costPerTask's has a row per task, far past 2.
    expect((await costPerTask(context(embedded, { analyticsEmbedded: true, analyticsMaxRows: 2 }), { from, to }, ['TEAM'])).length).toBe(2);
  });

  it('a query past TOLLGATE_ANALYTICS_MAX_MEMORY_MB is refused with a clear error', async () => {
    const err = await usage(context(embedded, { analyticsMaxMemoryBytes: 64 * 1024 }), { from, to }, ['END_USER', 'MODEL']).catch((e) => e);
    expect(err.extensions?.code).toBe('ANALYTICS_RESULT_TOO_LARGE');
    expect(err.message).toMatch(/more memory/);
  });

  it('a filter of 5,000 end users (past any URL limit) is answered on the server path', async () => {
    const endUsers = Array.from({ length: 5_000 }, (_, i) => `someone-who-never-called-${i}`);
    endUsers.push('user-0-7', 'user-1-9');
    for (const store of [server, embedded]) {
      const rows = await usage(context(store), { from, to, endUsers }, ['END_USER']);
      expect(rows.map((r) => r.key.endUser).sort()).toEqual(['user-0-7', 'user-1-9']);
      expect(rows.every((r) => r.requests > 0)).toBe(true);
    }
  });
});
