// Analytics over receipts (DESIGN §8): usage, costPerTask, latency, cacheStats, timeSeries,
// experimentResults (the receipts themselves: receipts.ts). The queries live in src/analytics
// (parameterized SQL); this file maps them to GraphQL. Every field needs a valid token
// (ADMIN or ANALYST); a team-bound token only ever sees its own team.
import type { GraphQLResolveInfo, SelectionSetNode } from 'graphql';
import {
  type AnalyticsFilter,
  type CacheRow,
  cacheStats,
  costPerTask,
  DIMENSIONS,
  experimentResults,
  type GroupKey,
  INTERVALS,
  type LatencyRow,
  latency,
  RECEIPT_STATUSES,
  type TaskCostRow,
  type TimeBucket,
  timeSeries,
  type UsageRow,
  usage,
  type VariantResult,
} from '../../analytics/index.js';
import type { Builder } from '../builder.js';
import { store } from './errors.js';
import { loadTeam } from './teams.js';

/** The GraphQL AnalyticsFilter input as the analytics queries take it. */
export const toFilter = (f: {
  from: Date;
  to: Date;
  teamIds?: Array<string | number> | null;
  features?: string[] | null;
  models?: string[] | null;
  providers?: string[] | null;
  routes?: string[] | null;
  apiKeyIds?: Array<string | number> | null;
  endUsers?: string[] | null;
  statuses?: Array<(typeof RECEIPT_STATUSES)[number]> | null;
  taskTypes?: string[] | null;
  rules?: string[] | null;
  experiments?: string[] | null;
  variants?: string[] | null;
}): AnalyticsFilter => ({
  from: f.from,
  to: f.to,
  teamIds: f.teamIds?.map(String) ?? null,
  features: f.features ?? null,
  models: f.models ?? null,
  providers: f.providers ?? null,
  routes: f.routes ?? null,
  apiKeyIds: f.apiKeyIds?.map(String) ?? null,
  endUsers: f.endUsers ?? null,
  statuses: f.statuses ?? null,
  taskTypes: f.taskTypes ?? null,
  rules: f.rules ?? null,
  experiments: f.experiments ?? null,
  variants: f.variants ?? null,
});

/**
 * Whether the query selects `field` on the objects this resolver returns (directly, or in an
 * inline fragment or a named fragment). Lets a question skip work nobody asked for.
 */
function selectsField(info: GraphQLResolveInfo, field: string): boolean {
  const visit = (set: SelectionSetNode | undefined, seen: Set<string>): boolean =>
    (set?.selections ?? []).some((s) => {
      if (s.kind === 'Field') return s.name.value === field;
      if (s.kind === 'InlineFragment') return visit(s.selectionSet, seen);
      const name = s.name.value;
      if (seen.has(name)) return false;
      seen.add(name);
      return visit(info.fragments[name]?.selectionSet, seen);
    });
  return info.fieldNodes.some((node) => visit(node.selectionSet, new Set()));
}

/**
 * The root query fields defined here: they resolve plain rows (no Prisma-backed types), so
 * their operations may run compiled (src/graphql/jit.ts).
 */
export const ANALYTICS_QUERY_FIELDS: ReadonlySet<string> = new Set(['usage', 'costPerTask', 'latency', 'cacheStats', 'timeSeries', 'experimentResults']);

export function registerAnalytics(builder: Builder) {
  const Dimension = builder.enumType('Dimension', { values: DIMENSIONS });
  const Interval = builder.enumType('Interval', { values: INTERVALS });
  const ReceiptStatus = builder.enumType('ReceiptStatus', { values: RECEIPT_STATUSES });

  const AnalyticsFilterInput = builder.inputType('AnalyticsFilter', {
    fields: (t) => ({
      from: t.field({ type: 'DateTime', required: true, description: 'Inclusive start' }),
      to: t.field({ type: 'DateTime', required: true, description: 'Exclusive end' }),
      teamIds: t.idList({ required: false }),
      features: t.stringList({ required: false }),
      models: t.stringList({ required: false }),
      providers: t.stringList({ required: false }),
      routes: t.stringList({ required: false }),
      apiKeyIds: t.idList({ required: false }),
      endUsers: t.stringList({ required: false }),
      statuses: t.field({ type: [ReceiptStatus], required: false }),
      taskTypes: t.stringList({ required: false }),
      rules: t.stringList({ required: false, description: 'Routing rules that decided' }),
      experiments: t.stringList({ required: false }),
      variants: t.stringList({ required: false, description: 'Bare variant names' }),
    }),
  });

  const GroupTeam = builder.objectRef<{ id: string; name: string }>('GroupTeam');
  GroupTeam.implement({
    description: 'The team of a group (id and name).',
    fields: (t) => ({ id: t.exposeID('id'), name: t.exposeString('name') }),
  });

  const GroupKeyRef = builder.objectRef<GroupKey>('GroupKey');
  GroupKeyRef.implement({
    description: 'The values of the grouped dimensions; dimensions not grouped by are null.',
    fields: (t) => ({
      model: t.exposeString('model', { nullable: true }),
      provider: t.exposeString('provider', { nullable: true }),
      route: t.exposeString('route', { nullable: true }),
      teamId: t.exposeID('teamId', { nullable: true }),
      team: t.field({
        type: GroupTeam,
        nullable: true,
        // A failed read is the field's error, mapped like every admin read (503 when the store is down).
        resolve: (k, _args, ctx) => {
          const teamId = k.teamId;
          return teamId ? store(() => loadTeam(ctx, teamId)) : null;
        },
      }),
      feature: t.exposeString('feature', { nullable: true }),
      apiKeyId: t.exposeID('apiKeyId', { nullable: true }),
      endUser: t.exposeString('endUser', { nullable: true }),
      status: t.exposeString('status', { nullable: true }),
      cacheStatus: t.exposeString('cacheStatus', { nullable: true }),
      taskType: t.exposeString('taskType', { nullable: true }),
      rule: t.exposeString('rule', { nullable: true }),
      experiment: t.exposeString('experiment', { nullable: true }),
      variant: t.exposeString('variant', { nullable: true }),
    }),
  });

  const UsageRowRef = builder.objectRef<UsageRow>('UsageRow');
  UsageRowRef.implement({
    fields: (t) => ({
      key: t.expose('key', { type: GroupKeyRef }),
      requests: t.exposeInt('requests'),
      errors: t.exposeInt('errors', { description: 'Receipts whose status is not ok' }),
      promptTokens: t.exposeFloat('promptTokens'),
      completionTokens: t.exposeFloat('completionTokens'),
      cachedTokens: t.exposeFloat('cachedTokens'),
      reasoningTokens: t.float({
        description: 'The reasoning part of completionTokens',
        resolve: (r) => {
          // The usage resolver asks for them whenever this field is selected.
          if (r.reasoningTokens === null) throw new Error('reasoningTokens was not computed');
          return r.reasoningTokens;
        },
      }),
      costUsd: t.exposeFloat('costUsd', { description: 'Cost of the priced requests; see unpricedRequests' }),
      unpricedRequests: t.exposeInt('unpricedRequests', { description: 'Requests without a price: not in costUsd' }),
    }),
  });

  const TaskCostRowRef = builder.objectRef<TaskCostRow>('TaskCostRow');
  TaskCostRowRef.implement({
    fields: (t) => ({
      key: t.expose('key', { type: GroupKeyRef }),
      tasks: t.exposeInt('tasks'),
      succeededTasks: t.exposeInt('succeededTasks'),
      failedTasks: t.exposeInt('failedTasks'),
      requests: t.exposeInt('requests'),
      costUsd: t.exposeFloat('costUsd'),
      unpricedRequests: t.exposeInt('unpricedRequests'),
      costPerTaskUsd: t.exposeFloat('costPerTaskUsd', { nullable: true }),
      costPerSucceededTaskUsd: t.exposeFloat('costPerSucceededTaskUsd', { nullable: true }),
    }),
  });

  const LatencyRowRef = builder.objectRef<LatencyRow>('LatencyRow');
  LatencyRowRef.implement({
    fields: (t) => ({
      key: t.expose('key', { type: GroupKeyRef }),
      requests: t.exposeInt('requests'),
      p50Ms: t.exposeFloat('p50Ms', { nullable: true }),
      p90Ms: t.exposeFloat('p90Ms', { nullable: true }),
      p95Ms: t.exposeFloat('p95Ms', { nullable: true }),
      p99Ms: t.exposeFloat('p99Ms', { nullable: true }),
      ttftP50Ms: t.exposeFloat('ttftP50Ms', { nullable: true }),
      ttftP95Ms: t.exposeFloat('ttftP95Ms', { nullable: true }),
      ttftP99Ms: t.exposeFloat('ttftP99Ms', { nullable: true }),
      overheadP50Ms: t.exposeFloat('overheadP50Ms', { nullable: true }),
      overheadP99Ms: t.exposeFloat('overheadP99Ms', { nullable: true }),
      exact: t.boolean({ description: 'Exact percentiles (below 10k requests), else from a sketch, within 2 %', resolve: (r) => r.method === 'exact' }),
    }),
  });

  const CacheRowRef = builder.objectRef<CacheRow>('CacheRow');
  CacheRowRef.implement({
    fields: (t) => ({
      key: t.expose('key', { type: GroupKeyRef }),
      requests: t.exposeInt('requests'),
      hits: t.exposeInt('hits'),
      exactHits: t.exposeInt('exactHits'),
      semanticHits: t.exposeInt('semanticHits'),
      hitRate: t.exposeFloat('hitRate'),
      savedCostUsd: t.exposeFloat('savedCostUsd'),
    }),
  });

  const TimeBucketRef = builder.objectRef<TimeBucket>('TimeBucket');
  TimeBucketRef.implement({
    fields: (t) => ({
      start: t.expose('start', { type: 'DateTime' }),
      key: t.expose('key', { type: GroupKeyRef }),
      requests: t.exposeInt('requests'),
      errors: t.exposeInt('errors'),
      promptTokens: t.exposeFloat('promptTokens'),
      completionTokens: t.exposeFloat('completionTokens'),
      costUsd: t.exposeFloat('costUsd'),
      unpricedRequests: t.exposeInt('unpricedRequests'),
      cacheHits: t.exposeInt('cacheHits'),
    }),
  });

  const VariantResultRef = builder.objectRef<VariantResult>('VariantResult');
  VariantResultRef.implement({
    description: "One variant of an experiment over the filter's window.",
    fields: (t) => ({
      variant: t.exposeString('variant'),
      requests: t.exposeInt('requests'),
      errorRate: t.exposeFloat('errorRate', { description: 'Receipts whose status is not ok, over requests' }),
      p50Ms: t.exposeFloat('p50Ms', { nullable: true }),
      p95Ms: t.exposeFloat('p95Ms', { nullable: true }),
      costUsd: t.exposeFloat('costUsd'),
      tasks: t.exposeInt('tasks'),
      succeededTasks: t.exposeInt('succeededTasks'),
      successRate: t.exposeFloat('successRate', { nullable: true }),
      successRateLow: t.exposeFloat('successRateLow', { nullable: true, description: '95 % Wilson score interval, low end' }),
      successRateHigh: t.exposeFloat('successRateHigh', { nullable: true, description: '95 % Wilson score interval, high end' }),
      costPerSucceededTaskUsd: t.exposeFloat('costPerSucceededTaskUsd', { nullable: true }),
    }),
  });

  builder.queryFields((t) => ({
    usage: t.field({
      type: [UsageRowRef],
      authScopes: { authenticated: true },
      args: { filter: t.arg({ type: AnalyticsFilterInput, required: true }), groupBy: t.arg({ type: [Dimension], required: false }) },
      resolve: (_root, args, ctx, info) => usage(ctx, toFilter(args.filter), args.groupBy, { reasoningTokens: selectsField(info, 'reasoningTokens') }),
    }),
    costPerTask: t.field({
      type: [TaskCostRowRef],
      authScopes: { authenticated: true },
      args: { filter: t.arg({ type: AnalyticsFilterInput, required: true }), groupBy: t.arg({ type: [Dimension], required: false }) },
      resolve: (_root, args, ctx) => costPerTask(ctx, toFilter(args.filter), args.groupBy),
    }),
    latency: t.field({
      type: [LatencyRowRef],
      authScopes: { authenticated: true },
      args: { filter: t.arg({ type: AnalyticsFilterInput, required: true }), groupBy: t.arg({ type: [Dimension], required: false }) },
      resolve: (_root, args, ctx) => latency(ctx, toFilter(args.filter), args.groupBy),
    }),
    cacheStats: t.field({
      type: [CacheRowRef],
      authScopes: { authenticated: true },
      args: { filter: t.arg({ type: AnalyticsFilterInput, required: true }), groupBy: t.arg({ type: [Dimension], required: false }) },
      resolve: (_root, args, ctx) => cacheStats(ctx, toFilter(args.filter), args.groupBy),
    }),
    timeSeries: t.field({
      type: [TimeBucketRef],
      authScopes: { authenticated: true },
      args: {
        filter: t.arg({ type: AnalyticsFilterInput, required: true }),
        interval: t.arg({ type: Interval, required: true }),
        groupBy: t.arg({ type: [Dimension], required: false }),
      },
      resolve: (_root, args, ctx) => timeSeries(ctx, toFilter(args.filter), args.interval, args.groupBy),
    }),
    experimentResults: t.field({
      type: [VariantResultRef],
      authScopes: { authenticated: true },
      description: "Each variant of the experiment over the filter's window (its receipts only)",
      args: { name: t.arg.string({ required: true }), filter: t.arg({ type: AnalyticsFilterInput, required: true }) },
      resolve: (_root, args, ctx) => experimentResults(ctx, args.name, toFilter(args.filter)),
    }),
  }));
  return { AnalyticsFilterInput, ReceiptStatus };
}
