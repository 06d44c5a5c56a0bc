// timeSeries: usage per time bucket (MINUTE, HOUR, DAY) and group. Buckets with no requests
// are not returned. HOUR and DAY read the rollup when it answers the range exactly.
import {
  type AnalyticsContext,
  type AnalyticsFilter,
  badInput,
  type Dimension,
  dimensionSelect,
  filterConditions,
  fromTable,
  type GroupKey,
  groupByClause,
  groupKeyReader,
  matchesNothing,
  orderByClause,
  rollupAnswers,
  type Source,
  scopeFilter,
  uniqueDimensions,
} from './common.js';
import { num, runQuery } from './run.js';
import { sql, trusted } from './sql.js';

export const INTERVALS = ['MINUTE', 'HOUR', 'DAY'] as const;
export type Interval = (typeof INTERVALS)[number];

const INTERVAL_MS: Record<Interval, number> = { MINUTE: 60_000, HOUR: 3_600_000, DAY: 86_400_000 };
/** At most this many buckets in a range (per group). */
export const MAX_BUCKETS = 50_000;

const BUCKET_EXPR: Readonly<Record<`${Source}_${Interval}`, string>> = {
  raw_MINUTE: 'toStartOfMinute(started_at)',
  raw_HOUR: 'toStartOfHour(started_at)',
  raw_DAY: "toDateTime(toStartOfDay(started_at), 'UTC')",
  rollup_MINUTE: 'hour', // never used: a minute bucket needs raw receipts
  rollup_HOUR: 'hour',
  rollup_DAY: "toDateTime(toStartOfDay(hour), 'UTC')",
};

export interface TimeBucket {
  start: Date;
  key: GroupKey;
  requests: number;
  errors: number;
  promptTokens: number;
  completionTokens: number;
  costUsd: number;
  unpricedRequests: number;
  cacheHits: number;
}

export function timeSeriesQuery(ctx: AnalyticsContext, filter: AnalyticsFilter, interval: Interval, dims: Dimension[]) {
  const source: Source = interval !== 'MINUTE' && rollupAnswers(filter, dims) ? 'rollup' : 'raw';
  const bucket = trusted(BUCKET_EXPR, `${source}_${interval}`);
  const measures =
    source === 'rollup'
      ? sql`toUInt64(sum(requests)) AS m_requests, toUInt64(sum(errors)) AS m_errors,
            toUInt64(sum(prompt_tokens)) AS m_prompt_tokens, toUInt64(sum(completion_tokens)) AS m_completion_tokens,
            toFloat64(sum(cost_usd)) AS m_cost_usd, toUInt64(sum(unpriced_requests)) AS m_unpriced_requests,
            toUInt64(sum(cache_hits)) AS m_cache_hits`
      : sql`count() AS m_requests, countIf(status != 'ok') AS m_errors,
            sum(prompt_tokens) AS m_prompt_tokens, sum(completion_tokens) AS m_completion_tokens,
            toFloat64(sum(ifNull(cost_usd, toDecimal64(0, 9)))) AS m_cost_usd, countIf(cost_usd IS NULL) AS m_unpriced_requests,
            countIf(cache_status IN ('exact', 'semantic')) AS m_cache_hits`;
  const query = sql`SELECT toUnixTimestamp(${bucket}) AS m_bucket, ${measures}${dimensionSelect(dims)}
    FROM ${fromTable(ctx, source)}
    WHERE ${filterConditions(filter, source)}
    ${groupByClause(dims, [sql`m_bucket`])}
    ${orderByClause(dims, [sql`m_bucket`])}`;
  return { source, query };
}

export async function timeSeries(
  ctx: AnalyticsContext,
  rawFilter: AnalyticsFilter,
  interval: Interval,
  groupBy?: readonly Dimension[] | null,
): Promise<TimeBucket[]> {
  if (!INTERVALS.includes(interval)) throw badInput(`unknown interval ${String(interval)}`);
  const filter = scopeFilter(rawFilter, ctx.principal);
  const dims = uniqueDimensions(groupBy);
  if ((filter.to.getTime() - filter.from.getTime()) / INTERVAL_MS[interval] > MAX_BUCKETS) {
    throw badInput(
      `too many ${interval.toLowerCase()} buckets in this range (at most ${MAX_BUCKETS}); narrow the range${interval === 'DAY' ? '' : ' or use a longer interval'}.`,
    );
  }
  if (matchesNothing(filter)) return [];
  const rows = await runQuery(ctx, timeSeriesQuery(ctx, filter, interval, dims).query);
  const keyOf = groupKeyReader(dims);
  // Rows come bucket by bucket (ORDER BY m_bucket first), one per group: a bucket's rows share its Date.
  let bucketSeconds = Number.NaN;
  let start = new Date(0);
  return rows.map((r) => {
    const seconds = num(r.m_bucket);
    if (seconds !== bucketSeconds) {
      bucketSeconds = seconds;
      start = new Date(seconds * 1000);
    }
    return {
      start,
      key: keyOf(r),
      requests: num(r.m_requests),
      errors: num(r.m_errors),
      promptTokens: num(r.m_prompt_tokens),
      completionTokens: num(r.m_completion_tokens),
      costUsd: num(r.m_cost_usd),
      unpricedRequests: num(r.m_unpriced_requests),
      cacheHits: num(r.m_cache_hits),
    };
  });
}
