// latency: percentiles of total latency, time to first token and gateway overhead.
//
// Accuracy (DESIGN §8): exact below 10k requests in a group, within 2 % above.
//
// When the range holds at least one whole UTC day and neither the filter nor the grouping
// needs a raw-only column (end_user, the routing dimensions), one query merges DDSketch
// states (relative accuracy 1 %): the whole days from latency_daily (migration 003), the
// partial days at either end from raw receipts, sketched on the fly into states of the same
// type. That gives every group's count and its approximate percentiles; groups with fewer
// than 10k requests are then recomputed exactly (quantilesExact) from raw receipts,
// restricted to those groups' dimension values.
// Otherwise everything is computed exactly from raw receipts: for a range shorter than a
// day that is at most a day of receipts, which costs less than merging hourly states; for a
// raw-only column there is no sketch to merge, and exact is within any promised accuracy.
//
// receipts_hourly's TDigest states are not read here: a month of them merges about as
// slowly as a scan of the raw receipts (see 003_latency_daily.sql).
import {
  type AnalyticsContext,
  type AnalyticsFilter,
  DIMENSION_ALIAS,
  DIMENSION_COLUMN,
  type Dimension,
  dimensionAliases,
  dimensionSelect,
  filterConditions,
  fromTable,
  type GroupKey,
  type GroupKeyReader,
  groupByClause,
  groupedSelect,
  groupKeyReader,
  groupKeyString,
  matchesNothing,
  needsRawReceipts,
  orderByClause,
  scopeFilter,
  uniqueDimensions,
} from './common.js';
import { num, numOrNull, runQuery } from './run.js';
import { type SqlFragment, sql, trusted } from './sql.js';

/** Groups with fewer requests than this get exact percentiles. */
export const EXACT_BELOW = 10_000;

export interface LatencyRow {
  key: GroupKey;
  requests: number;
  p50Ms: number | null;
  p90Ms: number | null;
  p95Ms: number | null;
  p99Ms: number | null;
  ttftP50Ms: number | null;
  ttftP95Ms: number | null;
  ttftP99Ms: number | null;
  overheadP50Ms: number | null;
  overheadP99Ms: number | null;
  /** How the percentiles were computed: `exact`, or from DDSketch states (`sketch`, within 1 %). */
  method: 'exact' | 'sketch';
}

const LEVELS = sql`0.5, 0.9, 0.95, 0.99`;
/** quantilesDD parameters: relative accuracy, then LEVELS. Must match latency_daily's column types. */
const DD = sql`0.01, ${LEVELS}`;

const DAY_MS = 86_400_000;

/** The whole UTC days inside [from, to), or null when there is none. */
export function wholeDays(filter: AnalyticsFilter): { from: Date; to: Date } | null {
  const from = Math.ceil(filter.from.getTime() / DAY_MS) * DAY_MS;
  const to = Math.floor(filter.to.getTime() / DAY_MS) * DAY_MS;
  return from < to ? { from: new Date(from), to: new Date(to) } : null;
}

/**
 * True when latencySketchQuery can answer: whole days in the range, and no column that
 * latency_daily lacks (end_user, the routing dimensions) in the filter or the grouping.
 */
export function sketchAnswers(filter: AnalyticsFilter, dims: readonly Dimension[]): boolean {
  return wholeDays(filter) !== null && !needsRawReceipts(filter, dims);
}

/**
 * Per group: the request count and merged DDSketch percentiles. Whole days come from
 * latency_daily, the partial days at the ends from raw receipts (same state type), so the
 * union merges as one sketch per group.
 */
export function latencySketchQuery(ctx: AnalyticsContext, filter: AnalyticsFilter, dims: Dimension[]): SqlFragment {
  const days = wholeDays(filter);
  if (days === null) throw new Error('latencySketchQuery needs a range with a whole day');
  const keys = dimensionSelect(dims);
  const parts: SqlFragment[] = [
    sql`SELECT toUInt64(requests) AS n, latency_dd AS lat, ttft_dd AS ttft, overhead_dd AS ovh${keys}
      FROM ${fromTable(ctx, 'latencyDaily')}
      WHERE ${filterConditions({ ...filter, ...days }, 'latencyDaily')}`,
  ];
  for (const edge of [
    { from: filter.from, to: days.from },
    { from: days.to, to: filter.to },
  ]) {
    if (edge.from.getTime() >= edge.to.getTime()) continue;
    parts.push(sql`SELECT count() AS n, quantilesDDState(${DD})(latency_ms) AS lat,
        quantilesDDState(${DD})(ttft_ms) AS ttft, quantilesDDState(${DD})(overhead_ms) AS ovh${keys}
      FROM ${fromTable(ctx, 'raw')}
      WHERE ${filterConditions({ ...filter, ...edge }, 'raw')}
      ${groupByClause(dims)}`);
  }
  const outerKeys = dimensionAliases(dims);
  return sql`SELECT toUInt64(sum(n)) AS m_requests,
      quantilesDDMerge(${DD})(lat) AS m_lat,
      quantilesDDMerge(${DD})(ttft) AS m_ttft,
      quantilesDDMerge(${DD})(ovh) AS m_ovh${outerKeys}
    FROM (${sql.join(parts, ' UNION ALL ')})
    ${groupByClause(dims)}
    ${dims.length === 0 ? sql`HAVING m_requests > 0` : sql.empty()}
    ${orderByClause(dims)}`;
}

export function latencyExactQuery(ctx: AnalyticsContext, filter: AnalyticsFilter, dims: Dimension[], restrict?: SqlFragment): SqlFragment {
  const measures = sql`count() AS m_requests,
      quantilesExact(${LEVELS})(latency_ms) AS m_lat,
      countIf(ttft_ms IS NOT NULL) AS m_ttft_n,
      quantilesExact(${LEVELS})(ttft_ms) AS m_ttft,
      countIf(overhead_ms IS NOT NULL) AS m_ovh_n,
      quantilesExact(${LEVELS})(overhead_ms) AS m_ovh`;
  return groupedSelect(ctx, 'raw', measures, filter, dims, restrict);
}

function q(arr: unknown, i: number, present = true): number | null {
  if (!present || !Array.isArray(arr)) return null;
  return numOrNull(arr[i]);
}

function toRow(r: Record<string, unknown>, keyOf: GroupKeyReader, method: LatencyRow['method']): LatencyRow {
  const requests = num(r.m_requests);
  // A sketch with no values merges to NaN (null in JSON); exact quantiles of nothing are 0.
  const ttftPresent = method === 'sketch' || num(r.m_ttft_n) > 0;
  const ovhPresent = method === 'sketch' || num(r.m_ovh_n) > 0;
  return {
    key: keyOf(r),
    requests,
    p50Ms: q(r.m_lat, 0, requests > 0),
    p90Ms: q(r.m_lat, 1, requests > 0),
    p95Ms: q(r.m_lat, 2, requests > 0),
    p99Ms: q(r.m_lat, 3, requests > 0),
    ttftP50Ms: q(r.m_ttft, 0, ttftPresent),
    ttftP95Ms: q(r.m_ttft, 2, ttftPresent),
    ttftP99Ms: q(r.m_ttft, 3, ttftPresent),
    overheadP50Ms: q(r.m_ovh, 0, ovhPresent),
    overheadP99Ms: q(r.m_ovh, 3, ovhPresent),
    method,
  };
}

export async function latency(ctx: AnalyticsContext, rawFilter: AnalyticsFilter, groupBy?: readonly Dimension[] | null): Promise<LatencyRow[]> {
  const filter = scopeFilter(rawFilter, ctx.principal);
  const dims = uniqueDimensions(groupBy);
  if (matchesNothing(filter)) return [];
  const keyOf = groupKeyReader(dims);
  if (!sketchAnswers(filter, dims)) {
    return (await runQuery(ctx, latencyExactQuery(ctx, filter, dims))).map((r) => toRow(r, keyOf, 'exact'));
  }
  const approx = await runQuery(ctx, latencySketchQuery(ctx, filter, dims));
  const small = approx.filter((r) => num(r.m_requests) < EXACT_BELOW);
  if (small.length === 0) return approx.map((r) => toRow(r, keyOf, 'sketch'));

  // Exact percentiles for the small groups: raw receipts restricted to a superset of those
  // groups (each dimension's values among them), then matched back by group key.
  const restrict = sql.join(
    dims.map((d) => {
      const values = [...new Set(small.map((r) => String(r[DIMENSION_ALIAS[d]] ?? '')))];
      return sql` AND ${trusted(DIMENSION_COLUMN, d)} IN ${values}`;
    }),
    ' ',
  );
  const exact = await runQuery(ctx, latencyExactQuery(ctx, filter, dims, restrict));
  const exactByKey = new Map(exact.map((r) => [groupKeyString(r, dims), r]));
  return approx.map((r) => {
    if (num(r.m_requests) >= EXACT_BELOW) return toRow(r, keyOf, 'sketch');
    const e = exactByKey.get(groupKeyString(r, dims));
    return e ? toRow(e, keyOf, 'exact') : toRow(r, keyOf, 'sketch');
  });
}
