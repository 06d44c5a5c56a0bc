// experimentResults: how each variant of an experiment did over the filter's window
// (DESIGN §5, §8): requests, error rate, latency percentiles, cost, and tasks with their
// success rate and its 95 % Wilson score interval.
//
// Built from the other questions grouped by VARIANT over the experiment's receipts, so that
// every number means exactly what it means there: requests, errors (status not ok) and cost
// from usage; p50/p95 from latency (exact from raw receipts, as the routing dimensions are
// raw-only); tasks, succeeded tasks and cost per succeeded task from costPerTask (a task's
// verdict is its latest outcome, else its last request's status). Team scoping comes with
// them: each applies the principal's scope to the filter.
//
// A variant appears when it has receipts in the window; variants are matched by their bare
// name (the receipt's `variant`), within the named experiment only.

import { type AnalyticsContext, type AnalyticsFilter, badInput, type Dimension } from './common.js';
import { costPerTask } from './costPerTask.js';
import { latency } from './latency.js';
import { usage } from './usage.js';

export interface VariantResult {
  variant: string;
  requests: number;
  /** Receipts whose status is not ok, over requests. */
  errorRate: number;
  p50Ms: number | null;
  p95Ms: number | null;
  /** Cost of the priced requests (as usage.costUsd). */
  costUsd: number;
  tasks: number;
  succeededTasks: number;
  /** succeededTasks / tasks; null without tasks. */
  successRate: number | null;
  /** The 95 % Wilson score interval of successRate. */
  successRateLow: number | null;
  successRateHigh: number | null;
  costPerSucceededTaskUsd: number | null;
}

/** The two-sided 95 % normal quantile. */
const Z95 = 1.959963984540054;

/**
 * The Wilson score interval for `successes` out of `n` trials (z = 1.96): unlike the normal
 * approximation it stays inside [0, 1] and is meaningful for small n and rates near 0 or 1,
 * which is what a young experiment has.
 */
export function wilsonInterval(successes: number, n: number, z = Z95): { low: number; high: number } | null {
  if (n <= 0) return null;
  const p = successes / n;
  const z2 = z * z;
  const center = p + z2 / (2 * n);
  const margin = z * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
  const denominator = 1 + z2 / n;
  return { low: Math.max(0, (center - margin) / denominator), high: Math.min(1, (center + margin) / denominator) };
}

const BY_VARIANT: Dimension[] = ['VARIANT'];

export async function experimentResults(ctx: AnalyticsContext, name: string, filter: AnalyticsFilter): Promise<VariantResult[]> {
  if (typeof name !== 'string' || name.trim() === '') throw badInput('name must name an experiment.');
  // The experiment's receipts: its name intersected with any experiments the filter names.
  const experiments = filter.experiments == null ? [name] : filter.experiments.filter((e) => e === name);
  const scoped: AnalyticsFilter = { ...filter, experiments };
  const [usageRows, latencyRows, taskRows] = await Promise.all([
    usage(ctx, scoped, BY_VARIANT),
    latency(ctx, scoped, BY_VARIANT),
    costPerTask(ctx, scoped, BY_VARIANT),
  ]);
  const latencyOf = new Map(latencyRows.map((r) => [r.key.variant ?? '', r]));
  const tasksOf = new Map(taskRows.map((r) => [r.key.variant ?? '', r]));
  return usageRows.map((u) => {
    const variant = u.key.variant ?? '';
    const l = latencyOf.get(variant);
    const t = tasksOf.get(variant);
    const tasks = t?.tasks ?? 0;
    const succeededTasks = t?.succeededTasks ?? 0;
    const interval = wilsonInterval(succeededTasks, tasks);
    return {
      variant,
      requests: u.requests,
      errorRate: u.requests > 0 ? u.errors / u.requests : 0,
      p50Ms: l?.p50Ms ?? null,
      p95Ms: l?.p95Ms ?? null,
      costUsd: u.costUsd,
      tasks,
      succeededTasks,
      successRate: tasks > 0 ? succeededTasks / tasks : null,
      successRateLow: interval?.low ?? null,
      successRateHigh: interval?.high ?? null,
      costPerSucceededTaskUsd: t?.costPerSucceededTaskUsd ?? null,
    };
  });
}
