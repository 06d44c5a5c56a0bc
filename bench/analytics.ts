// Analytics benchmark: N synthetic receipts (default 10M; `--rows N` or ANALYTICS_BENCH_ROWS)
// in a temp embedded ClickHouse with the real migrations, then every analytics query over
// 30 days grouped by MODEL × TEAM × FEATURE, through GraphQL (yoga.fetch, admin token) and
// as the same SQL sent directly; then the routing questions, which read raw receipts (usage by
// team × variant, experimentResults over experiment `ab`). Prints p50/p95 and the GraphQL/direct ratio; writes
// bench/results/analytics.json. Targets: p95 ≤ 150 ms for rollup-backed queries at 10M,
// GraphQL ≤ 1.15× direct SQL.
// `npm run bench:analytics` sets NODE_ENV=production, as a production deployment does (README):
// GraphQL is built with `production: true` below, and graphql-js's development-mode type checks
// (instanceOf on every completed value, ~4 ms of a 2,100-row answer) would otherwise be timed
// although no production gateway runs them. The JSON records the NODE_ENV it ran with.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cacheStatsQuery } from '../src/analytics/cacheStats.js';
import { DIMENSION_ALIAS, DIMENSION_COLUMN } from '../src/analytics/common.js';
import { costPerTaskQuery } from '../src/analytics/costPerTask.js';
import {
  type AnalyticsContext,
  type AnalyticsFilter,
  cacheStats,
  costPerTask,
  type Dimension,
  experimentResults,
  latency,
  runQuery,
  scopeFilter,
  timeSeries,
  uniqueDimensions,
  usage,
} from '../src/analytics/index.js';
import { EXACT_BELOW, latencyExactQuery, latencySketchQuery } from '../src/analytics/latency.js';
import type { SqlFragment } from '../src/analytics/sql.js';
import { sql, trusted } from '../src/analytics/sql.js';
import { insertSyntheticReceipts } from '../src/analytics/synthetic.js';
import { timeSeriesQuery } from '../src/analytics/timeSeries.js';
import { usageQuery } from '../src/analytics/usage.js';
import { TokenVerifier } from '../src/gateway/tokens.js';
import { createGraphQL } from '../src/graphql/yoga.js';
import { CidrList } from '../src/net/ip.js';
import { AdminStore } from '../src/store/admin-store.js';
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
  await insertSyntheticReceipts(ch.client, { rows: ROWS, from, spanMs: to.getTime() - from.getTime(), teams: 10, models: 5, features: 8, receiptVersion: 2 });
  const insertMs = performance.now() - t;
  console.log(`inserted ${ROWS.toLocaleString()} receipts in ${(insertMs / 1000).toFixed(1)} s`);
  // Settle the rollups the way a long-running deployment would: ClickHouse merges parts in
  // the background, so an AggregatingMergeTree that has been up for a while holds about one
  // row per key. A freshly bulk-loaded one still holds one row per key per inserted block
  // (and per unmerged part); OPTIMIZE … FINAL does those merges up front. Documented step,
  // reported in the JSON as `settle`.
  const settle: Record<string, unknown> = { step: 'OPTIMIZE TABLE … FINAL on the rollups after the load (stands in for background merges)' };
  for (const table of ['receipts_hourly', 'latency_daily', 'task_costs']) {
    t = performance.now();
    await ch.client.command({ query: `OPTIMIZE TABLE ${table} FINAL`, clickhouse_settings: { max_execution_time: 0 } as never });
    settle[`${table}Seconds`] = +((performance.now() - t) / 1000).toFixed(1);
  }
  const scalar = async (query: string) => {
    const rs = await ch.client.query({ query, format: 'JSONEachRow', clickhouse_settings: { output_format_json_quote_64bit_integers: 0 } as never });
    return (await rs.json<Record<string, unknown>>())[0] ?? {};
  };
  const tables: Record<string, unknown> = {};
  for (const table of ['receipts', 'receipts_hourly', 'latency_daily', 'task_costs']) {
    tables[table] = await scalar(
      `SELECT sum(rows) AS rows, count() AS parts, sum(bytes_on_disk) AS bytes FROM system.parts WHERE active AND database = currentDatabase() AND table = '${table}'`,
    );
  }
  const shape = await scalar(`SELECT uniqExact(team_id) AS teams, uniqExact(api_key_id) AS apiKeys, uniqExact(feature) AS features,
      uniqExact(model) AS models, uniqExact(provider) AS providers, uniqExact(end_user) AS endUsers, uniqExact(task_id) - 1 AS tasks,
      round(countIf(status != 'ok') / count(), 4) AS errorRate, round(countIf(cache_status IN ('exact', 'semantic')) / count(), 4) AS cacheHitRate,
      round(countIf(cache_status = 'bypass') / count(), 4) AS cacheBypassRate, min(started_at) AS first, max(started_at) AS last FROM receipts`);
  console.log('settle', JSON.stringify(settle));
  console.log('tables', JSON.stringify(tables));
  console.log('data shape', JSON.stringify(shape));

  const ctx: AnalyticsContext = {
    clickhouse: ch.client,
    receiptsTable: 'receipts',
    analyticsTimeoutMs: 60_000,
    analyticsMaxRows: 10_000_000,
    analyticsMaxMemoryBytes: 0,
    principal: { role: 'ADMIN', teamId: null },
  };
  const graphql = createGraphQL(
    {
      clickhouse: ch.client,
      receiptsTable: 'receipts',
      analyticsTimeoutMs: 60_000,
      analyticsMaxRows: 10_000_000,
      analyticsMaxMemoryBytes: 0,
      tokens: new TokenVerifier(
        ADMIN,
        { findAccessTokenBySecretHash: async () => null, teamIdByName: async () => null },
        { cacheMs: 0, trustedProxies: CidrList.parse([]), onError: () => undefined },
      ),
      // Never reached by analytics queries; each request's context names its actor on it.
      admin: new AdminStore(undefined as never, undefined as never),
      jwks: () => ({ keys: [] }),
      findReceipt: async () => null,
    } as never,
    { production: true },
  );

  const filter: AnalyticsFilter = scopeFilter({ from, to }, ctx.principal);
  const dims: Dimension[] = uniqueDimensions(['MODEL', 'TEAM', 'FEATURE']);
  // The latency resolver sends the sketch query (latency_daily + raw edges) and, when some groups have fewer than
  // EXACT_BELOW requests, a second exact query on raw receipts for those groups. The direct
  // side sends the same statements (the exact one with the same restriction), so the ratio
  // compares like with like.
  const latencyDirect = async () => {
    const approx = await runQuery(ctx, latencySketchQuery(ctx, filter, dims));
    const small = approx.filter((r) => Number(r.m_requests) < EXACT_BELOW);
    if (small.length === 0) return approx;
    const restrict = sql.join(
      dims.map((d) => sql` AND ${trusted(DIMENSION_COLUMN, d)} IN ${[...new Set(small.map((r) => String(r[DIMENSION_ALIAS[d]] ?? '')))]}`),
      ' ',
    );
    return runQuery(ctx, latencyExactQuery(ctx, filter, dims, restrict));
  };
  const key = 'key { model teamId feature }';
  const unaligned = { from: new Date(from.getTime() + 13 * 3_600_000 + 17 * 60_000 + 250), to: new Date(to.getTime() - 5 * 3_600_000 - 41_000) };
  const unalignedFilter = scopeFilter(unaligned, ctx.principal);
  const cases: Array<{
    name: string;
    source: string;
    gql: string;
    window?: { from: Date; to: Date };
    vars?: Record<string, unknown>;
    direct: () => Promise<unknown>;
    library: () => Promise<unknown>;
    sqlOf: () => SqlFragment;
  }> = [
    {
      name: 'usage',
      source: usageQuery(ctx, filter, dims).source,
      gql: `usage(filter: $f, groupBy: $g) { ${key} requests errors promptTokens completionTokens costUsd unpricedRequests }`,
      direct: () => runQuery(ctx, usageQuery(ctx, filter, dims).query),
      sqlOf: () => usageQuery(ctx, filter, dims).query,
      library: () => usage(ctx, filter, dims),
    },
    {
      name: 'latency',
      source: 'rollup' as string,
      gql: `latency(filter: $f, groupBy: $g) { ${key} requests p50Ms p90Ms p95Ms p99Ms ttftP50Ms ttftP95Ms ttftP99Ms overheadP50Ms overheadP99Ms }`,
      direct: () => latencyDirect(),
      sqlOf: () => latencySketchQuery(ctx, filter, dims),
      library: () => latency(ctx, filter, dims),
    },
    // "The last 30 days" as a dashboard asks it: neither end on a day (or hour) boundary, so
    // latency_daily answers the 29 whole days and raw receipts the two partial ones.
    {
      name: 'latency unaligned',
      source: 'rollup+raw edges',
      window: unaligned,
      gql: `latency(filter: $f, groupBy: $g) { ${key} requests p50Ms p90Ms p95Ms p99Ms ttftP50Ms ttftP95Ms ttftP99Ms overheadP50Ms overheadP99Ms }`,
      direct: () => runQuery(ctx, latencySketchQuery(ctx, unalignedFilter, dims)),
      sqlOf: () => latencySketchQuery(ctx, unalignedFilter, dims),
      library: () => latency(ctx, unalignedFilter, dims),
    },
    {
      name: 'cacheStats',
      source: cacheStatsQuery(ctx, filter, dims).source,
      gql: `cacheStats(filter: $f, groupBy: $g) { ${key} requests hits exactHits semanticHits hitRate savedCostUsd }`,
      direct: () => runQuery(ctx, cacheStatsQuery(ctx, filter, dims).query),
      sqlOf: () => cacheStatsQuery(ctx, filter, dims).query,
      library: () => cacheStats(ctx, filter, dims),
    },
    {
      name: 'timeSeries DAY',
      source: timeSeriesQuery(ctx, filter, 'DAY', dims).source,
      gql: `timeSeries(filter: $f, interval: DAY, groupBy: $g) { start ${key} requests errors costUsd }`,
      direct: () => runQuery(ctx, timeSeriesQuery(ctx, filter, 'DAY', dims).query),
      sqlOf: () => timeSeriesQuery(ctx, filter, 'DAY', dims).query,
      library: () => timeSeries(ctx, filter, 'DAY', dims),
    },
    {
      name: 'costPerTask',
      source: 'raw',
      gql: `costPerTask(filter: $f, groupBy: $g) { ${key} tasks succeededTasks failedTasks requests costUsd costPerTaskUsd costPerSucceededTaskUsd }`,
      direct: () => runQuery(ctx, costPerTaskQuery(ctx, filter, dims) as SqlFragment),
      sqlOf: () => costPerTaskQuery(ctx, filter, dims) as SqlFragment,
      library: () => costPerTask(ctx, filter, dims),
    },
  ];
  // Routing questions (receipt version 2 columns, raw receipts only; see common.ts).
  const byVariant = uniqueDimensions(['TEAM', 'VARIANT']);
  const experimentFilter: AnalyticsFilter = { ...filter, experiments: ['ab'] };
  const VARIANT: Dimension[] = ['VARIANT'];
  cases.push(
    {
      name: 'usage by TEAM×VARIANT',
      source: usageQuery(ctx, filter, byVariant).source,
      vars: { g: byVariant },
      gql: `usage(filter: $f, groupBy: $g) { key { teamId variant } requests errors promptTokens completionTokens costUsd unpricedRequests }`,
      direct: () => runQuery(ctx, usageQuery(ctx, filter, byVariant).query),
      sqlOf: () => usageQuery(ctx, filter, byVariant).query,
      library: () => usage(ctx, filter, byVariant),
    },
    // Three statements (usage, exact latency, costPerTask by VARIANT), sent in parallel on both sides; server stats are usage's.
    {
      name: 'experimentResults',
      source: 'raw ×3',
      gql: `experimentResults(name: "ab", filter: $f) { variant requests errorRate p50Ms p95Ms costUsd tasks succeededTasks successRate successRateLow successRateHigh costPerSucceededTaskUsd }`,
      direct: () =>
        Promise.all([
          runQuery(ctx, usageQuery(ctx, experimentFilter, VARIANT).query),
          runQuery(ctx, latencyExactQuery(ctx, experimentFilter, VARIANT)),
          runQuery(ctx, costPerTaskQuery(ctx, experimentFilter, VARIANT)),
        ]),
      sqlOf: () => usageQuery(ctx, experimentFilter, VARIANT).query,
      library: () => experimentResults(ctx, 'ab', filter),
    },
  );
  // The latency row must have come from the rollup alone for the comparison to be fair.
  const probe = await latency(ctx, filter, dims);
  const allSketch = probe.every((r) => r.method === 'sketch');
  const exactGroups = probe.filter((r) => r.method === 'exact').length;
  // The 30-day window is hour-aligned, so every rollup-capable query must read receipts_hourly.
  if (exactGroups > 0) cases.find((c) => c.name === 'latency')!.source = 'rollup+exact';
  const hourAligned = from.getTime() % 3_600_000 === 0 && to.getTime() % 3_600_000 === 0;
  console.log(`window ${from.toISOString()} .. ${to.toISOString()} hour-aligned=${hourAligned}; latency groups ${probe.length}, exact (raw) ${exactGroups}`);

  // Server-side view of one direct run per query: elapsed inside the engine, rows/bytes read
  // (rows read ≈ receipts_hourly rows means the rollup answered), and the tables read.
  const serverStats = async (q: SqlFragment) => {
    const { query, query_params } = q.toQuery();
    const rs = await ch.client.query({ query, query_params, format: 'JSON', clickhouse_settings: { output_format_json_quote_64bit_integers: 0 } as never });
    const j = (await rs.json()) as unknown as { rows: number; statistics?: { elapsed: number; rows_read: number; bytes_read: number } };
    const ex = await ch.client.query({ query: `EXPLAIN indexes = 1 ${query}`, query_params, format: 'TabSeparatedRaw' });
    const plan = await ex.text();
    const readsFrom = [...new Set([...plan.matchAll(/ReadFromMergeTree \((?:[\w.]*\.)?(\w+)\)/g)].map((m) => m[1]))];
    const granules = [...plan.matchAll(/Granules: (\d+\/\d+)/g)].map((m) => m[1]);
    return {
      resultRows: j.rows,
      serverElapsedMs: j.statistics ? +(j.statistics.elapsed * 1000).toFixed(1) : null,
      rowsRead: j.statistics?.rows_read ?? null,
      bytesRead: j.statistics?.bytes_read ?? null,
      readsFrom,
      granules,
    };
  };

  const pct = (xs: number[], q: number) => {
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
  };
  /**
   * What one answer costs as JSON before GraphQL does anything, p50 of 21 each: V8's
   * JSON.stringify; the first read of the text it returns; JSON.parse. The first read is part of
   * the floor because JSON.stringify returns a rope (a tree of parts) and any server that counts
   * or sends the bytes (yoga's Response takes Buffer.byteLength for content-length) has V8 copy
   * it into one flat string first. A string past ~128 KB gets fresh pages in V8's large-object
   * space, each a minor page fault the first time it is touched (~11 µs apiece on these VMs), so
   * for timeSeries' ~315 KB answer this read costs about as much as the stringify.
   */
  const jsonCost = (text: string) => {
    const value: unknown = JSON.parse(text);
    const stringify: number[] = [];
    const firstRead: number[] = [];
    const parse: number[] = [];
    for (let i = 0; i < 21; i++) {
      let t0 = performance.now();
      const json = JSON.stringify(value);
      const t1 = performance.now();
      Buffer.byteLength(json);
      const t2 = performance.now();
      stringify.push(t1 - t0);
      firstRead.push(t2 - t1);
      t0 = performance.now();
      JSON.parse(text);
      parse.push(performance.now() - t0);
    }
    const ms = { stringify: pct(stringify, 0.5), firstRead: pct(firstRead, 0.5), parse: pct(parse, 0.5) };
    return { ...ms, total: ms.stringify + ms.firstRead + ms.parse };
  };
  const results: Array<Record<string, unknown>> = [];
  for (const c of cases) {
    const usesGroupBy = c.gql.includes('$g');
    const body = JSON.stringify({
      query: `query($f: AnalyticsFilter!${usesGroupBy ? ', $g: [Dimension!]' : ''}) { ${c.gql} }`,
      variables: {
        f: { from: (c.window ?? { from }).from.toISOString(), to: (c.window ?? { to }).to.toISOString() },
        ...(usesGroupBy ? { g: dims } : {}),
        ...c.vars,
      },
    });
    /** The last GraphQL answer, as sent (for its size and its JSON cost). */
    let answer = '';
    const viaGraphQL = async () => {
      const res = await graphql.yoga.fetch('http://bench/graphql', {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${ADMIN}` },
        body,
      });
      answer = await res.text();
      const json = JSON.parse(answer) as { errors?: unknown };
      if (json.errors) throw new Error(JSON.stringify(json.errors));
    };
    // warm-up
    await c.direct();
    await viaGraphQL();
    await c.library();
    const g: number[] = [];
    const d: number[] = [];
    const l: number[] = [];
    for (let i = 0; i < ITER; i++) {
      // interleave so caches and background merges affect all three equally
      t = performance.now();
      await c.direct();
      d.push(performance.now() - t);
      t = performance.now();
      await viaGraphQL();
      g.push(performance.now() - t);
      t = performance.now();
      await c.library();
      l.push(performance.now() - t);
    }
    const json = jsonCost(answer);
    const srv = await serverStats(c.sqlOf());
    console.log(
      `  ${c.name}: server ${srv.serverElapsedMs} ms, read ${srv.rowsRead} rows from ${srv.readsFrom.join('+')}, granules ${srv.granules.join(' ')}, ${srv.resultRows} result rows`,
    );
    const row = {
      query: c.name,
      source: c.source,
      graphqlP50Ms: +pct(g, 0.5).toFixed(1),
      graphqlP95Ms: +pct(g, 0.95).toFixed(1),
      directP50Ms: +pct(d, 0.5).toFixed(1),
      directP95Ms: +pct(d, 0.95).toFixed(1),
      ratioP50: +(pct(g, 0.5) / pct(d, 0.5)).toFixed(3),
      ratioP95: +(pct(g, 0.95) / pct(d, 0.95)).toFixed(3),
      // What an answer of this size costs as JSON over HTTP before GraphQL does anything (the
      // server's JSON.stringify and first read of its text, the client's JSON.parse): the
      // ratio's floor on this Node and machine.
      answerKb: +(Buffer.byteLength(answer) / 1024).toFixed(1),
      jsonRoundTripMs: +json.total.toFixed(2),
      jsonMs: { stringify: +json.stringify.toFixed(2), firstRead: +json.firstRead.toFixed(2), parse: +json.parse.toFixed(2) },
      jsonFloorRatioP50: +((pct(d, 0.5) + json.total) / pct(d, 0.5)).toFixed(3),
      // the exported resolver function without GraphQL: SQL + row mapping
      libraryP50Ms: +pct(l, 0.5).toFixed(1),
      resultRows: srv.resultRows,
      serverMs: srv.serverElapsedMs,
      rowsRead: srv.rowsRead,
      readsFrom: srv.readsFrom.join('+'),
    };
    results.push(row);
    console.log(JSON.stringify(row));
  }
  console.table(results);
  const out = {
    rows: ROWS,
    insertSeconds: +(insertMs / 1000).toFixed(1),
    settle,
    tables,
    dataShape: shape,
    window: { from: from.toISOString(), to: to.toISOString(), hourAligned },
    iterations: ITER,
    groupBy: dims,
    latencyAllSketch: allSketch,
    latencyExactGroups: exactGroups,
    latencyGroups: probe.length,
    machine: { cpus: os.cpus().length, loadavg: os.loadavg().map((x) => +x.toFixed(2)) },
    nodeEnv: process.env.NODE_ENV ?? null,
    at: new Date().toISOString(),
    results,
  };
  const resultsDir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results');
  await mkdir(resultsDir, { recursive: true });
  await writeFile(path.join(resultsDir, 'analytics.json'), `${JSON.stringify(out, null, 2)}\n`);
  console.log(`wrote ${path.join(resultsDir, 'analytics.json')}`);
} finally {
  await ch.close();
  await rm(dataDir, { recursive: true, force: true });
}
