// Orders a route's targets for one request. The order is the failover order: the first
// admitted target is tried first, the rest are fallbacks.
import type { Route, Target } from './catalog.js';
import type { TargetHealth } from './health.js';

export function orderTargets(route: Route, health: TargetHealth, random: () => number = Math.random): Target[] {
  const targets = route.targets;
  if (targets.length <= 1) return targets.slice();
  switch (route.strategy) {
    case 'WEIGHTED':
      return weightedShuffle(targets, random);
    case 'LEAST_LATENCY':
      // Unmeasured targets go first (latency 0) so every target gets measured.
      return stableSort(targets, (a, b) => (health.ewma(a.key) ?? 0) - (health.ewma(b.key) ?? 0) || a.priority - b.priority);
    case 'LOWEST_COST':
      return stableSort(targets, (a, b) => costRank(a) - costRank(b) || a.priority - b.priority);
    default:
      return stableSort(targets, (a, b) => a.priority - b.priority);
  }
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
