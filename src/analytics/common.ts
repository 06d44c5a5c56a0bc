// Shared pieces of the analytics queries: filter, team scoping, dimensions (a fixed
// whitelist of columns) and the choice between the hourly rollup and raw receipts. The query
// runner with its bounds is run.ts.
import type { ClickHouseClient } from '@clickhouse/client';
// createGraphQLError (not `new GraphQLError`): it builds the error with the same `graphql`
// module instance as yoga, so yoga's `instanceof` check recognizes it and does not mask it
// even where two copies of `graphql` are loaded (ESM/CJS, e.g. under vitest).
import { createGraphQLError } from 'graphql-yoga';
import { type SqlFragment, sql, trusted } from './sql.js';

export const DIMENSIONS = [
  'MODEL',
  'PROVIDER',
  'ROUTE',
  'TEAM',
  'FEATURE',
  'API_KEY',
  'END_USER',
  'STATUS',
  'CACHE_STATUS',
  'TASK_TYPE',
  'RULE',
  'EXPERIMENT',
  'VARIANT',
] as const;
export type Dimension = (typeof DIMENSIONS)[number];

export const RECEIPT_STATUSES = ['OK', 'ERROR', 'PARTIAL', 'REJECTED', 'CANCELLED'] as const;
export type ReceiptStatusEnum = (typeof RECEIPT_STATUSES)[number];

/**
 * Dimension → column (the same name in `receipts` and `receipts_hourly`, except the
 * RAW_ONLY_DIMENSIONS, which only `receipts` has).
 */
export const DIMENSION_COLUMN: Readonly<Record<Dimension, string>> = {
  MODEL: 'model',
  PROVIDER: 'provider',
  ROUTE: 'route',
  TEAM: 'team_id',
  FEATURE: 'feature',
  API_KEY: 'api_key_id',
  END_USER: 'end_user',
  STATUS: 'status',
  CACHE_STATUS: 'cache_status',
  TASK_TYPE: 'task_type',
  RULE: 'rule',
  EXPERIMENT: 'experiment',
  VARIANT: 'variant',
};

/**
 * Dimensions only raw receipts have. END_USER by design (see 002_rollups.sql); the routing
 * dimensions (receipt version 2, 005_receipt_v2.sql) because the rollups predate them and
 * adding them would multiply every rollup row by rule × experiment × variant × task type
 * for the questions that never ask about routing. A question that groups or filters by one
 * of them reads `receipts`, where these columns are LowCardinality and cheap to scan.
 */
export const RAW_ONLY_DIMENSIONS: readonly Dimension[] = ['END_USER', 'TASK_TYPE', 'RULE', 'EXPERIMENT', 'VARIANT'];

/** Dimension → output alias of its column. */
export const DIMENSION_ALIAS: Readonly<Record<Dimension, string>> = {
  MODEL: 'k_model',
  PROVIDER: 'k_provider',
  ROUTE: 'k_route',
  TEAM: 'k_team_id',
  FEATURE: 'k_feature',
  API_KEY: 'k_api_key_id',
  END_USER: 'k_end_user',
  STATUS: 'k_status',
  CACHE_STATUS: 'k_cache_status',
  TASK_TYPE: 'k_task_type',
  RULE: 'k_rule',
  EXPERIMENT: 'k_experiment',
  VARIANT: 'k_variant',
};

export interface GroupKey {
  model?: string | null;
  provider?: string | null;
  route?: string | null;
  teamId?: string | null;
  feature?: string | null;
  apiKeyId?: string | null;
  endUser?: string | null;
  status?: string | null;
  cacheStatus?: string | null;
  taskType?: string | null;
  rule?: string | null;
  experiment?: string | null;
  /** The bare variant name (as in the receipt). */
  variant?: string | null;
}

export interface AnalyticsFilter {
  from: Date;
  to: Date;
  teamIds?: readonly string[] | null;
  features?: readonly string[] | null;
  models?: readonly string[] | null;
  providers?: readonly string[] | null;
  routes?: readonly string[] | null;
  apiKeyIds?: readonly string[] | null;
  endUsers?: readonly string[] | null;
  statuses?: readonly ReceiptStatusEnum[] | null;
  taskTypes?: readonly string[] | null;
  rules?: readonly string[] | null;
  experiments?: readonly string[] | null;
  /** Bare variant names. */
  variants?: readonly string[] | null;
}

/** The filter's lists on RAW_ONLY_DIMENSIONS, by dimension. */
function rawOnlyLists(filter: AnalyticsFilter): Array<[Dimension, readonly string[] | null | undefined]> {
  return [
    ['END_USER', filter.endUsers],
    ['TASK_TYPE', filter.taskTypes],
    ['RULE', filter.rules],
    ['EXPERIMENT', filter.experiments],
    ['VARIANT', filter.variants],
  ];
}

/** True when the filter or the grouping needs a column only raw receipts have. */
export function needsRawReceipts(filter: AnalyticsFilter, dims: readonly Dimension[]): boolean {
  return rawOnlyLists(filter).some(([, values]) => values != null) || dims.some((d) => RAW_ONLY_DIMENSIONS.includes(d));
}

export interface Principal {
  role: 'ADMIN' | 'ANALYST';
  teamId: string | null;
}

export interface AnalyticsContext {
  clickhouse: ClickHouseClient;
  receiptsTable: string;
  analyticsTimeoutMs: number;
  /** Most rows one analytics query may bring into the process. */
  analyticsMaxRows: number;
  /** ClickHouse max_memory_usage of one query (0: the server's own limits). */
  analyticsMaxMemoryBytes: number;
  /**
   * The embedded engine: it hands over a result whole, so the row bound is also given to it
   * (max_result_rows, which chDB applies to the final result only). Not to a server, where the
   * answer streams and older versions (and a cluster's shards) apply it to subqueries too.
   */
  analyticsEmbedded?: boolean;
  principal: Principal | null;
}

export function badInput(message: string): Error {
  return createGraphQLError(message, { extensions: { code: 'BAD_USER_INPUT' } });
}

/**
 * The filter a principal may run: a team-bound token sees only its team, whatever teamIds
 * says (asking for other teams yields the intersection, i.e. possibly nothing).
 */
export function scopeFilter(filter: AnalyticsFilter, principal: Principal | null): AnalyticsFilter {
  if (!(filter.from instanceof Date) || !(filter.to instanceof Date) || Number.isNaN(filter.from.getTime()) || Number.isNaN(filter.to.getTime())) {
    throw badInput('filter.from and filter.to must be valid DateTimes.');
  }
  if (filter.to.getTime() < filter.from.getTime()) throw badInput('filter.to must not be before filter.from.');
  const range = { from: clampToReceiptTime(filter.from), to: clampToReceiptTime(filter.to) };
  const teamId = principal?.teamId ?? null;
  if (teamId === null) return { ...filter, ...range };
  const teamIds = filter.teamIds == null ? [teamId] : filter.teamIds.includes(teamId) ? [teamId] : [];
  return { ...filter, ...range, teamIds };
}

// The range ClickHouse documents for DateTime64 (1900 to 2299; the last hour left out so that
// both ends stay whole hours for the rollups). No receipt lies outside it, so clamping a
// range like 0001..9999 ("everything") changes no answer, and no server version is ever
// asked to parse a time it may reject or wrap.
export const EARLIEST_RECEIPT_MS = Date.UTC(1900, 0, 1);
export const LATEST_RECEIPT_MS = Date.UTC(2299, 11, 31, 23);

function clampToReceiptTime(d: Date): Date {
  const ms = d.getTime();
  return ms < EARLIEST_RECEIPT_MS ? new Date(EARLIEST_RECEIPT_MS) : ms > LATEST_RECEIPT_MS ? new Date(LATEST_RECEIPT_MS) : d;
}

export function uniqueDimensions(groupBy: readonly Dimension[] | null | undefined): Dimension[] {
  const out: Dimension[] = [];
  for (const d of groupBy ?? []) {
    if (!DIMENSIONS.includes(d)) throw badInput(`unknown dimension ${String(d)}`);
    if (!out.includes(d)) out.push(d);
  }
  return out;
}

const HOUR_MS = 3_600_000;

/**
 * receipts_hourly answers a question exactly when the range is whole hours and neither the
 * filter nor the grouping needs a column it lacks (end_user, the routing dimensions).
 */
export function rollupAnswers(filter: AnalyticsFilter, dims: readonly Dimension[]): boolean {
  return filter.from.getTime() % HOUR_MS === 0 && filter.to.getTime() % HOUR_MS === 0 && !needsRawReceipts(filter, dims);
}

export type Source = 'raw' | 'rollup';
/** Every table the analytics read: the two general sources and latency's daily rollup. */
export type Table = Source | 'latencyDaily';

const TIME_COLUMN: Readonly<Record<Table, string>> = { raw: 'started_at', rollup: 'hour', latencyDaily: 'day' };

/** WHERE conditions for a filter (time range [from, to)), on any of the tables. */
export function filterConditions(filter: AnalyticsFilter, source: Table): SqlFragment {
  const time = trusted(TIME_COLUMN, source);
  const parts: SqlFragment[] = [sql`${time} >= ${filter.from}`, sql`${time} < ${filter.to}`];
  const inList = (dim: Dimension, values: readonly string[] | null | undefined) => {
    if (values == null) return;
    parts.push(sql`${trusted(DIMENSION_COLUMN, dim)} IN ${[...values]}`);
  };
  inList('TEAM', filter.teamIds);
  inList('FEATURE', filter.features);
  inList('MODEL', filter.models);
  inList('PROVIDER', filter.providers);
  inList('ROUTE', filter.routes);
  inList('API_KEY', filter.apiKeyIds);
  for (const [dim, values] of rawOnlyLists(filter)) {
    if (values == null) continue;
    if (source !== 'raw') throw new Error(`${DIMENSION_COLUMN[dim]} is not a rollup column`);
    inList(dim, values);
  }
  if (filter.statuses != null)
    inList(
      'STATUS',
      filter.statuses.map((s) => s.toLowerCase()),
    );
  return sql.join(parts, ' AND ');
}

/** `col AS k_col, …` for SELECT, with a leading comma when not empty (or nothing). */
export function dimensionSelect(dims: readonly Dimension[]): SqlFragment {
  return sql.join(
    dims.map((d) => sql`, ${trusted(DIMENSION_COLUMN, d)} AS ${trusted(DIMENSION_ALIAS, d)}`),
    ' ',
  );
}

/** `, k_a, k_b` (the aliases dimensionSelect gave, for an outer SELECT), or nothing. */
export function dimensionAliases(dims: readonly Dimension[]): SqlFragment {
  return sql.join(
    dims.map((d) => sql`, ${trusted(DIMENSION_ALIAS, d)}`),
    ' ',
  );
}

/** `GROUP BY k_a, k_b` or nothing. */
export function groupByClause(dims: readonly Dimension[], extra: SqlFragment[] = []): SqlFragment {
  const cols = [...extra, ...dims.map((d) => trusted(DIMENSION_ALIAS, d))];
  return cols.length === 0 ? sql.empty() : sql`GROUP BY ${sql.join(cols)}`;
}

export function orderByClause(dims: readonly Dimension[], extra: SqlFragment[] = []): SqlFragment {
  const cols = [...extra, ...dims.map((d) => trusted(DIMENSION_ALIAS, d))];
  return cols.length === 0 ? sql.empty() : sql`ORDER BY ${sql.join(cols)}`;
}

const keyValue = (v: unknown): string | null => (v === null || v === undefined || v === '' ? null : String(v));

/** Per dimension, given its column alias: a setter with a named store of its GroupKey field. */
const KEY_SETTER: Readonly<Record<Dimension, (alias: string) => (key: GroupKey, row: Record<string, unknown>) => void>> = {
  MODEL: (a) => (k, r) => void (k.model = keyValue(r[a])),
  PROVIDER: (a) => (k, r) => void (k.provider = keyValue(r[a])),
  ROUTE: (a) => (k, r) => void (k.route = keyValue(r[a])),
  TEAM: (a) => (k, r) => void (k.teamId = keyValue(r[a])),
  FEATURE: (a) => (k, r) => void (k.feature = keyValue(r[a])),
  API_KEY: (a) => (k, r) => void (k.apiKeyId = keyValue(r[a])),
  END_USER: (a) => (k, r) => void (k.endUser = keyValue(r[a])),
  STATUS: (a) => (k, r) => void (k.status = keyValue(r[a])),
  CACHE_STATUS: (a) => (k, r) => void (k.cacheStatus = keyValue(r[a])),
  TASK_TYPE: (a) => (k, r) => void (k.taskType = keyValue(r[a])),
  RULE: (a) => (k, r) => void (k.rule = keyValue(r[a])),
  EXPERIMENT: (a) => (k, r) => void (k.experiment = keyValue(r[a])),
  VARIANT: (a) => (k, r) => void (k.variant = keyValue(r[a])),
};

export type GroupKeyReader = (row: Record<string, unknown>) => GroupKey;

/**
 * Reads the GroupKey of a result row: only grouped dimensions are set; '' (absent) becomes
 * null. Built once per query. Each dimension writes its field by name: one computed
 * `key[field]` store for every dimension of every row was most of the time of mapping a
 * 2,100-row timeSeries (0.24 → 0.08 ms).
 */
export function groupKeyReader(dims: readonly Dimension[]): GroupKeyReader {
  const setters = dims.map((d) => KEY_SETTER[d](DIMENSION_ALIAS[d]));
  return (row) => {
    const key: GroupKey = {};
    for (const set of setters) set(key, row);
    return key;
  };
}

export function groupKeyString(row: Record<string, unknown>, dims: readonly Dimension[]): string {
  return JSON.stringify(dims.map((d) => String(row[DIMENSION_ALIAS[d]] ?? '')));
}

/** True when the scoped filter can match nothing (an empty IN list). */
export function matchesNothing(filter: AnalyticsFilter): boolean {
  return [
    filter.teamIds,
    filter.features,
    filter.models,
    filter.providers,
    filter.routes,
    filter.apiKeyIds,
    filter.statuses,
    ...rawOnlyLists(filter).map(([, values]) => values),
  ].some((l) => l != null && l.length === 0);
}

export const ROLLUP_TABLE = 'receipts_hourly';
/** Daily DDSketch latency states (clickhouse/migrations/003_latency_daily.sql). */
export const LATENCY_DAILY_TABLE = 'latency_daily';

/** `FROM <table>`: the receipts table from configuration, or a rollup. */
export function fromTable(ctx: AnalyticsContext, source: Table): SqlFragment {
  const table = source === 'rollup' ? ROLLUP_TABLE : source === 'latencyDaily' ? LATENCY_DAILY_TABLE : ctx.receiptsTable;
  return sql`${sql.typed(table, 'Identifier')}`;
}

/**
 * The shape most questions share: measures (aliased m_*) per group, over the filtered source.
 * Without dimensions the one total row is dropped when nothing matched.
 */
export function groupedSelect(
  ctx: AnalyticsContext,
  source: Source,
  measures: SqlFragment,
  filter: AnalyticsFilter,
  dims: readonly Dimension[],
  restrict: SqlFragment = sql.empty(),
): SqlFragment {
  return sql`SELECT ${measures}${dimensionSelect(dims)}
    FROM ${fromTable(ctx, source)}
    WHERE ${filterConditions(filter, source)}${restrict}
    ${groupByClause(dims)}
    ${dims.length === 0 ? sql`HAVING m_requests > 0` : sql.empty()}
    ${orderByClause(dims)}`;
}
