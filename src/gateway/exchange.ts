// One request's state on its way through the pipeline, and the receipt it ends in.
import { hash, randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { performance } from 'node:perf_hooks';
import { v7 as uuidv7 } from 'uuid';
import type { BudgetTicket } from '../budgets/enforcer.js';
import type { ClientProtocol, ParsedRequest, RenderContext } from '../protocols/protocol.js';
import { type Attempt, type CacheStatus, RECEIPT_VERSION, type ReceiptDraft, type ReceiptStatus, roundMs, type UnsignedReceipt } from '../receipts/receipt.js';
import type { Route, Target } from '../routing/catalog.js';
import type { DecisionRequest } from '../routing/facts.js';
import type { RequestTrace } from '../telemetry/tracing.js';
import { attributionOf } from './attribution.js';
import type { ApiKeyRecord } from './auth.js';
import type { CacheLookup } from './cache.js';
import type { TokenReservation } from './limits.js';
import { type Billed, billedTotal, costOf, type Usage } from './usage.js';

const EMPTY_SHA256 = hash('sha256', '');

/** Everything one request accumulates on its way to its receipt. */
export class Exchange {
  readonly requestId: string;
  readonly receiptId = uuidv7();
  readonly startedAt = Date.now();
  readonly t0 = performance.now();
  key: ApiKeyRecord | null = null;
  parsed: ParsedRequest | null = null;
  /** Client headers that go upstream with a body passed through (ClientProtocol.passthroughHeaders). */
  passthroughHeaders: Record<string, string> | null = null;
  feature: string | null = null;
  taskId: string | null = null;
  taskType: string | null = null;
  endUser: string | null = null;
  requestedModel: string | null = null;
  /** The route the client named. */
  route: Route | null = null;
  /** The route that serves it, after experiment and rules (DESIGN §5); its strategy ran. */
  served: Route | null = null;
  target: Target | null = null;
  attempts: Attempt[] = [];
  upstreamMs = 0;
  ttftMs: number | null = null;
  requestSha256 = '';
  stream = false;
  responseHeaders: Record<string, string> = {};
  cacheStatus: CacheStatus = 'bypass';
  /** A cache miss's lookup: what storing the answer afterwards needs (key, vector). */
  cacheLookup: CacheLookup | null = null;
  /** The TPM reservation this request holds until its receipt releases it. */
  tokenReservation: TokenReservation | null = null;
  /** The budget reservation this request holds until its receipt settles it. */
  budgetTicket: BudgetTicket | null = null;
  /** Set when the answer came from the cache: where it originally came from, and what it cost then. */
  cacheHit: { similarity: number; savedCostUsd: number | null; provider: string; model: string } | null = null;
  /** Provenance of the routing decision (DESIGN §5), set by the router when it applies. */
  rule: string | null = null;
  classifierTier: string | null = null;
  experiment: string | null = null;
  variant: string | null = null;
  /** CASCADE: whether the answer given passed its acceptance checks (null: none ran). */
  accepted: boolean | null = null;
  /** CASCADE: the tokens and cost of every step climbed so far, which the receipt bills. */
  climb: Billed | null = null;
  /**
   * Calls that answered nothing but that the provider bills (billUnansweredCall): their sum,
   * which the receipt bills on top of its answer, and the last one's target, which it names
   * when nothing answered.
   */
  unanswered: (Billed & { target: Target }) | null = null;
  /** The one receipt, once its append was attempted (endings.ts: exactly one per request). */
  receipt: Promise<UnsignedReceipt> | null = null;
  /** Its append succeeded: the request's outcome is on record and must not change. */
  recorded = false;
  /** What waits for the receipt to be in the WAL (RenderContext.whenRecorded). */
  private afterRecord: Array<() => void> | null = null;
  /** Its OpenTelemetry span; null when tracing is off. */
  trace: RequestTrace | null = null;

  constructor(
    readonly protocol: ClientProtocol,
    req: IncomingMessage,
  ) {
    const given = req.headers['x-request-id'];
    this.requestId = typeof given === 'string' && /^[\w.:-]{1,128}$/.test(given) ? given : randomUUID();
  }

  elapsed(): number {
    return performance.now() - this.t0;
  }

  /** Attribution: headers win over the body (DESIGN §4). Empty strings count as absent. */
  attribute(req: IncomingMessage, parsed: ParsedRequest): void {
    Object.assign(this, attributionOf(req.headers, parsed));
  }

  /** The request as the router sees it (rules, experiments, the classifier). */
  decisionRequest(headers: IncomingHttpHeaders, teamName: string): DecisionRequest {
    const parsed = this.parsed!;
    const key = this.key!;
    return {
      endpoint: this.protocol.endpoint,
      model: parsed.model,
      chat: parsed.chat,
      stream: parsed.stream,
      feature: this.feature,
      taskId: this.taskId,
      taskType: this.taskType,
      endUser: this.endUser,
      teamId: key.teamId,
      team: teamName,
      apiKeyId: key.id,
      apiKeyName: key.name,
      requestId: this.requestId,
      headers,
      metadata: parsed.metadata,
    };
  }

  /** What a protocol needs to render this request's answer. */
  renderContext(): RenderContext {
    return {
      id: this.protocol.answerId(this.receiptId),
      teamId: this.key!.teamId,
      created: Math.floor(this.startedAt / 1000),
      request: this.parsed!,
      whenRecorded: (then) => {
        // Once the receipt is written, nothing more waits for it.
        if (this.receipt === null) (this.afterRecord ??= []).push(then);
      },
    };
  }

  /** The receipt is in the WAL: runs what waited for it. */
  markRecorded(): void {
    this.recorded = true;
    const waiting = this.afterRecord;
    this.afterRecord = null;
    for (const then of waiting ?? []) then();
  }

  /** The receipt content for how this request ended. */
  toReceiptDraft(status: ReceiptStatus, httpStatus: number, errorCode: string | null, usage: Usage, responseSha256: string | null): ReceiptDraft {
    const latency = this.elapsed();
    const target = this.target;
    const hit = this.cacheHit;
    // A cascade bills every step it climbed (DESIGN §5), whichever answer the client got.
    if (this.climb) usage = this.climb.usage;
    // A cache hit costs nothing; what it saved is what the original answer cost.
    const cost = hit ? 0 : this.climb ? this.climb.cost : target ? costOf(usage, target.price) : null;
    // The attempt that answered carries the answer's tokens and cost; the others, none.
    const answering = target && !hit && !this.climb ? this.attempts.length - 1 : -1;
    // Calls that answered nothing but were billed come on top (or are all there is).
    const unanswered = this.unanswered;
    const billed = !unanswered ? { usage, cost } : target || this.climb ? billedTotal([{ usage, cost }, unanswered]) : unanswered;
    const named = target ?? unanswered?.target ?? null;
    const price = named?.price ?? null;
    const hadUpstream = this.attempts.length > 0;
    const attempts = this.attempts.map((a, i): Attempt => {
      if (a.prompt_tokens !== undefined) return a; // settled already: a cascade step, a billed call that answered nothing
      const mine = i === answering;
      // Spelled out (`{ ...a, more }` cost ~5 µs a request in the proxy's profile); `satisfies`
      // makes a field added to Attempt a compile error here instead of one left out.
      return {
        provider: a.provider,
        model: a.model,
        status: a.status,
        error: a.error,
        latency_ms: a.latency_ms,
        prompt_tokens: mine ? usage.promptTokens : null,
        completion_tokens: mine ? usage.completionTokens : null,
        cost_usd: mine ? cost : null,
        accepted: mine ? this.accepted : null,
        reject_reason: null,
      } satisfies Record<keyof Required<Attempt>, unknown>;
    });
    return {
      receipt_version: RECEIPT_VERSION,
      receipt_id: this.receiptId,
      request_id: this.requestId,
      started_at: new Date(this.startedAt).toISOString(),
      finished_at: new Date(this.startedAt + latency).toISOString(),
      team_id: this.key?.teamId ?? null,
      api_key_id: this.key?.id ?? null,
      feature: this.feature,
      task_id: this.taskId,
      end_user: this.endUser,
      endpoint: this.protocol.path,
      requested_model: this.requestedModel,
      route: this.route?.name ?? null,
      strategy: (this.served ?? this.route)?.strategy ?? null,
      provider: hit?.provider ?? named?.provider.name ?? null,
      model: hit?.model ?? named?.model ?? null,
      attempts,
      status,
      http_status: httpStatus,
      error_code: errorCode,
      stream: this.stream,
      ttft_ms: this.ttftMs === null ? null : roundMs(this.ttftMs),
      latency_ms: roundMs(latency),
      upstream_ms: hadUpstream ? roundMs(this.upstreamMs) : null,
      overhead_ms: hadUpstream ? roundMs(Math.max(0, latency - this.upstreamMs)) : null,
      prompt_tokens: billed.usage.promptTokens,
      completion_tokens: billed.usage.completionTokens,
      cached_tokens: billed.usage.cachedTokens,
      usage_estimated: billed.usage.estimated,
      cost_usd: billed.cost,
      price_version: billed.cost === null || hit ? null : (price?.version ?? null),
      cache_status: this.cacheStatus,
      cache_similarity: hit ? hit.similarity : null,
      saved_cost_usd: hit ? hit.savedCostUsd : null,
      request_sha256: this.requestSha256 || EMPTY_SHA256,
      response_sha256: responseSha256,
      task_type: this.taskType,
      rule: this.rule,
      classifier_tier: this.classifierTier,
      experiment: this.experiment,
      variant: this.variant,
      accepted: this.accepted,
      reasoning_tokens: billed.usage.reasoningTokens,
      cache_write_tokens: billed.usage.cacheWriteTokens,
    };
  }
}
