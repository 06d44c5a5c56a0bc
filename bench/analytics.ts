// Analytics benchmark: N synthetic receipts (default 10M; `--rows N` or ANALYTICS_BENCH_ROWS)
// in a temp embedded ClickHouse with the real migrations, then every analytics query over
// 30 days grouped by MODEL × TEAM × FEATURE, through GraphQL (yoga.fetch, admin token) and
// as the same SQL sent directly. Prints p50/p95 and the GraphQL/direct ratio; writes
// bench/results/analytics.json. Targets: p95 ≤ 150 ms for rollup-backed queries at 10M,
// GraphQL ≤ 1.15× direct SQL.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  latency, scopeFilter, uniqueDimensions, runQuery,
  type AnalyticsContext, type AnalyticsFilter, type Dimension,
} from '../src/analytics/index.js';
import { usageQuery } from '../src/analytics/usage.js';
import { cacheStatsQuery } from '../src/analytics/cacheStats.js';
import { latencyRollupQuery } from '../src/analytics/latency.js';
import { timeSeriesQuery } from '../src/analytics/timeSeries.js';
import { costPerTaskQuery } from '../src/analytics/costPerTask.js';
import { insertSyntheticReceipts } from '../src/analytics/synthetic.js';
import type { SqlFragment } from '../src/analytics/sql.js';
import { TokenVerifier } from '../src/gateway/tokens.js';
import { createGraphQL } from '../src/graphql/yoga.js';
import { openClickHouse } from '../src/store/clickhouse.js';
import { migrateClickHouse } from '../src/store/clickhouse-migrate.js';

const argRows = process.argv.indexOf('--rows');
const ROWS = Number(argRows > 0 ? process.argv[argRows + 1] : (process.env.ANALYTICS_BENCH_ROWS ?? 10_000_000));
const ITER = Number(process.env.ANALYTICS_BENCH_ITER ?? 30);
const ADMIN = 'bench-admin-token';

const dataDir = await mkdtemp(path.join(os.tmpdir(), 'tollgate-bench-analytics-'));
const ch = await openClickHouse({ dataDir });
try {
  await migrateClickHouse(ch.client);
  const from = new Date(Date.UTC(2026, 9, 1));
  const to = new Date(from.getTime() + 30 * 86_400_000);
  let t = performance.now();
  await insertSyntheticReceipts(ch.client, { rows: ROWS, from, spanMs: to.getTime() - from.getTime(), teams: 10, models: 5, features: 8 });
  const insertMs = performance.now() - t;
  await ch.client.command({ query: 'OPTIMIZE TABLE receipts_hourly FINAL', clickhouse_settings: { max_execution_time: 0 } as never });
  console.log(`inserted ${ROWS.toLocaleString()} receipts in ${(insertMs / 1000).toFixed(1)} s`);

  const ctx: AnalyticsContext = { clickhouse: ch.client, receiptsTable: 'receipts', analyticsTimeoutMs: 60_000, principal: { role: 'ADMIN', teamId: null } };
  const graphql = createGraphQL(
    {
      clickhouse: ch.client,
      receiptsTable: 'receipts',
      analyticsTimeoutMs: 60_000,
      tokens: new TokenVerifier(ADMIN, { findAccessTokenBySecretHash: async () => null }),
      jwks: () => ({ keys: [] }),
      findReceipt: async () => null,
    } as never,
    { production: true },
  );

  const filter: AnalyticsFilter = scopeFilter({ from, to }, ctx.principal);
  const dims: Dimension[] = uniqueDimensions(['MODEL', 'TEAM', 'FEATURE']);
  const key = 'key { model teamId feature }';
  const cases: Array<{ name: string; source: string; gql: string; vars?: Record<string, unknown>; direct: () => Promise<unknown> }> = [
    { name: 'usage', source: usageQuery(ctx, filter, dims).source, gql: `usage(filter: $f, groupBy: $g) { ${key} requests errors promptTokens completionTokens costUsd unpricedRequests }`, direct: () => runQuery(ctx, usageQuery(ctx, filter, dims).query) },
    { name: 'latency', source: 'rollup', gql: `latency(filter: $f, groupBy: $g) { ${key} requests p50Ms p90Ms p95Ms p99Ms ttftP50Ms ttftP95Ms ttftP99Ms overheadP50Ms overheadP99Ms }`, direct: () => runQuery(ctx, latencyRollupQuery(ctx, filter, dims)) },
    { name: 'cacheStats', source: cacheStatsQuery(ctx, filter, dims).source, gql: `cacheStats(filter: $f, groupBy: $g) { ${key} requests hits exactHits semanticHits hitRate savedCostUsd }`, direct: () => runQuery(ctx, cacheStatsQuery(ctx, filter, dims).query) },
    { name: 'timeSeries DAY', source: timeSeriesQuery(ctx, filter, 'DAY', dims).source, gql: `timeSeries(filter: $f, interval: DAY, groupBy: $g) { start ${key} requests errors costUsd }`, direct: () => runQuery(ctx, timeSeriesQuery(ctx, filter, 'DAY', dims).query) },
    { name: 'costPerTask', source: 'raw', gql: `costPerTask(filter: $f, groupBy: $g) { ${key} tasks succeededTasks failedTasks requests costUsd costPerTaskUsd costPerSucceededTaskUsd }`, direct: () => runQuery(ctx, costPerTaskQuery(ctx, filter, dims) as SqlFragment) },
  ];
  // The latency row must have come from the rollup alone for the comparison to be fair.
  const probe = await latency(ctx, filter, dims);
  const allTdigest = probe.every((r) => r.method === 'tdigest');

  const pct = (xs: number[], q: number) => {
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
  };
  const results: Array<Record<string, unknown>> = [];
  for (const c of cases) {
    const body = JSON.stringify({
      query: `query($f: AnalyticsFilter!, $g: [Dimension!]) { ${c.gql} }`,
      variables: { f: { from: from.toISOString(), to: to.toISOString() }, g: dims },
    });
    const viaGraphQL = async () => {
      const res = await graphql.yoga.fetch('http://bench/graphql', { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${ADMIN}` }, body });
      const json = (await res.json()) as { errors?: unknown };
      if (json.errors) throw new Error(JSON.stringify(json.errors));
    };
    // warm-up
    await c.direct();
    await viaGraphQL();
    const g: number[] = [];
    const d: number[] = [];
    for (let i = 0; i < ITER; i++) {
      // alternate so caches and background merges affect both equally
      t = performance.now(); await c.direct(); d.push(performance.now() - t);
      t = performance.now(); await viaGraphQL(); g.push(performance.now() - t);
    }
    const row = {
      query: c.name, source: c.source,
      graphqlP50Ms: +pct(g, 0.5).toFixed(1), graphqlP95Ms: +pct(g, 0.95).toFixed(1),
      directP50Ms: +pct(d, 0.5).toFixed(1), directP95Ms: +pct(d, 0.95).toFixed(1),
      ratioP50: +(pct(g, 0.5) / pct(d, 0.5)).toFixed(3), ratioP95: +(pct(g, 0.95) / pct(d, 0.95)).toFixed(3),
    };
    results.push(row);
    console.log(JSON.stringify(row));
  }
  console.table(results);
  const out = { rows: ROWS, insertSeconds: +(insertMs / 1000).toFixed(1), iterations: ITER, groupBy: dims, latencyAllTdigest: allTdigest, at: new Date().toISOString(), results };
  const resultsDir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results');
  await mkdir(resultsDir, { recursive: true });
  await writeFile(path.join(resultsDir, 'analytics.json'), JSON.stringify(out, null, 2) + '\n');
  console.log(`wrote ${path.join(resultsDir, 'analytics.json')}`);
} finally {
  await ch.close();
  await rm(dataDir, { recursive: true, force: true });
}
