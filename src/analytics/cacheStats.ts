// cacheStats: cache hits (exact, semantic), hit rate and the cost they saved, per group.
import {
  type AnalyticsContext,
  type AnalyticsFilter,
  type Dimension,
  type GroupKey,
  groupedSelect,
  groupKeyReader,
  matchesNothing,
  rollupAnswers,
  scopeFilter,
  uniqueDimensions,
} from './common.js';
import { num, runQuery } from './run.js';
import { sql } from './sql.js';

export interface CacheRow {
  key: GroupKey;
  requests: number;
  hits: number;
  exactHits: number;
  semanticHits: number;
  /** hits / requests (0 when there are no requests). */
  hitRate: number;
  savedCostUsd: number;
}

export function cacheStatsQuery(ctx: AnalyticsContext, filter: AnalyticsFilter, dims: Dimension[]) {
  const source = rollupAnswers(filter, dims) ? 'rollup' : 'raw';
  const measures =
    source === 'rollup'
      ? sql`toUInt64(sum(requests)) AS m_requests,
            toUInt64(sumIf(requests, cache_status = 'exact')) AS m_exact_hits,
            toUInt64(sumIf(requests, cache_status = 'semantic')) AS m_semantic_hits,
            toFloat64(sum(saved_cost_usd)) AS m_saved_cost_usd`
      : sql`count() AS m_requests,
            countIf(cache_status = 'exact') AS m_exact_hits,
            countIf(cache_status = 'semantic') AS m_semantic_hits,
            toFloat64(sum(ifNull(saved_cost_usd, toDecimal64(0, 9)))) AS m_saved_cost_usd`;
  return { source, query: groupedSelect(ctx, source, measures, filter, dims) };
}

export async function cacheStats(ctx: AnalyticsContext, rawFilter: AnalyticsFilter, groupBy?: readonly Dimension[] | null): Promise<CacheRow[]> {
  const filter = scopeFilter(rawFilter, ctx.principal);
  const dims = uniqueDimensions(groupBy);
  if (matchesNothing(filter)) return [];
  const rows = await runQuery(ctx, cacheStatsQuery(ctx, filter, dims).query);
  const keyOf = groupKeyReader(dims);
  return rows.map((r) => {
    const requests = num(r.m_requests);
    const exactHits = num(r.m_exact_hits);
    const semanticHits = num(r.m_semantic_hits);
    const hits = exactHits + semanticHits;
    return {
      key: keyOf(r),
      requests,
      hits,
      exactHits,
      semanticHits,
      hitRate: requests > 0 ? hits / requests : 0,
      savedCostUsd: num(r.m_saved_cost_usd),
    };
  });
}
