// Orders a route's targets for one request. The order is the failover order: the first
// admitted target is tried first, the rest are fallbacks.
import type { Route, Target } from './catalog.js';
import type { TargetHealth } from './health.js';

/**
 * A share of LEAST_LATENCY requests that may re-measure a stale target (one not heard from for
 * STALE_AFTER_MS) by trying it first. Without it a target that was slow or failing once is never
 * tried again; the share bounds what a quiet route spends on it, the claim what a busy one does.
 */
export const REMEASURE_SHARE = 0.02;

export interface OrderOptions {
  random?: () => number;
  /** Streamed: LEAST_LATENCY ranks by time to first token, not a whole answer's time. */
  stream?: boolean;
}

export function orderTargets(route: Route, health: TargetHealth, { random = Math.random, stream = false }: OrderOptions = {}): Target[] {
  const targets = route.targets;
  if (targets.length <= 1) return targets.slice();
  switch (route.strategy) {
    case 'WEIGHTED':
      return weightedShuffle(targets, random);
    case 'LEAST_LATENCY':
      return leastLatency(targets, health, random, stream);
    case 'LOWEST_COST':
      return stableSort(targets, (a, b) => costRank(a) - costRank(b) || a.priority - b.priority);
    default:
      return stableSort(targets, (a, b) => a.priority - b.priority);
  }
}

function leastLatency(targets: readonly Target[], health: TargetHealth, random: () => number, stream: boolean): Target[] {
  const score = (t: Target) => health.latencyScore(t.key, stream);
  const failing = (t: Target) => (health.isFailing(t.key) ? 1 : 0);
  // Two targets that only fail (+∞ each) compare NaN, so by priority.
  const ranked = stableSort(targets, (a, b) => failing(a) - failing(b) || score(a) - score(b) || a.priority - b.priority);
  if (random() < REMEASURE_SHARE) {
    const stale = ranked.findIndex((t, i) => i > 0 && health.claimRemeasure(t.key));
    if (stale > 0) ranked.unshift(...ranked.splice(stale, 1));
  }
  return ranked;
}

/** A blended per-token price for ranking (3:1 input:output, a typical chat mix); unpriced last. */
function costRank(t: Target): number {
  if (!t.price) return Number.POSITIVE_INFINITY;
  return (3 * t.price.inputPerMTokUsd + t.price.outputPerMTokUsd) / 4;
}

function stableSort<T>(items: readonly T[], cmp: (a: T, b: T) => number): T[] {
  return items
    .map((item, index) => ({ item, index }))
    .sort((a, b) => cmp(a.item, b.item) || a.index - b.index)
    .map((x) => x.item);
}

/** Weighted random order without replacement (Efraimidis–Spirakis keys). */
function weightedShuffle(targets: readonly Target[], random: () => number): Target[] {
  return targets
    .map((t) => ({ t, k: t.weight > 0 ? random() ** (1 / t.weight) : -1 }))
    .sort((a, b) => b.k - a.k)
    .map((x) => x.t);
}
