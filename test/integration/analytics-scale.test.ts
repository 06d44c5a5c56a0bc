// Percentile accuracy at scale: 100k generated receipts straight into `receipts` (the
// materialized views fill the rollup); the rollup's TDigest percentiles must be within 2 %
// of the exact ones, and groups under 10k requests must be answered exactly.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { latency, type AnalyticsContext } from '../../src/analytics/index.js';
import { insertSyntheticReceipts } from '../../src/analytics/synthetic.js';
import { openClickHouse, type ClickHouseStore } from '../../src/store/clickhouse.js';
import { migrateClickHouse } from '../../src/store/clickhouse-migrate.js';

let dir: string;
let ch: ClickHouseStore;
let ctx: AnalyticsContext;
const from = new Date('2026-10-01T00:00:00.000Z');
const to = new Date('2026-10-02T00:00:00.000Z');

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'tollgate-scale-'));
  ch = await openClickHouse({ dataDir: dir });
  await migrateClickHouse(ch.client);
  await insertSyntheticReceipts(ch.client, { rows: 100_000, from, spanMs: 86_400_000, models: 3, teams: 4 });
  ctx = { clickhouse: ch.client, receiptsTable: 'receipts', analyticsTimeoutMs: 30_000, principal: { role: 'ADMIN', teamId: null } };
}, 120_000);

afterAll(async () => {
  await ch?.close();
  await rm(dir, { recursive: true, force: true });
});

async function exact(groupCol: string | null): Promise<Map<string, { n: number; lat: number[]; ttft: number[] }>> {
  const g = groupCol ?? "''";
  // groupCol is a literal from this test, not input
  const rs = await ch.client.query({
    query: `SELECT ${g} AS g, count() AS n, quantilesExact(0.5, 0.9, 0.99)(latency_ms) AS lat, quantilesExact(0.5, 0.95, 0.99)(ttft_ms) AS ttft
            FROM receipts GROUP BY g`,
    format: 'JSONEachRow',
    clickhouse_settings: { output_format_json_quote_64bit_integers: 0 },
  });
  const rows = await rs.json<{ g: string; n: number; lat: number[]; ttft: number[] }>();
  return new Map(rows.map((r) => [r.g, r]));
}

const within = (got: number | null, want: number, rel = 0.02) => {
  expect(got).not.toBeNull();
  expect(Math.abs(got! - want) / want, `${got} vs ${want}`).toBeLessThanOrEqual(rel);
};

describe('percentile accuracy at scale', () => {
  it('rollup TDigest p50/p90/p99 within 2 % of exact (100k receipts, one group and per model)', async () => {
    for (const [dims, col] of [[[], null], [['MODEL'], 'model']] as const) {
      const want = await exact(col);
      const rows = await latency(ctx, { from, to }, [...dims]);
      expect(rows.length).toBe(want.size);
      for (const row of rows) {
        const w = want.get(row.key.model ?? '')!;
        expect(row.requests).toBe(w.n);
        expect(row.requests).toBeGreaterThanOrEqual(10_000);
        expect(row.method).toBe('tdigest');
        within(row.p50Ms, w.lat[0]!);
        within(row.p90Ms, w.lat[1]!);
        within(row.p99Ms, w.lat[2]!);
        within(row.ttftP50Ms, w.ttft[0]!);
        within(row.ttftP95Ms, w.ttft[1]!);
        within(row.ttftP99Ms, w.ttft[2]!);
      }
    }
  });

  it('groups under 10k requests are exact even when the rollup answers the range', async () => {
    const rows = await latency(ctx, { from, to }, ['MODEL', 'TEAM', 'FEATURE']);
    const rs = await ch.client.query({
      query: `SELECT model, team_id, feature, count() AS n, quantilesExact(0.5, 0.9, 0.95, 0.99)(latency_ms) AS lat
              FROM receipts GROUP BY model, team_id, feature`,
      format: 'JSONEachRow',
      clickhouse_settings: { output_format_json_quote_64bit_integers: 0 },
    });
    const want = new Map((await rs.json<any>()).map((r: any) => [`${r.model}|${r.team_id}|${r.feature}`, r]));
    expect(rows.length).toBe(want.size);
    for (const row of rows) {
      const w: any = want.get(`${row.key.model}|${row.key.teamId}|${row.key.feature}`);
      expect(row.requests).toBe(w.n);
      expect(row.requests).toBeLessThan(10_000);
      expect(row.method).toBe('exact');
      expect([row.p50Ms, row.p90Ms, row.p95Ms, row.p99Ms]).toEqual(w.lat);
    }
  });
});
