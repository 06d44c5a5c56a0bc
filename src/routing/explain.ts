// explainRoute (DESIGN §8): what the router would do with a request body, without calling a
// provider or writing a receipt. The same parse (the client protocol's codec) and the same
// decision (decide.ts) as a real request; the candidates in the order they would be tried,
// each with its breaker state and why it would be skipped.
import type { IncomingHttpHeaders } from 'node:http';
import type { BudgetSubject } from '../budgets/enforcer.js';
import { attributionOf } from '../gateway/attribution.js';
import type { ClientProtocol, ParsedRequest } from '../protocols/protocol.js';
import type { Catalog, Route } from './catalog.js';
import { type DecideHooks, decideRoute } from './decide.js';
import type { BreakerState, TargetHealth } from './health.js';
import type { RetryBudgets } from './retry-budget.js';
import { orderTargets } from './strategy.js';

export interface ExplainRequest {
  /** The body a client would send, in `protocol`'s wire format. */
  body: Record<string, unknown>;
  protocol: ClientProtocol;
  /** Lower-case names. */
  headers: IncomingHttpHeaders;
  team: { id: string; name: string } | null;
  /** The API key sending it (of `team`): what experiments stick to, rules read, and its budgets. */
  apiKey: { id: string; name: string } | null;
}

export interface ExplainedCandidate {
  provider: string;
  model: string;
  state: BreakerState;
  ewmaLatencyMs: number | null;
  /** budget_exceeded, circuit_open, cooling_down, probe_in_flight, retry_budget_exhausted; null: it would be tried. */
  skipReason: string | null;
}

export interface RouteExplanation {
  route: string | null;
  rule: string | null;
  classifierTier: string | null;
  classifierConfidence: number | null;
  experiment: string | null;
  variant: string | null;
  strategy: string | null;
  /** The route the request would be served by, when a rule or variant hands it on. */
  servedBy: string | null;
  candidates: ExplainedCandidate[];
}

export interface ExplainDeps {
  catalog: () => Catalog;
  health: TargetHealth;
  retryBudgets: RetryBudgets;
  hooks: DecideHooks;
  /**
   * False when a BLOCK budget covering the request has no room for its reservation on
   * `served`: the request would be refused before any target (all skipped, budget_exceeded).
   */
  budgetHasRoom?: (subject: BudgetSubject, served: Route, parsed: ParsedRequest) => Promise<boolean>;
}

/** Throws the protocol's 400 (a GatewayError) when the body is not a valid request. */
export async function explainRoute(deps: ExplainDeps, input: ExplainRequest, now = new Date()): Promise<RouteExplanation> {
  const parsed = input.protocol.parse(input.body);
  const catalog = deps.catalog();
  const requested = catalog.resolve(parsed.model);
  const empty: RouteExplanation = {
    route: null,
    rule: null,
    classifierTier: null,
    classifierConfidence: null,
    experiment: null,
    variant: null,
    strategy: null,
    servedBy: null,
    candidates: [],
  };
  if (!requested) return empty;
  const attribution = attributionOf(input.headers, parsed);
  const decision = decideRoute(
    catalog,
    requested,
    {
      endpoint: input.protocol.endpoint,
      model: parsed.model,
      chat: parsed.chat,
      stream: parsed.stream,
      ...attribution,
      teamId: input.team?.id ?? '',
      team: input.team?.name ?? '',
      apiKeyId: input.apiKey?.id ?? '',
      apiKeyName: input.apiKey?.name ?? '',
      requestId: 'explain',
      headers: input.headers,
      metadata: parsed.metadata,
    },
    deps.hooks,
    now,
  );
  const served: Route = decision.route;
  // Budgets are checked before any target is tried (an explanation without a team has none).
  const overBudget =
    input.team !== null &&
    deps.budgetHasRoom !== undefined &&
    !(await deps.budgetHasRoom({ teamId: input.team.id, apiKeyId: input.apiKey?.id ?? '', feature: attribution.feature }, served, parsed));
  // The route that serves the request spends its retry budget, as in the pipeline.
  const budget = deps.retryBudgets.for(served.name);
  let tried = 0;
  // No random draw: an explanation neither shuffles nor claims a stale target's re-measurement.
  const candidates = orderTargets(served, deps.health, { random: () => 0.5, stream: parsed.stream }).map((t): ExplainedCandidate => {
    let skipReason: string | null = overBudget ? 'budget_exceeded' : deps.health.skipReason(t.key);
    if (!skipReason && tried > 0 && !budget.hasRoom()) skipReason = 'retry_budget_exhausted';
    if (!skipReason) tried++;
    return {
      provider: t.provider.name,
      model: t.model,
      state: deps.health.state(t.key),
      ewmaLatencyMs: deps.health.ewma(t.key, parsed.stream) ?? null,
      skipReason,
    };
  });
  return {
    route: requested.name,
    rule: decision.rule,
    classifierTier: decision.classifier?.tier ?? null,
    classifierConfidence: decision.classifier?.confidence ?? null,
    experiment: decision.experiment,
    variant: decision.variant,
    strategy: served.strategy,
    servedBy: served.name === requested.name ? null : served.name,
    candidates,
  };
}
