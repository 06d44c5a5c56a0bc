// Percentile accuracy at scale: 100k generated receipts straight into `receipts` (the
// materialized views fill the rollups); the sketch percentiles (latency_daily for whole
// days, raw receipts sketched for the partial days at the ends) must be within 2 % of the
// exact ones, and groups under 10k requests must be answered exactly.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AnalyticsContext, latency } from '../../src/analytics/index.js';
import { clickHouseDateTime } from '../../src/analytics/sql.js';
import { insertSyntheticReceipts } from '../../src/analytics/synthetic.js';
import { type ClickHouseStore, openClickHouse } from '../../src/store/clickhouse.js';
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
  // A second day (distinct receipts), for ranges that end or start inside a day.
  await insertSyntheticReceipts(ch.client, { rows: 100_000, offset: 100_000, from: to, spanMs: 86_400_000, models: 3, teams: 4 });
  ctx = {
    clickhouse: ch.client,
    receiptsTable: 'receipts',
    analyticsTimeoutMs: 30_000,
    analyticsMaxRows: 100_000,
    analyticsMaxMemoryBytes: 0,
    principal: { role: 'ADMIN', teamId: null },
  };
}, 120_000);

afterAll(async () => {
  await ch?.close();
  await rm(dir, { recursive: true, force: true });
});

async function exact(groupCol: string | null, range = { from, to }): Promise<Map<string, { n: number; lat: number[]; ttft: number[] }>> {
  const g = groupCol ?? "''";
  // groupCol is a literal from this test, not input
  const rs = await ch.client.query({
    query: `SELECT ${g} AS g, count() AS n, quantilesExact(0.5, 0.9, 0.99)(latency_ms) AS lat, quantilesExact(0.5, 0.95, 0.99)(ttft_ms) AS ttft
            FROM receipts WHERE started_at >= {from:DateTime64(3, 'UTC')} AND started_at < {to:DateTime64(3, 'UTC')} GROUP BY g`,
    query_params: { from: clickHouseDateTime(range.from), to: clickHouseDateTime(range.to) },
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
  it('sketch p50/p90/p99 within 2 % of exact (100k receipts, one group and per model)', async () => {
    for (const [dims, col] of [
      [[], null],
      [['MODEL'], 'model'],
    ] as const) {
      const want = await exact(col);
      const rows = await latency(ctx, { from, to }, [...dims]);
      expect(rows.length).toBe(want.size);
      for (const row of rows) {
        const w = want.get(row.key.model ?? '')!;
        expect(row.requests).toBe(w.n);
        expect(row.requests).toBeGreaterThanOrEqual(10_000);
        expect(row.method).toBe('sketch');
        within(row.p50Ms, w.lat[0]!);
        within(row.p90Ms, w.lat[1]!);
        within(row.p99Ms, w.lat[2]!);
        within(row.ttftP50Ms, w.ttft[0]!);
        within(row.ttftP95Ms, w.ttft[1]!);
        within(row.ttftP99Ms, w.ttft[2]!);
      }
    }
  });

  it('a range with partial days at both ends: whole days from the rollup, the ends from raw receipts, within 2 %', async () => {
    // [day 1 13:17:00.250, day 3 00:00): day 2 whole (latency_daily), the end of day 1 raw.
    const range = { from: new Date(from.getTime() + 13 * 3_600_000 + 17 * 60_000 + 250), to: new Date(to.getTime() + 86_400_000) };
    for (const [dims, col] of [
      [[], null],
      [['MODEL'], 'model'],
    ] as const) {
      const want = await exact(col, range);
      const rows = await latency(ctx, range, [...dims]);
      expect(rows.length).toBe(want.size);
      for (const row of rows) {
        const w = want.get(row.key.model ?? '')!;
        expect(row.requests).toBe(w.n);
        expect(row.method).toBe('sketch');
        within(row.p50Ms, w.lat[0]!);
        within(row.p90Ms, w.lat[1]!);
        within(row.p99Ms, w.lat[2]!);
        within(row.ttftP50Ms, w.ttft[0]!);
        within(row.ttftP99Ms, w.ttft[2]!);
      }
    }
    // No whole day in the range: exact from raw receipts, whatever the group size.
    const short = { from: new Date(from.getTime() + 3_600_000), to: new Date(from.getTime() + 23 * 3_600_000) };
    const want = await exact(null, short);
    const [row] = await latency(ctx, short, []);
    expect(row!.method).toBe('exact');
    expect(row!.requests).toBe(want.get('')!.n);
    expect([row!.p50Ms, row!.p90Ms, row!.p99Ms]).toEqual(want.get('')!.lat);
  });

  it('groups under 10k requests are exact even when the rollup answers the range', async () => {
    const rows = await latency(ctx, { from, to }, ['MODEL', 'TEAM', 'FEATURE']);
    const rs = await ch.client.query({
      query: `SELECT model, team_id, feature, count() AS n, quantilesExact(0.5, 0.9, 0.95, 0.99)(latency_ms) AS lat
              FROM receipts WHERE started_at < '2026-10-02 00:00:00' GROUP BY model, team_id, feature`,
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
