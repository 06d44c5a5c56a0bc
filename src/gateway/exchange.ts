// One request's state on its way through the pipeline, and the receipt it ends in.
import { hash, randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { performance } from 'node:perf_hooks';
import { v7 as uuidv7 } from 'uuid';
import type { BudgetTicket } from '../budgets/enforcer.js';
import type { CacheLookup } from './cache.js';
import type { Attempt, CacheStatus, ReceiptDraft, ReceiptStatus } from '../receipts/receipt.js';
import { roundMs } from '../receipts/receipt.js';
import type { Route, Target } from '../routing/catalog.js';
import type { ApiKeyRecord } from './auth.js';
import { badRequest } from './errors.js';
import { costOf, type Usage } from './usage.js';

export type Endpoint = 'chat' | 'embeddings';

export const ENDPOINT_NAME: Record<Endpoint, string> = { chat: '/v1/chat/completions', embeddings: '/v1/embeddings' };
const EMPTY_SHA256 = hash('sha256', '');

/** Everything one request accumulates on its way to its receipt. */
export class Exchange {
  readonly requestId: string;
  readonly receiptId = uuidv7();
  readonly startedAt = Date.now();
  readonly t0 = performance.now();
  key: ApiKeyRecord | null = null;
  feature: string | null = null;
  taskId: string | null = null;
  endUser: string | null = null;
  requestedModel: string | null = null;
  route: Route | null = null;
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
  /** The budget reservation this request holds until its receipt settles it. */
  budgetTicket: BudgetTicket | null = null;
  /** Set when the answer came from the cache: where it originally came from, and what it cost then. */
  cacheHit: { similarity: number; savedCostUsd: number | null; provider: string; model: string } | null = null;

  constructor(
    readonly endpoint: Endpoint,
    req: IncomingMessage,
  ) {
    const given = req.headers['x-request-id'];
    this.requestId = typeof given === 'string' && /^[\w.:-]{1,128}$/.test(given) ? given : randomUUID();
  }

  elapsed(): number {
    return performance.now() - this.t0;
  }

  /** Attribution: headers win over the body (DESIGN §4). Empty strings count as absent. */
  attribute(req: IncomingMessage, body: Record<string, unknown>): void {
    const metadata = (body.metadata ?? {}) as Record<string, unknown>;
    this.feature = pick(req.headers, 'x-tollgate-feature', metadata.feature, 'metadata.feature');
    this.taskId = pick(req.headers, 'x-tollgate-task-id', metadata.task_id, 'metadata.task_id');
    this.endUser = pick(req.headers, 'x-tollgate-user', body.user, 'user');
  }

  /** The receipt content for how this request ended. */
  toReceiptDraft(status: ReceiptStatus, httpStatus: number, errorCode: string | null, usage: Usage, responseSha256: string | null): ReceiptDraft {
    const latency = this.elapsed();
    const target = this.target;
    const hit = this.cacheHit;
    const price = target?.price ?? null;
    // A cache hit costs nothing; what it saved is what the original answer cost.
    const cost = hit ? 0 : target ? costOf(usage, price) : null;
    const hadUpstream = this.attempts.length > 0;
    return {
        receipt_id: this.receiptId,
        request_id: this.requestId,
        started_at: new Date(this.startedAt).toISOString(),
        finished_at: new Date(this.startedAt + latency).toISOString(),
        team_id: this.key?.teamId ?? null,
        api_key_id: this.key?.id ?? null,
        feature: this.feature,
        task_id: this.taskId,
        end_user: this.endUser,
        endpoint: ENDPOINT_NAME[this.endpoint],
        requested_model: this.requestedModel,
        route: this.route?.name ?? null,
        strategy: this.route?.strategy ?? null,
        provider: hit?.provider ?? target?.provider.name ?? null,
        model: hit?.model ?? target?.model ?? null,
        attempts: this.attempts,
        status,
        http_status: httpStatus,
        error_code: errorCode,
        stream: this.stream,
        ttft_ms: this.ttftMs === null ? null : roundMs(this.ttftMs),
        latency_ms: roundMs(latency),
        upstream_ms: hadUpstream ? roundMs(this.upstreamMs) : null,
        overhead_ms: hadUpstream ? roundMs(Math.max(0, latency - this.upstreamMs)) : null,
        prompt_tokens: usage.promptTokens,
        completion_tokens: usage.completionTokens,
        cached_tokens: usage.cachedTokens,
        usage_estimated: usage.estimated,
        cost_usd: cost,
        price_version: cost === null || hit ? null : (price?.version ?? null),
        cache_status: this.cacheStatus,
        cache_similarity: hit ? hit.similarity : null,
        saved_cost_usd: hit ? hit.savedCostUsd : null,
        request_sha256: this.requestSha256 || EMPTY_SHA256,
        response_sha256: responseSha256,
    };
  }
}

function pick(headers: IncomingMessage['headers'], name: string, fallback: unknown, bodyParam: string): string | null {
  const header = headers[name];
  const h = Array.isArray(header) ? header[0] : header;
  if (h && h.trim()) return attribution(h, name);
  if (typeof fallback === 'string' && fallback.trim()) return attribution(fallback, bodyParam);
  return null;
}

const CONTROL = /\p{Cc}/u;

/**
 * Attribution values are names (features, task ids, end users): one with a control character
 * (a tab in a header, anything in the body) could not be named back where names are checked
 * (a FEATURE budget, a task outcome), so it is refused (400, param: where it came from).
 */
function attribution(value: string, param: string): string {
  const v = value.trim();
  if (CONTROL.test(v)) throw badRequest(`'${param}' must not contain control characters.`, param);
  return v.slice(0, 256);
}
