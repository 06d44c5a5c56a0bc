// Subscriptions: `routingDecisions(filter)` and `budgetEvents(teamId)`, streamed from the
// LiveBus through a bounded per-subscriber queue (src/live/stream.ts); over websockets, identical
// subscriptions share one execution per event (src/live/fanout.ts). A team-bound token
// only ever receives its own team's events: the team filter is forced, whatever the query says.

import { GraphQLError } from 'graphql';
import {
  BUDGET_EVENT_KINDS,
  type BudgetEvent,
  type Candidate,
  DECISION_OUTCOMES,
  type Delivered,
  type RoutingDecision,
  type Topic,
} from '../../live/events.js';
import { tooManySubscribers } from '../../live/fanout.js';
import type { Builder } from '../builder.js';
import type { GraphQLContext } from '../context.js';

interface DecisionFilterInput {
  teamIds?: readonly string[] | null;
  routes?: readonly string[] | null;
  models?: readonly string[] | null;
  providers?: readonly string[] | null;
  outcomes?: readonly string[] | null;
  requestedModels?: readonly string[] | null;
  apiKeyIds?: readonly string[] | null;
  features?: readonly string[] | null;
}

const setOf = (xs: readonly string[] | null | undefined) => (xs && xs.length > 0 ? new Set(xs) : null);

/**
 * A filter is held for the subscription's life (its variables are its fan-out key too), outside
 * any byte limit of its socket: 100 subscriptions each naming 100k features held hundreds of MB.
 */
const MAX_FILTER_VALUES = 100;
const MAX_FILTER_VALUE_LENGTH = 256;

function assertBoundedFilter(filter: DecisionFilterInput | null | undefined): void {
  for (const [name, values] of Object.entries(filter ?? {})) {
    if (!Array.isArray(values)) continue;
    if (values.length > MAX_FILTER_VALUES || values.some((v) => typeof v === 'string' && v.length > MAX_FILTER_VALUE_LENGTH)) {
      throw new GraphQLError(`filter.${name}: at most ${MAX_FILTER_VALUES} values of at most ${MAX_FILTER_VALUE_LENGTH} characters`, {
        extensions: { code: 'BAD_USER_INPUT', field: `filter.${name}` },
      });
    }
  }
}

/** The team filter a principal gets: a team-bound token sees its team only, whatever it asked. */
function forcedTeams(ctx: GraphQLContext, asked: readonly string[] | null | undefined): Set<string> | null {
  const bound = ctx.principal?.teamId ?? null;
  if (bound !== null) return new Set([bound]);
  return setOf(asked);
}

/** Compiles a filter into one cheap predicate (it runs inside the proxy's publish call). */
export function decisionPredicate(ctx: GraphQLContext, filter: DecisionFilterInput | null | undefined): (d: RoutingDecision) => boolean {
  assertBoundedFilter(filter);
  const teams = forcedTeams(ctx, filter?.teamIds);
  const routes = setOf(filter?.routes);
  const models = setOf(filter?.models);
  const providers = setOf(filter?.providers);
  const outcomes = setOf(filter?.outcomes);
  const requested = setOf(filter?.requestedModels);
  const keys = setOf(filter?.apiKeyIds);
  const features = setOf(filter?.features);
  return (d) =>
    (!teams || (d.teamId !== null && teams.has(d.teamId))) &&
    (!routes || (d.route !== null && routes.has(d.route))) &&
    (!models || (d.model !== null && models.has(d.model))) &&
    (!providers || (d.provider !== null && providers.has(d.provider))) &&
    (!outcomes || outcomes.has(d.outcome)) &&
    (!requested || requested.has(d.requestedModel)) &&
    (!keys || (d.apiKeyId !== null && keys.has(d.apiKeyId))) &&
    (!features || (d.feature !== null && features.has(d.feature)));
}

/** The subscription's event stream: its own bus stream, or its websocket fan-out group's. */
function openStream<T extends object>(ctx: GraphQLContext, topic: Topic<T>, accept: (event: T) => boolean): AsyncIterableIterator<Delivered<T>> {
  if (ctx.openLiveStream) return ctx.openLiveStream(topic, accept); // a websocket's: the fan-out checks the cap
  if (ctx.bus.full) throw tooManySubscribers();
  return ctx.bus.stream(topic, accept);
}

/**
 * `Candidate`, shared by live decisions and explainRoute (schema/routing.ts): a target a route
 * could use, with its health and why it is skipped.
 */
export function registerCandidate(builder: Builder) {
  const BreakerStateEnum = builder.enumType('BreakerState', {
    values: { CLOSED: { value: 'closed' }, OPEN: { value: 'open' }, HALF_OPEN: { value: 'half_open' } } as const,
  });
  const CandidateRef = builder.objectRef<Candidate>('Candidate');
  CandidateRef.implement({
    description: 'A target the route could use for this request, with its health at decision time.',
    fields: (t) => ({
      provider: t.exposeString('provider'),
      model: t.exposeString('model'),
      state: t.field({ type: BreakerStateEnum, resolve: (c) => c.state }),
      ewmaLatencyMs: t.exposeFloat('ewmaLatencyMs', { nullable: true }),
      skipReason: t.string({
        nullable: true,
        description: 'Why it is skipped: circuit_open, cooling_down, probe_in_flight, retry_budget_exhausted, budget_exceeded; null when it would be tried.',
        resolve: (c) => c.skipReason ?? null,
      }),
    }),
  });
  return CandidateRef;
}

export function registerLive(builder: Builder, CandidateRef: ReturnType<typeof registerCandidate>) {
  const DecisionOutcomeEnum = builder.enumType('DecisionOutcome', { values: DECISION_OUTCOMES });
  const BudgetEventKindEnum = builder.enumType('BudgetEventKind', { values: BUDGET_EVENT_KINDS });

  const RoutingDecisionRef = builder.objectRef<Delivered<RoutingDecision>>('RoutingDecision');
  RoutingDecisionRef.implement({
    description: 'One routing step of one request: every attempt, failover, skip and final outcome.',
    fields: (t) => ({
      requestId: t.exposeID('requestId'),
      receiptId: t.exposeID('receiptId', { nullable: true }),
      at: t.field({ type: 'DateTime', resolve: (d) => d.at }),
      teamId: t.exposeID('teamId', { nullable: true }),
      apiKeyId: t.exposeID('apiKeyId', { nullable: true }),
      feature: t.exposeString('feature', { nullable: true }),
      requestedModel: t.exposeString('requestedModel'),
      route: t.exposeString('route', { nullable: true }),
      strategy: t.exposeString('strategy', { nullable: true }),
      attempt: t.exposeInt('attempt'),
      provider: t.exposeString('provider', { nullable: true }),
      model: t.exposeString('model', { nullable: true }),
      outcome: t.field({ type: DecisionOutcomeEnum, resolve: (d) => d.outcome }),
      reason: t.exposeString('reason', { nullable: true }),
      latencyMs: t.exposeFloat('latencyMs', { nullable: true }),
      candidates: t.field({ type: [CandidateRef], resolve: (d) => d.candidates }),
      rule: t.string({ nullable: true, description: 'The routing rule that decided, when one did.', resolve: (d) => d.rule ?? null }),
      classifierTier: t.string({ nullable: true, description: "The prompt classifier's tier, when a rule read it.", resolve: (d) => d.classifierTier ?? null }),
      experiment: t.string({ nullable: true, resolve: (d) => d.experiment ?? null }),
      variant: t.string({ nullable: true, description: 'The bare variant name.', resolve: (d) => d.variant ?? null }),
      accepted: t.boolean({
        nullable: true,
        description: "CASCADE: whether this step's answer passed the acceptance checks.",
        resolve: (d) => d.accepted ?? null,
      }),
      rejectReason: t.string({ nullable: true, description: 'CASCADE: why the answer failed them.', resolve: (d) => d.rejectReason ?? null }),
      droppedBefore: t.exposeInt('droppedBefore', {
        description:
          'Events this subscriber missed just before this one because it read too slowly (its buffer was full; the oldest were dropped). 0 normally.',
      }),
    }),
  });

  const BudgetEventRef = builder.objectRef<Delivered<BudgetEvent>>('BudgetEvent');
  BudgetEventRef.implement({
    description: 'A budget threshold crossed, a limit reached, a request blocked, or a period reset.',
    fields: (t) => ({
      teamId: t.exposeID('teamId', { nullable: true }),
      budgetId: t.exposeID('budgetId'),
      kind: t.field({ type: BudgetEventKindEnum, resolve: (e) => e.kind }),
      scope: t.exposeString('scope', { description: 'TEAM, API_KEY or FEATURE' }),
      apiKeyId: t.exposeID('apiKeyId', { nullable: true }),
      feature: t.exposeString('feature', { nullable: true }),
      period: t.exposeString('period', { description: 'DAY, MONTH or TOTAL' }),
      action: t.exposeString('action', { description: 'BLOCK or ALERT' }),
      spentUsd: t.exposeFloat('spentUsd'),
      limitUsd: t.exposeFloat('limitUsd'),
      thresholdPct: t.exposeFloat('thresholdPct', { nullable: true }),
      requestId: t.exposeID('requestId', { nullable: true }),
      at: t.field({ type: 'DateTime', resolve: (e) => e.at }),
      droppedBefore: t.exposeInt('droppedBefore'),
    }),
  });

  const DecisionFilter = builder.inputType('DecisionFilter', {
    description:
      'Every list is an OR of its values (at most 100, of at most 256 characters); lists are ANDed. A team-bound token always gets its own team only.',
    fields: (t) => ({
      teamIds: t.idList({ required: false }),
      routes: t.stringList({ required: false }),
      models: t.stringList({ required: false, description: 'The provider model an attempt used' }),
      providers: t.stringList({ required: false }),
      outcomes: t.field({ type: [DecisionOutcomeEnum], required: false }),
      requestedModels: t.stringList({ required: false, description: 'The model string the client sent' }),
      apiKeyIds: t.idList({ required: false }),
      features: t.stringList({ required: false }),
    }),
  });

  builder.subscriptionField('routingDecisions', (t) =>
    t.field({
      type: RoutingDecisionRef,
      description: 'Every routing decision, every attempt, as it happens (this instance, and the others when Redis is configured).',
      authScopes: { authenticated: true },
      args: { filter: t.arg({ type: DecisionFilter, required: false }) },
      subscribe: (_root, args, ctx) => openStream(ctx, ctx.bus.decisions, decisionPredicate(ctx, args.filter as DecisionFilterInput | null)),
      resolve: (event) => event,
    }),
  );

  builder.subscriptionField('budgetEvents', (t) =>
    t.field({
      type: BudgetEventRef,
      description: 'Budget thresholds crossed and blocks. A team-bound token gets its own team only, whatever `teamId` says.',
      authScopes: { authenticated: true },
      args: { teamId: t.arg.id({ required: false }) },
      subscribe: (_root, args, ctx) => {
        const teams = forcedTeams(ctx, args.teamId ? [String(args.teamId)] : null);
        return openStream(ctx, ctx.bus.budgets, (e) => !teams || (e.teamId !== null && teams.has(e.teamId)));
      },
      resolve: (event) => event,
    }),
  );
}
