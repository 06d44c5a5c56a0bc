// Routes (with their rules and acceptance checks) and experiments (GraphQL:
// src/graphql/schema/routing.ts). Upserts replace the object of the same name whole. Every
// change is validated against the whole routing configuration inside its transaction
// (src/routing/validate.ts): a change that would leave it broken is refused, with the field
// named, and rolled back, so the running catalog never sees it.
import { z } from 'zod';
import { type RoutingProblem, validateRouting } from '../../routing/validate.js';
import { AcceptCheck, CacheMode, type Prisma, type PrismaClient, RouteStrategy, StickyBy } from '../prisma.js';
import { AdminStoreError, advisoryLock, LOCKS, label, type Mutations, modelName, parse, positiveInt, slug, type Tx } from './validators.js';

export interface RouteTargetRecord {
  provider: string;
  model: string;
  weight: number;
  priority: number;
}

export interface CachePolicyRecord {
  mode: CacheMode;
  ttlSeconds: number | null;
  similarityThreshold: number | null;
  /** SEMANTIC: a route or provider/model serving /v1/embeddings; null = the local embedder. */
  embeddingModel: string | null;
  /** Cache answers to sampled requests (temperature > 0 without a seed, n > 1). */
  cacheSampled: boolean;
  /** Cache answers that call tools. */
  cacheToolCalls: boolean;
}

export interface RouteRuleRecord {
  name: string;
  /** CEL over the request (DESIGN §5). */
  when: string;
  targets: RouteTargetRecord[] | null;
  route: string | null;
}

export interface RouteRecord {
  id: string;
  name: string;
  strategy: RouteStrategy;
  retries: number;
  timeoutMs: number | null;
  cache: CachePolicyRecord;
  /** In the order given (position). */
  targets: RouteTargetRecord[];
  /** In order: the first whose `when` holds decides. */
  rules: RouteRuleRecord[];
  /** CASCADE: the checks an answer must pass. */
  accept: AcceptCheck[];
  createdAt: Date;
  updatedAt: Date;
}

export interface VariantRecord {
  name: string;
  weight: number;
  /** Replaces the route's targets and rules; neither this nor `route`: the control. */
  targets: RouteTargetRecord[] | null;
  route: string | null;
}

export interface ExperimentRecord {
  id: string;
  name: string;
  route: string;
  stickyBy: StickyBy;
  active: boolean;
  variants: VariantRecord[];
  createdAt: Date;
  updatedAt: Date;
}

const targetInput = z.object({
  provider: slug,
  model: modelName,
  weight: z.number().nonnegative().max(1e6).nullish(),
  priority: z.number().int().min(-1_000_000).max(1_000_000).nullish(),
});
const targetsInput = z.array(targetInput).max(64);

const upsertRouteInput = z.object({
  name: slug,
  strategy: z.enum(RouteStrategy),
  targets: targetsInput.min(1),
  retries: z.number().int().min(0).max(10).nullish(),
  timeoutMs: positiveInt.nullish(),
  cache: z
    .object({
      mode: z.enum(CacheMode),
      ttlSeconds: positiveInt.nullish(),
      similarityThreshold: z.number().min(0).max(1).nullish(),
      embeddingModel: modelName.nullish(),
      cacheSampled: z.boolean().nullish(),
      cacheToolCalls: z.boolean().nullish(),
    })
    .nullish(),
  rules: z
    .array(
      z.object({
        name: label,
        when: z
          .string()
          .max(4096)
          .refine((w) => !w.includes('\u0000'), 'must not contain NUL characters'),
        targets: targetsInput.nullish(),
        route: slug.nullish(),
      }),
    )
    .max(1000)
    .nullish(),
  accept: z.array(z.enum(AcceptCheck)).max(8).nullish(),
});
/** A route is replaced whole: absent fields take their defaults (retries 1, cache OFF, no rules). */
export type UpsertRouteInput = z.input<typeof upsertRouteInput>;

const upsertExperimentInput = z.object({
  name: slug,
  route: slug,
  stickyBy: z.enum(StickyBy),
  active: z.boolean().nullish(),
  variants: z
    .array(z.object({ name: slug, weight: z.number().nonnegative().max(1e6), targets: targetsInput.nullish(), route: slug.nullish() }))
    .min(1)
    .max(32),
});
export type UpsertExperimentInput = z.input<typeof upsertExperimentInput>;

type RouteRow = Prisma.RouteGetPayload<{ include: { targets: true } }>;
type ExperimentRow = Prisma.ExperimentGetPayload<object>;

const withTargets = { targets: { orderBy: { position: 'asc' as const } } };

export class RoutingStore {
  private readonly prisma: PrismaClient;

  constructor(private readonly mutations: Mutations) {
    this.prisma = mutations.prisma;
  }

  /** Creates or replaces a route, its targets and rules atomically; refused if it breaks the configuration. */
  async upsertRoute(input: UpsertRouteInput): Promise<RouteRecord> {
    const p = parse(upsertRouteInput, input);
    const row = await this.mutations.run('upsertRoute', async (tx, audit) => {
      await lockRouting(tx);
      const before = await tx.route.findUnique({ where: { name: p.name }, include: withTargets });
      const route = await writeRoute(tx, p);
      await assertValid(tx, { route: p.name });
      audit.change(`route:${p.name}`, null, before && toRoute(before), toRoute(route));
      return route;
    });
    return toRoute(row);
  }

  async listRoutes(): Promise<RouteRecord[]> {
    return (await this.prisma.route.findMany({ orderBy: { name: 'asc' }, include: withTargets })).map(toRoute);
  }

  /** Creates or replaces an experiment; refused if it breaks the configuration. */
  async upsertExperiment(input: UpsertExperimentInput): Promise<ExperimentRecord> {
    const p = parse(upsertExperimentInput, input);
    const row = await this.mutations.run('upsertExperiment', async (tx, audit) => {
      await lockRouting(tx);
      const before = await tx.experiment.findUnique({ where: { name: p.name } });
      const experiment = await writeExperiment(tx, p);
      await assertValid(tx, { experiment: p.name });
      audit.change(`experiment:${p.name}`, null, before && toExperiment(before), toExperiment(experiment));
      return experiment;
    });
    return toExperiment(row);
  }

  /** False when there was no such experiment. */
  async deleteExperiment(name: string): Promise<boolean> {
    const n = parse(slug, name);
    return this.mutations.run('deleteExperiment', async (tx, audit) => {
      await lockRouting(tx);
      const before = await tx.experiment.findUnique({ where: { name: n } });
      if (!before) return false;
      await tx.experiment.delete({ where: { name: n } });
      audit.change(`experiment:${n}`, null, toExperiment(before), null);
      return true;
    });
  }

  async listExperiments(): Promise<ExperimentRecord[]> {
    return (await this.prisma.experiment.findMany({ orderBy: { name: 'asc' } })).map(toExperiment);
  }

  /**
   * Several routes and experiments at once, as one change (a declarative file, DESIGN §5):
   * names may refer to anything in the same batch, and the batch lands whole or not at all.
   */
  async applyRouting(batch: { routes: UpsertRouteInput[]; experiments: UpsertExperimentInput[] }): Promise<void> {
    const routes = batch.routes.map((r, i) => parseAt(upsertRouteInput, r, `routes[${i}]`));
    const experiments = batch.experiments.map((e, i) => parseAt(upsertExperimentInput, e, `experiments[${i}]`));
    if (routes.length === 0 && experiments.length === 0) return;
    await this.mutations.run('applyRouting', async (tx, audit) => {
      await lockRouting(tx);
      const written = [];
      for (const r of routes) written.push(toRoute(await writeRoute(tx, r)));
      const trials = [];
      for (const e of experiments) trials.push(toExperiment(await writeExperiment(tx, e)));
      await assertValid(tx, { written: routes.map((r) => r.name) });
      audit.change('routing', null, null, { routes: written, experiments: trials });
    });
  }
}

/**
 * Routing writes one at a time. Each validates the whole configuration as its transaction sees
 * it (READ COMMITTED): two at once (A's rule to B, B's to A; two experiments made active on one
 * route) could each pass and together commit what neither check allows.
 */
const lockRouting = (tx: Tx) => advisoryLock(tx, LOCKS.routing);

function parseAt<T extends z.ZodType>(schema: T, input: unknown, at: string): z.output<T> {
  try {
    return parse(schema, input);
  } catch (err) {
    if (err instanceof AdminStoreError) throw new AdminStoreError('INVALID_INPUT', `${at}.${err.message}`);
    throw err;
  }
}

async function writeRoute(tx: Tx, p: z.output<typeof upsertRouteInput>): Promise<RouteRow> {
  const fields = {
    strategy: p.strategy,
    retries: p.retries ?? 1,
    timeoutMs: p.timeoutMs ?? null,
    cacheMode: p.cache?.mode ?? CacheMode.OFF,
    cacheTtlSeconds: p.cache?.ttlSeconds ?? null,
    cacheSimilarityThreshold: p.cache?.similarityThreshold ?? null,
    cacheEmbeddingModel: p.cache?.embeddingModel ?? null,
    cacheSampled: p.cache?.cacheSampled ?? false,
    cacheToolCalls: p.cache?.cacheToolCalls ?? false,
    rules: (p.rules ?? []).map((r) => ({
      name: r.name,
      when: r.when,
      targets: r.targets?.length ? r.targets.map(targetRecord) : null,
      route: r.route ?? null,
    })) as unknown as Prisma.InputJsonArray,
    accept: [...new Set(p.accept ?? [])],
  };
  const route = await tx.route.upsert({ where: { name: p.name }, create: { name: p.name, ...fields }, update: fields });
  await tx.routeTarget.deleteMany({ where: { routeId: route.id } });
  await tx.routeTarget.createMany({
    data: p.targets.map((t, position) => ({
      routeId: route.id,
      providerName: t.provider,
      model: t.model,
      weight: t.weight ?? 1,
      priority: t.priority ?? 0,
      position,
    })),
  });
  return tx.route.findUniqueOrThrow({ where: { id: route.id }, include: withTargets });
}

async function writeExperiment(tx: Tx, p: z.output<typeof upsertExperimentInput>): Promise<ExperimentRow> {
  const fields = {
    route: p.route,
    stickyBy: p.stickyBy,
    active: p.active ?? true,
    variants: p.variants.map((v) => ({
      name: v.name,
      weight: v.weight,
      targets: v.targets?.length ? v.targets.map(targetRecord) : null,
      route: v.route ?? null,
    })) as unknown as Prisma.InputJsonArray,
  };
  return tx.experiment.upsert({ where: { name: p.name }, create: { name: p.name, ...fields }, update: fields });
}

function targetRecord(t: z.output<typeof targetInput>): RouteTargetRecord {
  return { provider: t.provider, model: t.model, weight: t.weight ?? 1, priority: t.priority ?? 0 };
}

/** Validates the configuration as the transaction sees it; throws INVALID_INPUT naming the field. */
async function assertValid(tx: Tx, focus?: { route?: string; experiment?: string; written?: readonly string[] }): Promise<void> {
  const [providers, routes, experiments] = await Promise.all([
    tx.provider.findMany({ select: { name: true } }),
    tx.route.findMany({ include: withTargets }),
    tx.experiment.findMany(),
  ]);
  const problem = validateRouting(
    { providers: new Set(providers.map((p) => p.name)), routes: routes.map(toRoute), experiments: experiments.map(toExperiment) },
    focus,
  );
  if (problem) throw new AdminStoreError('INVALID_INPUT', describe(problem, focus));
}

/** `rules[1].when: …` for the object being saved; other objects are named. */
function describe(problem: RoutingProblem, focus?: { route?: string; experiment?: string }): string {
  const focused = problem.subject === `route ${focus?.route}` || problem.subject === `experiment ${focus?.experiment}`;
  return focused ? `${problem.path}: ${problem.message}` : `${problem.subject}: ${problem.path}: ${problem.message}`;
}

function toRoute(r: RouteRow): RouteRecord {
  return {
    id: r.id,
    name: r.name,
    strategy: r.strategy,
    retries: r.retries,
    timeoutMs: r.timeoutMs,
    cache: cachePolicyOf(r),
    targets: [...r.targets]
      .sort((a, b) => a.position - b.position)
      .map((t) => ({ provider: t.providerName, model: t.model, weight: t.weight, priority: t.priority })),
    rules: Array.isArray(r.rules) ? (r.rules as unknown as RouteRuleRecord[]) : [],
    accept: r.accept ?? [],
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
  };
}

function toExperiment(r: ExperimentRow): ExperimentRecord {
  return {
    id: r.id,
    name: r.name,
    route: r.route,
    stickyBy: r.stickyBy,
    active: r.active,
    variants: Array.isArray(r.variants) ? (r.variants as unknown as VariantRecord[]) : [],
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
  };
}

/** A Route row's cache columns as one policy (the GraphQL Route type reads the same). */
export function cachePolicyOf(r: Prisma.RouteGetPayload<object>): CachePolicyRecord {
  return {
    mode: r.cacheMode,
    ttlSeconds: r.cacheTtlSeconds,
    similarityThreshold: r.cacheSimilarityThreshold,
    embeddingModel: r.cacheEmbeddingModel,
    cacheSampled: r.cacheSampled,
    cacheToolCalls: r.cacheToolCalls,
  };
}
