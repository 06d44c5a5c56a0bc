// latency: percentiles of total latency, time to first token and gateway overhead.
//
// Accuracy (DESIGN §8): exact below 10k requests in a group, within 2 % above. When the
// rollup answers the range, one cheap query over receipts_hourly gives every group's count
// and its TDigest percentiles; groups with fewer than 10k requests are then recomputed
// exactly (quantilesExact) from raw receipts, restricted to those groups' dimension values.
// Otherwise everything is computed exactly from raw receipts.
import {
  DIMENSION_ALIAS, DIMENSION_COLUMN, groupKeyOf, groupKeyString, groupedSelect, matchesNothing,
  num, numOrNull, rollupAnswers, runQuery, scopeFilter, uniqueDimensions,
  type AnalyticsContext, type AnalyticsFilter, type Dimension, type GroupKey,
} from './common.js';
import { sql, trusted, type SqlFragment } from './sql.js';

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
  /** How the percentiles were computed: `exact` or `tdigest`. */
  method: 'exact' | 'tdigest';
}

const LEVELS = sql`0.5, 0.9, 0.95, 0.99`;

export function latencyRollupQuery(ctx: AnalyticsContext, filter: AnalyticsFilter, dims: Dimension[]): SqlFragment {
  const measures = sql`toUInt64(sum(requests)) AS m_requests,
      quantilesTDigestMerge(${LEVELS})(latency_tdigest) AS m_lat,
      quantilesTDigestMerge(${LEVELS})(ttft_tdigest) AS m_ttft,
      quantilesTDigestMerge(${LEVELS})(overhead_tdigest) AS m_ovh`;
  return groupedSelect(ctx, 'rollup', measures, filter, dims);
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

function toRow(r: Record<string, unknown>, dims: Dimension[], method: 'exact' | 'tdigest'): LatencyRow {
  const requests = num(r.m_requests);
  const ttftPresent = method === 'tdigest' || num(r.m_ttft_n) > 0;
  const ovhPresent = method === 'tdigest' || num(r.m_ovh_n) > 0;
  return {
    key: groupKeyOf(r, dims),
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
  if (!rollupAnswers(filter, dims)) {
    return (await runQuery(ctx, latencyExactQuery(ctx, filter, dims))).map((r) => toRow(r, dims, 'exact'));
  }
  const approx = await runQuery(ctx, latencyRollupQuery(ctx, filter, dims));
  const small = approx.filter((r) => num(r.m_requests) < EXACT_BELOW);
  if (small.length === 0) return approx.map((r) => toRow(r, dims, 'tdigest'));

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
    if (num(r.m_requests) >= EXACT_BELOW) return toRow(r, dims, 'tdigest');
    const e = exactByKey.get(groupKeyString(r, dims));
    return e ? toRow(e, dims, 'exact') : toRow(r, dims, 'tdigest');
  });
}
