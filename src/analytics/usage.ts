// usage: requests, errors, tokens and cost per group.
//
// Reasoning tokens (receipt version 2) are not in receipts_hourly, which predates them: a
// question that asks for them reads raw receipts even where the rollup would answer the
// rest. They are summed only when asked for, so that the questions that do not ask read
// exactly what they read before (the rollup, or no extra column of raw receipts).
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

export interface UsageRow {
  key: GroupKey;
  requests: number;
  errors: number;
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
  /** The reasoning part of completionTokens; null when not asked for (see UsageOptions). */
  reasoningTokens: number | null;
  /** Sum over priced requests; unpriced ones are counted in unpricedRequests. */
  costUsd: number;
  unpricedRequests: number;
}

export interface UsageOptions {
  /** Answer reasoningTokens too (then raw receipts are read: the rollup lacks them). */
  reasoningTokens?: boolean;
}

export function usageQuery(ctx: AnalyticsContext, filter: AnalyticsFilter, dims: Dimension[], opts: UsageOptions = {}) {
  const source = !opts.reasoningTokens && rollupAnswers(filter, dims) ? 'rollup' : 'raw';
  const measures =
    source === 'rollup'
      ? sql`toUInt64(sum(requests)) AS m_requests, toUInt64(sum(errors)) AS m_errors,
            toUInt64(sum(prompt_tokens)) AS m_prompt_tokens, toUInt64(sum(completion_tokens)) AS m_completion_tokens,
            toUInt64(sum(cached_tokens)) AS m_cached_tokens, toFloat64(sum(cost_usd)) AS m_cost_usd,
            toUInt64(sum(unpriced_requests)) AS m_unpriced_requests`
      : sql`count() AS m_requests, countIf(status != 'ok') AS m_errors,
            sum(prompt_tokens) AS m_prompt_tokens, sum(completion_tokens) AS m_completion_tokens,
            sum(cached_tokens) AS m_cached_tokens, toFloat64(sum(ifNull(cost_usd, toDecimal64(0, 9)))) AS m_cost_usd,
            countIf(cost_usd IS NULL) AS m_unpriced_requests${opts.reasoningTokens ? sql`, sum(reasoning_tokens) AS m_reasoning_tokens` : sql.empty()}`;
  return { source, query: groupedSelect(ctx, source, measures, filter, dims) };
}

export async function usage(
  ctx: AnalyticsContext,
  rawFilter: AnalyticsFilter,
  groupBy?: readonly Dimension[] | null,
  opts: UsageOptions = {},
): Promise<UsageRow[]> {
  const filter = scopeFilter(rawFilter, ctx.principal);
  const dims = uniqueDimensions(groupBy);
  if (matchesNothing(filter)) return [];
  const rows = await runQuery(ctx, usageQuery(ctx, filter, dims, opts).query);
  const keyOf = groupKeyReader(dims);
  return rows.map((r) => ({
    key: keyOf(r),
    requests: num(r.m_requests),
    errors: num(r.m_errors),
    promptTokens: num(r.m_prompt_tokens),
    completionTokens: num(r.m_completion_tokens),
    cachedTokens: num(r.m_cached_tokens),
    reasoningTokens: r.m_reasoning_tokens === undefined ? null : num(r.m_reasoning_tokens),
    costUsd: num(r.m_cost_usd),
    unpricedRequests: num(r.m_unpriced_requests),
  }));
}
