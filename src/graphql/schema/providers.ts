// Providers and routes (DESIGN §8). Any token may read them; only a global admin may change
// them. Provider API keys are write-only: `hasApiKey` says whether one is stored, and no
// field ever returns it (nor extra headers, which may carry credentials).
//
// Provider, Route and RouteTarget are plugin-prisma objects; `routes { targets }` is one
// Prisma call (one SQL statement per level). Provider is in `select` mode: only the columns
// of the requested fields are read, and the ciphertext only to compute `hasApiKey`.
// Mutations go through the AdminStore and re-read the row with the planned selection.
import { CacheMode, ProviderKind, RouteStrategy } from '../../store/prisma.js';
import { cachePolicyOf, type CachePolicyRecord } from '../../store/admin/routing.js';
import { redactUrl } from '../../redact.js';
import type { Builder } from '../builder.js';
import { store } from './teams.js';

export function registerProviders(builder: Builder) {
  const ProviderKindEnum = builder.enumType(ProviderKind, { name: 'ProviderKind' });
  const RouteStrategyEnum = builder.enumType(RouteStrategy, { name: 'RouteStrategy' });
  const CacheModeEnum = builder.enumType(CacheMode, { name: 'CacheMode' });

  const Provider = builder.prismaObject('Provider', {
    select: { id: true },
    fields: (t) => ({
      id: t.exposeID('id'),
      name: t.exposeString('name'),
      kind: t.expose('kind', { type: ProviderKindEnum }),
      baseUrl: t.string({
        nullable: true,
        description: 'Credentials inside the URL (user:password@, ?key=…) are masked.',
        select: { baseUrl: true },
        resolve: (p) => redactUrl(p.baseUrl),
      }),
      timeoutMs: t.exposeInt('timeoutMs', { nullable: true }),
      hasApiKey: t.boolean({
        description: 'Whether an upstream API key is stored (it is never returned).',
        // Read server-side only when this field is asked for; only the boolean leaves.
        select: { apiKeyCiphertext: true },
        resolve: (p) => p.apiKeyCiphertext !== null,
      }),
      createdAt: t.expose('createdAt', { type: 'DateTime' }),
      updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
    }),
  });

  const CachePolicy = builder.objectRef<CachePolicyRecord>('CachePolicy');
  CachePolicy.implement({
    fields: (t) => ({
      mode: t.field({ type: CacheModeEnum, resolve: (c) => c.mode }),
      ttlSeconds: t.exposeInt('ttlSeconds', { nullable: true }),
      similarityThreshold: t.exposeFloat('similarityThreshold', { nullable: true }),
      embeddingModel: t.exposeString('embeddingModel', { nullable: true, description: 'SEMANTIC: the embeddings route or provider/model; null = the local embedder.' }),
      cacheSampled: t.exposeBoolean('cacheSampled', { description: 'Answers to sampled requests (temperature > 0 without seed, n > 1) are cached too.' }),
      cacheToolCalls: t.exposeBoolean('cacheToolCalls', { description: 'Answers that call tools are cached too.' }),
    }),
  });

  builder.prismaObject('RouteTarget', {
    fields: (t) => ({
      provider: t.exposeString('providerName', { description: 'Provider name.' }),
      model: t.exposeString('model'),
      weight: t.exposeFloat('weight'),
      priority: t.exposeInt('priority'),
    }),
  });

  const Route = builder.prismaObject('Route', {
    fields: (t) => ({
      id: t.exposeID('id'),
      name: t.exposeString('name'),
      strategy: t.expose('strategy', { type: RouteStrategyEnum }),
      retries: t.exposeInt('retries'),
      timeoutMs: t.exposeInt('timeoutMs', { nullable: true }),
      cache: t.field({
        type: CachePolicy,
        resolve: (r) => cachePolicyOf(r),
      }),
      targets: t.relation('targets', { description: 'In the order given.', query: { orderBy: { position: 'asc' } } }),
      createdAt: t.expose('createdAt', { type: 'DateTime' }),
      updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
    }),
  });

  const ProviderInput = builder.inputType('ProviderInput', {
    fields: (t) => ({
      name: t.string({ required: true }),
      kind: t.field({ type: ProviderKindEnum, required: true }),
      baseUrl: t.string({ description: 'Omitted: keep the stored value; null: clear it.' }),
      apiKey: t.string({ description: 'Write-only. Omitted: keep the stored key; null: remove it.' }),
      timeoutMs: t.int({ description: 'Omitted: keep the stored value; null: clear it.' }),
    }),
  });

  const RouteTargetInput = builder.inputType('RouteTargetInput', {
    fields: (t) => ({
      provider: t.string({ required: true }),
      model: t.string({ required: true }),
      weight: t.float(),
      priority: t.int(),
    }),
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

  const RouteInput = builder.inputType('RouteInput', {
    description: 'A route is replaced whole: absent fields take their defaults (retries 1, cache OFF).',
    fields: (t) => ({
      name: t.string({ required: true }),
      strategy: t.field({ type: RouteStrategyEnum, required: true }),
      targets: t.field({ type: [RouteTargetInput], required: true }),
      retries: t.int(),
      timeoutMs: t.int(),
      cache: t.field({ type: CachePolicyInput }),
    }),
  });

  builder.queryFields((t) => ({
    providers: t.prismaField({
      type: [Provider],
      authScopes: { authenticated: true },
      resolve: (query, _root, _args, ctx) => ctx.prisma.provider.findMany({ ...query, orderBy: { name: 'asc' } }),
    }),
    routes: t.prismaField({
      type: [Route],
      authScopes: { authenticated: true },
      resolve: (query, _root, _args, ctx) => ctx.prisma.route.findMany({ ...query, orderBy: { name: 'asc' } }),
    }),
  }));

  builder.mutationFields((t) => ({
    upsertProvider: t.prismaField({
      type: Provider,
      authScopes: { globalAdmin: true },
      args: { input: t.arg({ type: ProviderInput, required: true }) },
      resolve: async (query, _root, { input }, ctx) => {
        // Keys left out of the input stay out (keep the stored value); explicit nulls clear.
        const provider = await store(() =>
          ctx.admin.providers.upsertProvider({
            name: input.name,
            kind: input.kind,
            ...('baseUrl' in input ? { baseUrl: input.baseUrl } : {}),
            ...('apiKey' in input ? { apiKey: input.apiKey } : {}),
            ...('timeoutMs' in input ? { timeoutMs: input.timeoutMs } : {}),
          }),
        );
        await ctx.configChanged();
        return ctx.prisma.provider.findUniqueOrThrow({ ...query, where: { id: provider.id } });
      },
    }),
    upsertRoute: t.prismaField({
      type: Route,
      authScopes: { globalAdmin: true },
      args: { input: t.arg({ type: RouteInput, required: true }) },
      resolve: async (query, _root, { input }, ctx) => {
        const route = await store(() =>
          ctx.admin.routing.upsertRoute({
            name: input.name,
            strategy: input.strategy,
            targets: input.targets.map((tg) => ({
              provider: tg.provider,
              model: tg.model,
              weight: tg.weight ?? undefined,
              priority: tg.priority ?? undefined,
            })),
            retries: input.retries,
            timeoutMs: input.timeoutMs,
            cache: input.cache,
          }),
        );
        await ctx.configChanged();
        return ctx.prisma.route.findUniqueOrThrow({ ...query, where: { id: route.id } });
      },
    }),
  }));
}
