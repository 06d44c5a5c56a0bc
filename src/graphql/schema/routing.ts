// Routes (targets, rules, acceptance checks), experiments, and explainRoute (DESIGN §5, §8).
// Any token may read them; only a global admin may change them. Changes go through the
// AdminStore, which validates the routing configuration as a whole and refuses a change that
// would break it (BAD_USER_INPUT naming the field), so the running catalog never sees one.
//
// Route and RouteTarget are plugin-prisma objects: `routes { targets }` is one Prisma call per
// level. Rules and variants are JSON columns; their targets are shown with the same
// RouteTarget type.
import { GraphQLError } from 'graphql';
import { GatewayError } from '../../gateway/errors.js';
import type { RouteExplanation } from '../../routing/explain.js';
import { cachePolicyOf, type ExperimentRecord, type RouteRuleRecord, type RouteTargetRecord, type VariantRecord } from '../../store/admin/routing.js';
import { AcceptCheck, CacheMode, RouteStrategy, StickyBy } from '../../store/prisma.js';
import type { Builder } from '../builder.js';
import { notFound, store } from './errors.js';
import type { registerCandidate } from './live.js';

/** A target record in the shape of a RouteTarget row, so the one GraphQL type shows both. */
const asTargetRow = (t: RouteTargetRecord) => ({ providerName: t.provider, model: t.model, weight: t.weight, priority: t.priority });

const ENDPOINTS = ['chat', 'responses', 'messages', 'embeddings'] as const;

export function registerRouting(builder: Builder, Candidate: ReturnType<typeof registerCandidate>) {
  const RouteStrategyEnum = builder.enumType(RouteStrategy, { name: 'RouteStrategy' });
  const CacheModeEnum = builder.enumType(CacheMode, { name: 'CacheMode' });
  const AcceptCheckEnum = builder.enumType(AcceptCheck, { name: 'AcceptCheck' });
  const StickyByEnum = builder.enumType(StickyBy, { name: 'StickyBy' });

  const CachePolicy = builder.objectRef<ReturnType<typeof cachePolicyOf>>('CachePolicy');
  CachePolicy.implement({
    fields: (t) => ({
      mode: t.field({ type: CacheModeEnum, resolve: (c) => c.mode }),
      ttlSeconds: t.exposeInt('ttlSeconds', { nullable: true }),
      similarityThreshold: t.exposeFloat('similarityThreshold', { nullable: true }),
      embeddingModel: t.exposeString('embeddingModel', {
        nullable: true,
        description: 'SEMANTIC: the embeddings route or provider/model; null = the local embedder.',
      }),
      cacheSampled: t.exposeBoolean('cacheSampled', { description: 'Answers to sampled requests (temperature > 0 without seed, n > 1) are cached too.' }),
      cacheToolCalls: t.exposeBoolean('cacheToolCalls', { description: 'Answers that call tools are cached too.' }),
    }),
  });

  const RouteTarget = builder.prismaObject('RouteTarget', {
    fields: (t) => ({
      provider: t.exposeString('providerName', { description: 'Provider name.' }),
      model: t.exposeString('model'),
      weight: t.exposeFloat('weight'),
      priority: t.exposeInt('priority'),
    }),
  });

  const RouteRule = builder.objectRef<RouteRuleRecord>('RouteRule');
  RouteRule.implement({
    description: 'A routing rule: the first of a route whose `when` (CEL) holds decides (DESIGN §5).',
    fields: (t) => ({
      name: t.exposeString('name'),
      when: t.exposeString('when'),
      targets: t.field({ type: [RouteTarget], nullable: true, resolve: (r) => r.targets?.map(asTargetRow) as never }),
      route: t.exposeString('route', { nullable: true, description: 'The route the request is handed to (which runs its own rules).' }),
    }),
  });

  const Route = builder.prismaObject('Route', {
    fields: (t) => ({
      id: t.exposeID('id'),
      name: t.exposeString('name'),
      strategy: t.expose('strategy', { type: RouteStrategyEnum }),
      retries: t.exposeInt('retries'),
      timeoutMs: t.exposeInt('timeoutMs', { nullable: true }),
      cache: t.field({ type: CachePolicy, resolve: (r) => cachePolicyOf(r) }),
      targets: t.relation('targets', { description: 'In the order given (CASCADE: cheap first).', query: { orderBy: { position: 'asc' } } }),
      rules: t.field({
        type: [RouteRule],
        description: 'In order: the first that holds decides.',
        resolve: (r) => (Array.isArray(r.rules) ? (r.rules as unknown as RouteRuleRecord[]) : []),
      }),
      accept: t.field({ type: [AcceptCheckEnum], description: 'CASCADE: the checks an answer must pass to end the climb.', resolve: (r) => r.accept }),
      createdAt: t.expose('createdAt', { type: 'DateTime' }),
      updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
    }),
  });

  const Variant = builder.objectRef<VariantRecord>('Variant');
  Variant.implement({
    fields: (t) => ({
      name: t.exposeString('name'),
      weight: t.exposeFloat('weight'),
      targets: t.field({
        type: [RouteTarget],
        nullable: true,
        description: "Replaces the route's targets and rules.",
        resolve: (v) => v.targets?.map(asTargetRow) as never,
      }),
      route: t.exposeString('route', { nullable: true, description: 'Another route serves this variant (its rules run; no second experiment).' }),
    }),
  });

  const Experiment = builder.objectRef<ExperimentRecord>('Experiment');
  Experiment.implement({
    description: "Splits a route's traffic between variants, sticky by end user, task, key or request (DESIGN §5).",
    fields: (t) => ({
      name: t.exposeString('name'),
      route: t.exposeString('route'),
      stickyBy: t.field({ type: StickyByEnum, resolve: (e) => e.stickyBy }),
      active: t.exposeBoolean('active'),
      variants: t.field({ type: [Variant], resolve: (e) => e.variants }),
    }),
  });

  const RouteTargetInput = builder.inputType('RouteTargetInput', {
    fields: (t) => ({ provider: t.string({ required: true }), model: t.string({ required: true }), weight: t.float(), priority: t.int() }),
  });

  const CachePolicyInput = builder.inputType('CachePolicyInput', {
    fields: (t) => ({
      mode: t.field({ type: CacheModeEnum, required: true }),
      ttlSeconds: t.int(),
      similarityThreshold: t.float(),
      embeddingModel: t.string(),
      cacheSampled: t.boolean(),
      cacheToolCalls: t.boolean(),
    }),
  });

  const RouteRuleInput = builder.inputType('RouteRuleInput', {
    fields: (t) => ({
      name: t.string({ required: true }),
      when: t.string({ required: true, description: 'CEL over request.*, classifier.*, now.* (DESIGN §5).' }),
      targets: t.field({ type: [RouteTargetInput] }),
      route: t.string(),
    }),
  });

  const RouteInput = builder.inputType('RouteInput', {
    description: 'A route is replaced whole: absent fields take their defaults (retries 1, cache OFF, no rules).',
    fields: (t) => ({
      name: t.string({ required: true }),
      strategy: t.field({ type: RouteStrategyEnum, required: true }),
      targets: t.field({ type: [RouteTargetInput], required: true }),
      retries: t.int(),
      timeoutMs: t.int(),
      cache: t.field({ type: CachePolicyInput }),
      rules: t.field({ type: [RouteRuleInput] }),
      accept: t.field({ type: [AcceptCheckEnum] }),
    }),
  });

  const VariantInput = builder.inputType('VariantInput', {
    fields: (t) => ({
      name: t.string({ required: true }),
      weight: t.float({ required: true }),
      targets: t.field({ type: [RouteTargetInput] }),
      route: t.string(),
    }),
  });

  const ExperimentInput = builder.inputType('ExperimentInput', {
    fields: (t) => ({
      name: t.string({ required: true }),
      route: t.string({ required: true }),
      stickyBy: t.field({ type: StickyByEnum, required: true }),
      variants: t.field({ type: [VariantInput], required: true }),
      active: t.boolean(),
    }),
  });

  const HeaderInput = builder.inputType('HeaderInput', {
    fields: (t) => ({ name: t.string({ required: true }), value: t.string({ required: true }) }),
  });

  const ExplainRouteInput = builder.inputType('ExplainRouteInput', {
    fields: (t) => ({
      request: t.field({ type: 'JSON', required: true, description: 'The body a client would send.' }),
      headers: t.field({ type: [HeaderInput] }),
      teamId: t.id({ description: 'The team sending it (request.team in rules); a team-bound token always explains for its own team.' }),
      apiKeyId: t.id({
        description:
          "The API key sending it (its team's, the team when teamId is absent): experiments that stick to the key, rules on request.apiKeyName, the key's budgets.",
      }),
      endpoint: t.string({ description: `The client protocol: ${ENDPOINTS.join(', ')} (default chat).` }),
    }),
  });

  const RouteExplanationRef = builder.objectRef<RouteExplanation>('RouteExplanation');
  RouteExplanationRef.implement({
    description: 'What the router would do with a request: no provider is called and no receipt written.',
    fields: (t) => ({
      route: t.exposeString('route', { nullable: true, description: 'The route the request names; null when the model is unknown.' }),
      rule: t.exposeString('rule', { nullable: true }),
      classifierTier: t.exposeString('classifierTier', { nullable: true, description: 'Set when a rule read the classifier.' }),
      classifierConfidence: t.exposeFloat('classifierConfidence', { nullable: true }),
      experiment: t.exposeString('experiment', { nullable: true }),
      variant: t.exposeString('variant', { nullable: true }),
      strategy: t.exposeString('strategy', { nullable: true }),
      servedBy: t.exposeString('servedBy', { nullable: true, description: 'The route that would serve it, when a rule or variant hands it on.' }),
      candidates: t.field({
        type: [Candidate],
        description: 'In try order (CASCADE: the climb), each with why it would be skipped.',
        resolve: (e) => e.candidates,
      }),
    }),
  });

  const targetsOf = (targets: ReadonlyArray<{ provider: string; model: string; weight?: number | null; priority?: number | null }> | null | undefined) =>
    targets?.map((t) => ({ provider: t.provider, model: t.model, weight: t.weight ?? undefined, priority: t.priority ?? undefined }));

  builder.queryFields((t) => ({
    routes: t.prismaField({
      type: [Route],
      authScopes: { authenticated: true },
      resolve: (query, _root, _args, ctx) => ctx.prisma.route.findMany({ ...query, orderBy: { name: 'asc' } }),
    }),
    experiments: t.field({
      type: [Experiment],
      authScopes: { authenticated: true },
      resolve: (_root, _args, ctx) => store(() => ctx.admin.routing.listExperiments()),
    }),
    explainRoute: t.field({
      type: RouteExplanationRef,
      authScopes: { authenticated: true },
      args: { input: t.arg({ type: ExplainRouteInput, required: true }) },
      resolve: async (_root, { input }, ctx) => {
        if (!ctx.explainRoute) throw new GraphQLError('explainRoute is not available here.', { extensions: { code: 'SERVICE_UNAVAILABLE' } });
        const request = input.request;
        if (!request || typeof request !== 'object' || Array.isArray(request)) {
          throw new GraphQLError('input.request: must be a JSON object (the body a client would send).', {
            extensions: { code: 'BAD_USER_INPUT', field: 'input.request' },
          });
        }
        const endpoint = input.endpoint ?? 'chat';
        if (!(ENDPOINTS as readonly string[]).includes(endpoint)) {
          throw new GraphQLError(`input.endpoint: one of ${ENDPOINTS.join(', ')}.`, { extensions: { code: 'BAD_USER_INPUT', field: 'input.endpoint' } });
        }
        const bound = ctx.principal?.teamId ?? null;
        // Another team reads as not found to a team-bound token, as everywhere else.
        if (bound && input.teamId && input.teamId !== bound) throw notFound('team');
        const key = input.apiKeyId ? await store(() => ctx.admin.teams.getApiKey(String(input.apiKeyId))) : null;
        // Another team's key reads as not found to a team-bound token.
        if (input.apiKeyId && (!key || (bound && key.teamId !== bound))) throw notFound('API key');
        const teamId = bound ?? input.teamId ?? key?.teamId ?? null;
        if (key && key.teamId !== teamId) {
          throw new GraphQLError('input.apiKeyId: the key belongs to another team than input.teamId.', {
            extensions: { code: 'BAD_USER_INPUT', field: 'input.apiKeyId' },
          });
        }
        const team = teamId ? await store(() => ctx.admin.teams.getTeam(teamId)) : null;
        if (teamId && !team) throw notFound('Team');
        const headers: Record<string, string> = {};
        for (const h of input.headers ?? []) headers[h.name.toLowerCase()] = h.value;
        try {
          return await ctx.explainRoute({
            body: request as Record<string, unknown>,
            endpoint: endpoint as (typeof ENDPOINTS)[number],
            headers,
            team,
            apiKey: key && { id: key.id, name: key.name },
          });
        } catch (err) {
          // The request body is invalid for its protocol: the same 400 a client would get.
          if (err instanceof GatewayError && err.status < 500) {
            throw new GraphQLError(`input.request${err.param ? `.${err.param}` : ''}: ${err.message}`, {
              extensions: { code: 'BAD_USER_INPUT', field: 'input.request' },
            });
          }
          throw err;
        }
      },
    }),
  }));

  builder.mutationFields((t) => ({
    upsertRoute: t.prismaField({
      type: Route,
      authScopes: { globalAdmin: true },
      args: { input: t.arg({ type: RouteInput, required: true }) },
      resolve: async (query, _root, { input }, ctx) => {
        const route = await store(() =>
          ctx.admin.routing.upsertRoute({
            name: input.name,
            strategy: input.strategy,
            targets: targetsOf(input.targets)!,
            retries: input.retries,
            timeoutMs: input.timeoutMs,
            cache: input.cache,
            rules: input.rules?.map((r) => ({ name: r.name, when: r.when, targets: targetsOf(r.targets), route: r.route })),
            accept: input.accept,
          }),
        );
        await ctx.configChanged();
        return ctx.prisma.route.findUniqueOrThrow({ ...query, where: { id: route.id } });
      },
    }),
    upsertExperiment: t.field({
      type: Experiment,
      authScopes: { globalAdmin: true },
      args: { input: t.arg({ type: ExperimentInput, required: true }) },
      resolve: async (_root, { input }, ctx) => {
        const experiment = await store(() =>
          ctx.admin.routing.upsertExperiment({
            name: input.name,
            route: input.route,
            stickyBy: input.stickyBy,
            active: input.active,
            variants: input.variants.map((v) => ({ name: v.name, weight: v.weight, targets: targetsOf(v.targets), route: v.route })),
          }),
        );
        await ctx.configChanged();
        return experiment;
      },
    }),
    deleteExperiment: t.boolean({
      authScopes: { globalAdmin: true },
      args: { name: t.arg.string({ required: true }) },
      resolve: async (_root, { name }, ctx) => {
        const deleted = await store(() => ctx.admin.routing.deleteExperiment(name), 'name');
        if (deleted) await ctx.configChanged();
        return deleted;
      },
    }),
  }));
}
