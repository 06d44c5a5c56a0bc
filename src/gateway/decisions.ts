// Routing decisions for the live feed (GraphQL routingDecisions): every attempt, failover,
// skip, cache hit and final outcome of a request, published only while someone listens.
import type { Candidate, DecisionOutcome, LiveBus } from '../live/events.js';
import { roundMs } from '../receipts/receipt.js';
import type { Target } from '../routing/catalog.js';
import type { TargetHealth } from '../routing/health.js';
import type { Exchange } from './exchange.js';

/** The targets in the order they will be tried, with their health as the router saw it. */
export function candidatesOf(order: Target[], health: TargetHealth, stream: boolean): Candidate[] {
  return order.map((t) => ({
    provider: t.provider.name,
    model: t.model,
    state: health.state(t.key),
    ewmaLatencyMs: health.ewma(t.key, stream) ?? null,
    skipReason: health.skipReason(t.key),
  }));
}

export function publishDecision(
  bus: LiveBus,
  ex: Exchange,
  target: Target | null,
  outcome: DecisionOutcome,
  reason: string | null,
  latencyMs: number | null,
  candidates: Candidate[],
  attempt = ex.attempts.length,
  acceptance: { accepted: boolean; rejectReason: string | null } | null = null,
): void {
  const topic = bus.decisions;
  if (!topic.hasListeners) return;
  topic.publish({
    requestId: ex.requestId,
    receiptId: ex.receiptId,
    at: new Date().toISOString(),
    teamId: ex.key?.teamId ?? null,
    apiKeyId: ex.key?.id ?? null,
    feature: ex.feature,
    requestedModel: ex.requestedModel ?? '',
    route: ex.route?.name ?? null,
    strategy: (ex.served ?? ex.route)?.strategy ?? null,
    attempt,
    provider: target?.provider.name ?? ex.cacheHit?.provider ?? null,
    model: target?.model ?? ex.cacheHit?.model ?? null,
    outcome,
    reason,
    latencyMs: latencyMs === null ? null : roundMs(latencyMs),
    candidates,
    rule: ex.rule,
    classifierTier: ex.classifierTier,
    experiment: ex.experiment,
    variant: ex.variant,
    accepted: acceptance?.accepted ?? null,
    rejectReason: acceptance?.rejectReason ?? null,
  });
}
