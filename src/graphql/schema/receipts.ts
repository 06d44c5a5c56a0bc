// The receipts themselves over GraphQL (DESIGN §6, §8): receipts (a filtered, paged list),
// receipt (one by id) and verifyReceipt (its signature and chain checked). The reads live in
// src/analytics; the filter is analytics.ts's AnalyticsFilter. Every field needs a valid token;
// a team-bound token only ever sees its own team's receipts.
import { type RECEIPT_STATUSES, type ReceiptConnection, type ReceiptVerification, receipt, receipts, verifyReceipt } from '../../analytics/index.js';
import type { Attempt, Receipt } from '../../receipts/receipt.js';
import type { Builder } from '../builder.js';
import { type registerAnalytics, toFilter } from './analytics.js';

const STATUS_UPPER = (s: string) => s.toUpperCase() as (typeof RECEIPT_STATUSES)[number];

export function registerReceipts(builder: Builder, { AnalyticsFilterInput, ReceiptStatus }: ReturnType<typeof registerAnalytics>) {
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

  builder.queryFields((t) => ({
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
