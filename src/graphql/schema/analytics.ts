// Analytics over receipts (DESIGN §8): usage, costPerTask, latency, cacheStats, timeSeries,
// experimentResults, receipts, receipt, verifyReceipt. The queries live in src/analytics
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
  type ReceiptConnection,
  type ReceiptVerification,
  receipt,
  receipts,
  type TaskCostRow,
  type TimeBucket,
  timeSeries,
  type UsageRow,
  usage,
  type VariantResult,
  verifyReceipt,
} from '../../analytics/index.js';
import type { Attempt, Receipt } from '../../receipts/receipt.js';
import type { Builder } from '../builder.js';
import type { GraphQLContext } from '../context.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

interface TeamInfo {
  id: string;
  name: string;
}

/**
 * Per-request batching of team lookups: every GroupKey.team resolved in the same tick is
 * answered by ONE prisma query (no N+1). Cached per context object.
 */
class TeamBatcher {
  private pending = new Map<string, Array<(t: TeamInfo | null) => void>>();
  private cache = new Map<string, Promise<TeamInfo | null>>();
  private scheduled = false;
  /** Number of queries issued (for tests and diagnostics). */
  queries = 0;

  constructor(private readonly ctx: GraphQLContext) {}

  load(id: string): Promise<TeamInfo | null> {
    const cached = this.cache.get(id);
    if (cached) return cached;
    const p = new Promise<TeamInfo | null>((resolve) => {
      const list = this.pending.get(id) ?? [];
      list.push(resolve);
      this.pending.set(id, list);
    });
    this.cache.set(id, p);
    if (!this.scheduled) {
      this.scheduled = true;
      // After the current resolver wave (all sibling rows) has asked.
      setImmediate(() => void this.flush());
    }
    return p;
  }

  private async flush(): Promise<void> {
    const batch = this.pending;
    this.pending = new Map();
    this.scheduled = false;
    const ids = [...batch.keys()].filter((id) => UUID.test(id));
    let found = new Map<string, TeamInfo>();
    try {
      if (ids.length > 0) {
        this.queries++;
        const rows = await this.ctx.prisma.team.findMany({ where: { id: { in: ids } }, select: { id: true, name: true } });
        found = new Map(rows.map((r) => [r.id, r]));
      }
    } catch {
      found = new Map();
    }
    for (const [id, resolvers] of batch) for (const r of resolvers) r(found.get(id) ?? null);
  }
}

const batchers = new WeakMap<object, TeamBatcher>();
export function teamBatcher(ctx: GraphQLContext): TeamBatcher {
  let b = batchers.get(ctx);
  if (!b) batchers.set(ctx, (b = new TeamBatcher(ctx)));
  return b;
}

const STATUS_UPPER = (s: string) => s.toUpperCase() as (typeof RECEIPT_STATUSES)[number];

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

  const GroupTeam = builder.objectRef<TeamInfo>('GroupTeam');
  GroupTeam.implement({
    description: 'The team of a group (id and name).',
    fields: (t) => ({ id: t.exposeID('id'), name: t.exposeString('name') }),
  });

  const GroupKeyRef = builder.objectRef<GroupKey>('GroupKey');
  GroupKeyRef.implement({
    description: 'The values of the grouped dimensions; dimensions not grouped by are null.',
    fields: (t) => ({
      model: t.string({ nullable: true, resolve: (k) => k.model ?? null }),
      provider: t.string({ nullable: true, resolve: (k) => k.provider ?? null }),
      route: t.string({ nullable: true, resolve: (k) => k.route ?? null }),
      teamId: t.id({ nullable: true, resolve: (k) => k.teamId ?? null }),
      team: t.field({
        type: GroupTeam,
        nullable: true,
        resolve: (k, _args, ctx) => (k.teamId ? teamBatcher(ctx).load(k.teamId) : null),
      }),
      feature: t.string({ nullable: true, resolve: (k) => k.feature ?? null }),
      apiKeyId: t.id({ nullable: true, resolve: (k) => k.apiKeyId ?? null }),
      endUser: t.string({ nullable: true, resolve: (k) => k.endUser ?? null }),
      status: t.string({ nullable: true, resolve: (k) => k.status ?? null }),
      cacheStatus: t.string({ nullable: true, resolve: (k) => k.cacheStatus ?? null }),
      taskType: t.string({ nullable: true, resolve: (k) => k.taskType ?? null }),
      rule: t.string({ nullable: true, resolve: (k) => k.rule ?? null }),
      experiment: t.string({ nullable: true, resolve: (k) => k.experiment ?? null }),
      variant: t.string({ nullable: true, resolve: (k) => k.variant ?? null }),
    }),
  });

  const UsageRowRef = builder.objectRef<UsageRow>('UsageRow');
  UsageRowRef.implement({
    fields: (t) => ({
      key: t.field({ type: GroupKeyRef, resolve: (r) => r.key }),
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
      key: t.field({ type: GroupKeyRef, resolve: (r) => r.key }),
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
      key: t.field({ type: GroupKeyRef, resolve: (r) => r.key }),
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
      key: t.field({ type: GroupKeyRef, resolve: (r) => r.key }),
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
      start: t.field({ type: 'DateTime', resolve: (b) => b.start }),
      key: t.field({ type: GroupKeyRef, resolve: (b) => b.key }),
      requests: t.exposeInt('requests'),
      errors: t.exposeInt('errors'),
      promptTokens: t.exposeFloat('promptTokens'),
      completionTokens: t.exposeFloat('completionTokens'),
      costUsd: t.exposeFloat('costUsd'),
      unpricedRequests: t.exposeInt('unpricedRequests'),
      cacheHits: t.exposeInt('cacheHits'),
    }),
  });

  const AttemptRef = builder.objectRef<Attempt>('Attempt');
  AttemptRef.implement({
    fields: (t) => ({
      provider: t.exposeString('provider'),
      model: t.exposeString('model'),
      status: t.exposeInt('status', { description: 'Upstream HTTP status, 0 when it never answered' }),
      error: t.exposeString('error', { nullable: true }),
      latencyMs: t.float({ resolve: (a) => a.latency_ms }),
      // Receipt version 2 on; null on version 1 receipts.
      promptTokens: t.int({ nullable: true, resolve: (a) => a.prompt_tokens ?? null }),
      completionTokens: t.int({ nullable: true, resolve: (a) => a.completion_tokens ?? null }),
      costUsd: t.float({ nullable: true, resolve: (a) => a.cost_usd ?? null }),
      accepted: t.boolean({ nullable: true, description: 'CASCADE: whether this answer passed the acceptance checks', resolve: (a) => a.accepted ?? null }),
      rejectReason: t.string({ nullable: true, description: 'CASCADE: why the answer was not accepted', resolve: (a) => a.reject_reason ?? null }),
    }),
  });

  const ReceiptRef = builder.objectRef<Receipt>('Receipt');
  ReceiptRef.implement({
    fields: (t) => ({
      receiptId: t.id({ resolve: (r) => r.receipt_id }),
      receiptVersion: t.int({
        description: 'Receipt format version (DESIGN §6); version 1 receipts have no field for it',
        resolve: (r) => r.receipt_version ?? 1,
      }),
      requestId: t.string({ resolve: (r) => r.request_id }),
      startedAt: t.field({ type: 'DateTime', resolve: (r) => r.started_at }),
      finishedAt: t.field({ type: 'DateTime', nullable: true, resolve: (r) => r.finished_at }),
      teamId: t.id({ nullable: true, resolve: (r) => r.team_id }),
      apiKeyId: t.id({ nullable: true, resolve: (r) => r.api_key_id }),
      feature: t.string({ nullable: true, resolve: (r) => r.feature }),
      taskId: t.string({ nullable: true, resolve: (r) => r.task_id }),
      endUser: t.string({ nullable: true, resolve: (r) => r.end_user }),
      endpoint: t.string({ resolve: (r) => r.endpoint }),
      requestedModel: t.string({ nullable: true, resolve: (r) => r.requested_model }),
      route: t.string({ nullable: true, resolve: (r) => r.route }),
      strategy: t.string({ nullable: true, resolve: (r) => r.strategy }),
      provider: t.string({ nullable: true, resolve: (r) => r.provider }),
      model: t.string({ nullable: true, resolve: (r) => r.model }),
      status: t.field({ type: ReceiptStatus, resolve: (r) => STATUS_UPPER(r.status) }),
      httpStatus: t.int({ nullable: true, resolve: (r) => r.http_status }),
      errorCode: t.string({ nullable: true, resolve: (r) => r.error_code }),
      stream: t.boolean({ resolve: (r) => r.stream }),
      ttftMs: t.float({ nullable: true, resolve: (r) => r.ttft_ms }),
      latencyMs: t.float({ resolve: (r) => r.latency_ms }),
      upstreamMs: t.float({ nullable: true, resolve: (r) => r.upstream_ms }),
      overheadMs: t.float({ nullable: true, resolve: (r) => r.overhead_ms }),
      promptTokens: t.int({ nullable: true, resolve: (r) => r.prompt_tokens }),
      completionTokens: t.int({ nullable: true, resolve: (r) => r.completion_tokens }),
      cachedTokens: t.int({ nullable: true, resolve: (r) => r.cached_tokens }),
      usageEstimated: t.boolean({ resolve: (r) => r.usage_estimated }),
      costUsd: t.float({ nullable: true, resolve: (r) => r.cost_usd }),
      priceVersion: t.int({ nullable: true, resolve: (r) => r.price_version }),
      cacheStatus: t.string({ nullable: true, resolve: (r) => r.cache_status }),
      cacheSimilarity: t.float({ nullable: true, resolve: (r) => r.cache_similarity }),
      savedCostUsd: t.float({ nullable: true, resolve: (r) => r.saved_cost_usd }),
      // Receipt version 2 on; null on version 1 receipts.
      taskType: t.string({ nullable: true, resolve: (r) => r.task_type ?? null }),
      rule: t.string({ nullable: true, resolve: (r) => r.rule ?? null }),
      classifierTier: t.string({ nullable: true, resolve: (r) => r.classifier_tier ?? null }),
      experiment: t.string({ nullable: true, resolve: (r) => r.experiment ?? null }),
      variant: t.string({ nullable: true, description: 'The bare variant name', resolve: (r) => r.variant ?? null }),
      accepted: t.boolean({
        nullable: true,
        description: 'CASCADE: whether the answer given passed the acceptance checks',
        resolve: (r) => r.accepted ?? null,
      }),
      reasoningTokens: t.int({ nullable: true, resolve: (r) => r.reasoning_tokens ?? null }),
      cacheWriteTokens: t.int({ nullable: true, resolve: (r) => r.cache_write_tokens ?? null }),
      attempts: t.field({ type: [AttemptRef], resolve: (r) => r.attempts }),
      seq: t.float({ resolve: (r) => r.seq }),
      instanceId: t.string({ resolve: (r) => r.instance_id }),
      signature: t.string({ resolve: (r) => r.signature }),
      keyId: t.string({ resolve: (r) => r.key_id }),
      signedJson: t.field({
        type: 'JSON',
        description:
          'The exact signed object: the receipt as GET /v1/receipts/{id} serves it, without `signature`. Its RFC 8785 canonical JSON is what the Ed25519 signature covers, so a browser can verify it against /.well-known/tollgate/receipt-keys.',
        resolve: ({ signature: _signature, ...signed }) => signed,
      }),
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

  const ReceiptEdge = builder.objectRef<ReceiptConnection['edges'][number]>('ReceiptEdge');
  ReceiptEdge.implement({
    fields: (t) => ({ node: t.field({ type: ReceiptRef, resolve: (e) => e.node }), cursor: t.exposeString('cursor') }),
  });
  const PageInfo = builder.objectRef<ReceiptConnection['pageInfo']>('PageInfo');
  PageInfo.implement({
    fields: (t) => ({ hasNextPage: t.exposeBoolean('hasNextPage'), endCursor: t.exposeString('endCursor', { nullable: true }) }),
  });
  const ReceiptConnectionRef = builder.objectRef<ReceiptConnection>('ReceiptConnection');
  ReceiptConnectionRef.implement({
    fields: (t) => ({
      edges: t.field({ type: [ReceiptEdge], resolve: (c) => c.edges }),
      pageInfo: t.field({ type: PageInfo, resolve: (c) => c.pageInfo }),
      totalCount: t.int({ nullable: true, resolve: (c) => c.totalCount }),
    }),
  });

  const ReceiptVerificationRef = builder.objectRef<ReceiptVerification>('ReceiptVerification');
  ReceiptVerificationRef.implement({
    fields: (t) => ({
      valid: t.exposeBoolean('valid'),
      reason: t.exposeString('reason', { nullable: true }),
      receipt: t.field({ type: ReceiptRef, nullable: true, resolve: (v) => v.receipt }),
      keyId: t.exposeString('keyId', { nullable: true }),
    }),
  });

  const toFilter = (f: {
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
    receipts: t.field({
      type: ReceiptConnectionRef,
      authScopes: { authenticated: true },
      args: {
        filter: t.arg({ type: AnalyticsFilterInput, required: true }),
        first: t.arg.int({ required: false }),
        after: t.arg.string({ required: false }),
      },
      resolve: (_root, args, ctx) => receipts(ctx, toFilter(args.filter), args.first, args.after),
    }),
    receipt: t.field({
      type: ReceiptRef,
      nullable: true,
      authScopes: { authenticated: true },
      args: { id: t.arg.id({ required: true }) },
      resolve: (_root, args, ctx) => receipt(ctx, String(args.id)),
    }),
    verifyReceipt: t.field({
      type: ReceiptVerificationRef,
      authScopes: { authenticated: true },
      args: { id: t.arg.id({ required: true }) },
      resolve: (_root, args, ctx) => verifyReceipt(ctx, String(args.id)),
    }),
  }));
}
