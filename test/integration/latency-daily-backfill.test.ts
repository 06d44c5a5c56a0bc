// Migration 003 on a database that already holds receipts: latency_daily must be backfilled
// (not only fed by its view from then on), and applying the file again after a crash, which
// re-runs every statement, must not backfill twice.
import { cp, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { insertSyntheticReceipts } from '../../src/analytics/synthetic.js';
import { type ClickHouseStore, openClickHouse } from '../../src/store/clickhouse.js';
import { loadMigrations, migrateClickHouse, migrationsDir } from '../../src/store/clickhouse-migrate.js';

let dir: string;
let ch: ClickHouseStore;
const from = new Date('2026-10-01T00:00:00.000Z');

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'tollgate-backfill-'));
  ch = await openClickHouse({ dataDir: dir });
}, 120_000);

afterAll(async () => {
  await ch?.close();
  await rm(dir, { recursive: true, force: true });
});

async function scalar(query: string): Promise<Record<string, unknown>> {
  const rs = await ch.client.query({ query, format: 'JSONEachRow', clickhouse_settings: { output_format_json_quote_64bit_integers: 0 } });
  return (await rs.json<Record<string, unknown>>())[0]!;
}

/** Per day and model: receipts vs latency_daily (counts and one merged percentile). */
async function mismatches(): Promise<number> {
  const r = await scalar(`SELECT count() AS bad FROM (
      SELECT toStartOfDay(started_at) AS day, model, count() AS n, quantilesDD(0.01, 0.5, 0.99)(latency_ms) AS q FROM receipts GROUP BY day, model) AS a
    FULL OUTER JOIN (
      SELECT day, model, sum(requests) AS n, quantilesDDMerge(0.01, 0.5, 0.99)(latency_dd) AS q FROM latency_daily GROUP BY day, model) AS b
    USING (day, model)
    WHERE a.n != b.n OR a.q != b.q`);
  return Number(r.bad);
}

describe('migration 003 on a non-empty database', () => {
  it('backfills latency_daily from the stored receipts, once, and the view feeds it afterwards', async () => {
    // Only 001 and 002, then receipts.
    const only = await mkdtemp(path.join(dir, 'migrations-'));
    for (const name of ['001_receipts.sql', '002_rollups.sql']) await cp(path.join(migrationsDir(), name), path.join(only, name));
    await migrateClickHouse(ch.client, { dir: only });
    await insertSyntheticReceipts(ch.client, { rows: 20_000, from, spanMs: 3 * 86_400_000, models: 3, teams: 2 });

    const { applied } = await migrateClickHouse(ch.client);
    expect(applied).toContain('003_latency_daily.sql');
    expect(await scalar('SELECT sum(requests) AS n FROM latency_daily')).toEqual({ n: 20_000 });
    expect(await mismatches()).toBe(0);

    // A crash after the backfill but before the file was recorded re-runs all its statements.
    const file = (await loadMigrations(migrationsDir())).find((f) => f.name === '003_latency_daily.sql')!;
    for (const statement of file.statements) await ch.client.command({ query: statement });
    expect(await scalar('SELECT sum(requests) AS n FROM latency_daily')).toEqual({ n: 20_000 });

    // New receipts reach the rollup through the view.
    await insertSyntheticReceipts(ch.client, { rows: 5_000, offset: 20_000, from, spanMs: 3 * 86_400_000, models: 3, teams: 2 });
    expect(await scalar('SELECT sum(requests) AS n FROM latency_daily')).toEqual({ n: 25_000 });
    expect(await mismatches()).toBe(0);
  });
});
