// usage: requests, errors, tokens and cost per group.
import {
  groupKeyOf, groupedSelect, matchesNothing, num, rollupAnswers, runQuery, scopeFilter, uniqueDimensions,
  type AnalyticsContext, type AnalyticsFilter, type Dimension, type GroupKey,
} from './common.js';
import { sql } from './sql.js';

export interface UsageRow {
  key: GroupKey;
  requests: number;
  errors: number;
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
  /** Sum over priced requests; unpriced ones are counted in unpricedRequests. */
  costUsd: number;
  unpricedRequests: number;
}

export function usageQuery(ctx: AnalyticsContext, filter: AnalyticsFilter, dims: Dimension[]) {
  const source = rollupAnswers(filter, dims) ? 'rollup' : 'raw';
  const measures =
    source === 'rollup'
      ? sql`toUInt64(sum(requests)) AS m_requests, toUInt64(sum(errors)) AS m_errors,
            toUInt64(sum(prompt_tokens)) AS m_prompt_tokens, toUInt64(sum(completion_tokens)) AS m_completion_tokens,
            toUInt64(sum(cached_tokens)) AS m_cached_tokens, toFloat64(sum(cost_usd)) AS m_cost_usd,
            toUInt64(sum(unpriced_requests)) AS m_unpriced_requests`
      : sql`count() AS m_requests, countIf(status != 'ok') AS m_errors,
            sum(prompt_tokens) AS m_prompt_tokens, sum(completion_tokens) AS m_completion_tokens,
            sum(cached_tokens) AS m_cached_tokens, toFloat64(sum(ifNull(cost_usd, toDecimal64(0, 9)))) AS m_cost_usd,
            countIf(cost_usd IS NULL) AS m_unpriced_requests`;
  return { source, query: groupedSelect(ctx, source, measures, filter, dims) };
}

export async function usage(ctx: AnalyticsContext, rawFilter: AnalyticsFilter, groupBy?: readonly Dimension[] | null): Promise<UsageRow[]> {
  const filter = scopeFilter(rawFilter, ctx.principal);
  const dims = uniqueDimensions(groupBy);
  if (matchesNothing(filter)) return [];
  const rows = await runQuery(ctx, usageQuery(ctx, filter, dims).query);
  return rows.map((r) => ({
    key: groupKeyOf(r, dims),
    requests: num(r.m_requests),
    errors: num(r.m_errors),
    promptTokens: num(r.m_prompt_tokens),
    completionTokens: num(r.m_completion_tokens),
    cachedTokens: num(r.m_cached_tokens),
    costUsd: num(r.m_cost_usd),
    unpricedRequests: num(r.m_unpriced_requests),
  }));
}
