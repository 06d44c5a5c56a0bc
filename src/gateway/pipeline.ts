// The proxy path for /v1/chat/completions and /v1/embeddings:
//   auth → body → validate → resolve route → limits → attempts (failover) → respond → receipt.
// Every request ends in exactly one receipt, appended to the WAL before the response
// completes (for streams: before [DONE]); endings.ts writes those endings.
import { createHash, hash } from 'node:crypto';
import { once } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { StringDecoder } from 'node:string_decoder';
import type { Config } from '../config.js';
import type { Candidate, LiveBus } from '../live/events.js';
import type { Metrics } from '../metrics.js';
import type { ReceiptDraft, UnsignedReceipt } from '../receipts/receipt.js';
import { roundMs } from '../receipts/receipt.js';
import { isRouteAllowed, type Catalog, type Route, type Target } from '../routing/catalog.js';
import type { TargetHealth } from '../routing/health.js';
import type { RetryBudgets } from '../routing/retry-budget.js';
import { orderTargets } from '../routing/strategy.js';
import type { BudgetEnforcer } from '../budgets/enforcer.js';
import { replayJson, replaySse, StreamAssembler, type ChatCompletion } from '../cache/replay.js';
import type { ApiKeyRecord, KeyAuthenticator } from './auth.js';
import { readRequestBody, readUpstreamBody } from './body.js';
import type { CacheHit, CacheStage } from './cache.js';
import type { Ingress } from './ingress.js';
import { candidatesOf, publishDecision } from './decisions.js';
import { Endings, receiptEvent, ZERO_USAGE } from './endings.js';
import { Exchange, type Endpoint } from './exchange.js';
import {
  GatewayError,
  fromUpstreamClientError,
  modelNotFound,
  routeForbidden,
  serviceUnavailable,
  upstreamFailed,
} from './errors.js';
import type { RateLimiter } from './limits.js';
import { SseRelay, sseEvent } from './sse.js';
import { UpstreamFailure, classify, parseRetryAfter, type UpstreamClient } from './upstream.js';
import { estimateCompletionTokens, estimatePromptTokens, maxCostOf, readUsage, type Usage } from './usage.js';
import { parseJsonBody, validateChat, validateEmbeddings } from './validate.js';

const UPSTREAM_PATH: Record<Endpoint, string> = { chat: '/chat/completions', embeddings: '/embeddings' };
const MAX_BACKOFF_MS = 2_000;
const MAX_ERROR_BODY = 64 * 1024;

export type { Endpoint };

export interface ReceiptSink {
  append(draft: ReceiptDraft): Promise<UnsignedReceipt>;
}

export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface PipelineDeps {
  config: Config;
  auth: KeyAuthenticator;
  /** Loop marker and failed-authentication throttle, before the key is looked at. */
  ingress: Ingress;
  limiter: RateLimiter;
  catalog: () => Catalog;
  health: TargetHealth;
  retryBudgets: RetryBudgets;
  upstream: UpstreamClient;
  receipts: ReceiptSink;
  /** Absent: no response cache at all. */
  cache?: CacheStage | null;
  /** Absent: budgets are not enforced. */
  budgets?: BudgetEnforcer | null;
  bus: LiveBus;
  metrics: Metrics;
  log: Logger;
}

/** Why the signal fired: the client went away, or the route's total timeout passed. */
class ClientGone extends Error {}


export class Pipeline {
  private readonly endings: Endings;

  constructor(private readonly deps: PipelineDeps) {
    this.endings = new Endings(deps);
  }

  async handle(endpoint: Endpoint, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const ex = new Exchange(endpoint, req);
    try {
      ex.key = await this.deps.ingress.admit(req, () => this.authenticate(req.headers.authorization));
      const raw = await readRequestBody(req, this.deps.config.maxBodyBytes);
      ex.requestSha256 = hash('sha256', raw);
      const body = parseJsonBody(raw);
      if (endpoint === 'chat') validateChat(body);
      else validateEmbeddings(body);
      ex.requestedModel = body.model as string;
      ex.stream = endpoint === 'chat' && body.stream === true;
      ex.attribute(req, body);

      const route = this.deps.catalog().resolve(ex.requestedModel);
      if (!route || route.targets.length === 0) throw modelNotFound(ex.requestedModel);
      ex.route = route;
      if (!isRouteAllowed(ex.key.allowedRoutes, route)) throw routeForbidden(route.name);
      ex.responseHeaders = (await this.deps.limiter.admit(ex.key.id, ex.key.rpmLimit, ex.key.tpmLimit)).headers;
      const budgets = this.deps.budgets;
      if (budgets) {
        const { key } = ex;
        const subject = { teamId: key.teamId, apiKeyId: key.id, feature: ex.feature };
        ex.budgetTicket = await budgets.admit(subject, () => maxCostOf(route.targets, body, this.deps.config.budgets.defaultMaxTokens), ex.requestId);
      }

      const hit = await this.lookInCache(ex, route, body, req.headers['x-tollgate-cache']);
      if (hit) return await this.answerFromCache(ex, hit, body, res);
      await this.forward(ex, route, body, res);
    } catch (err) {
      await this.endings.fail(ex, res, err);
    }
  }

  private async authenticate(authorization: string | undefined): Promise<ApiKeyRecord> {
    try {
      return await this.deps.auth.authenticate(authorization);
    } catch (err) {
      if (err instanceof GatewayError) throw err;
      this.deps.log.error({ err: String(err) }, 'key lookup failed');
      throw serviceUnavailable('Tollgate cannot verify API keys right now; try again shortly.');
    }
  }

  // ── Cache ────────────────────────────────────────────────────────────────────────────

  private async lookInCache(
    ex: Exchange,
    route: Route,
    body: Record<string, unknown>,
    header: string | string[] | undefined,
  ): Promise<CacheHit | null> {
    const cache = this.deps.cache;
    const plan = cache?.plan(ex.endpoint, ex.key!.teamId, route, body, header);
    if (!cache || !plan) return null;
    ex.cacheStatus = plan.lookup ? 'miss' : 'bypass';
    const { hit, lookup } = await cache.lookup(plan);
    ex.cacheLookup = lookup;
    return hit;
  }

  private async answerFromCache(ex: Exchange, hit: CacheHit, body: Record<string, unknown>, res: ServerResponse): Promise<void> {
    const { entry } = hit;
    ex.cacheStatus = hit.status;
    ex.cacheHit = { similarity: hit.similarity, savedCostUsd: entry.costUsd, provider: entry.provider, model: entry.model };
    ex.responseHeaders['x-tollgate-cache-similarity'] = hit.similarity.toFixed(4);
    publishDecision(this.deps.bus, ex, null, 'CACHE_HIT', `cache_${hit.status}`, null, []);
    const stored = JSON.parse(entry.answer) as Record<string, unknown>;
    const usage: Usage = { ...(readUsage(stored.usage) ?? ZERO_USAGE), estimated: false };
    const id = ex.endpoint === 'chat' ? `chatcmpl-${ex.receiptId.replaceAll('-', '')}` : '';
    if (!ex.stream) {
      const json = JSON.stringify(replayJson(stored, id));
      await this.endings.appendReceipt(ex, 'ok', 200, null, usage, sha256(Buffer.from(json)));
      this.endings.writeHead(ex, res, 200, 'application/json');
      res.end(json);
      this.endings.observe(ex, 200, null);
    } else {
      const wantsUsage = (body.stream_options as { include_usage?: boolean } | undefined)?.include_usage === true;
      const events = replaySse(stored as unknown as ChatCompletion, id, wantsUsage).join('');
      ex.ttftMs = ex.elapsed();
      this.endings.writeHead(ex, res, 200, 'text/event-stream');
      res.write(events);
      await this.endings.endStream(ex, res, usage, sha256(Buffer.from(events)));
    }
  }

  /** After a complete, successful answer: keep it for the next identical (or similar) request. */
  private remember(ex: Exchange, answer: unknown, costUsd: number | null, target: Target): void {
    if (!ex.cacheLookup || !this.deps.cache || !answer || typeof answer !== 'object') return;
    this.deps.cache
      .store(ex.cacheLookup, answer as Record<string, unknown>, costUsd, target.provider.name, target.model)
      .catch((err: unknown) => this.deps.log.warn({ err: String(err), requestId: ex.requestId }, 'could not store the answer in the cache'));
  }

  // ── Routing and failover ─────────────────────────────────────────────────────────────

  private async forward(ex: Exchange, route: Route, body: Record<string, unknown>, res: ServerResponse): Promise<void> {
    const { config, health } = this.deps;
    const controller = new AbortController();
    const onClose = () => {
      if (!res.writableFinished) controller.abort(new ClientGone('client closed the connection'));
    };
    res.on('close', onClose);
    const totalMs = route.timeoutMs ?? route.targets[0]?.provider.timeoutMs ?? config.timeouts.totalMs;
    const totalTimer = setTimeout(() => controller.abort(new UpstreamFailure('timeout_total', 'request exceeded its total timeout')), totalMs);
    try {
      const order = orderTargets(route, health);
      const candidates = this.deps.bus.decisions.hasListeners ? candidatesOf(order, this.deps.health) : [];
      const budget = this.deps.retryBudgets.for(route.name);
      budget.request();
      let lastFailure: UpstreamFailure | null = null;
      let outOfBudget = false;
      attempts: for (let round = 0; round <= route.retries; round++) {
        if (round > 0) await backoff(round, controller.signal);
        for (const target of order) {
          if (controller.signal.aborted) break attempts;
          const admission = health.admit(target.key);
          if (!admission.ok) {
            publishDecision(this.deps.bus, ex, target, 'SKIPPED', admission.reason, null, candidates);
            continue;
          }
          if (ex.attempts.length > 0 && !budget.tryRetry()) {
            health.release(target.key); // admitted, never called
            publishDecision(this.deps.bus, ex, target, 'SKIPPED', 'retry_budget_exhausted', null, candidates);
            this.deps.metrics.retriesRefused.inc({ route: route.name });
            outOfBudget = true;
            break attempts;
          }
          const outcome = await this.attempt(ex, target, body, res, controller.signal, candidates);
          if (outcome === 'answered') return;
          lastFailure = outcome;
        }
      }
      const reason = controller.signal.reason;
      if (reason instanceof ClientGone) return await this.endings.cancelled(ex);
      const failure = reason instanceof UpstreamFailure ? reason : lastFailure;
      const message = ex.attempts.length === 0
        ? 'No upstream target is available for this route right now (all circuits open or cooling down).'
        : `All upstream targets failed (${ex.attempts.length} attempt${ex.attempts.length === 1 ? '' : 's'}${outOfBudget ? ', then the route\'s retry budget ran out' : ''}; last: ${failure?.message ?? 'unknown error'}).`;
      throw upstreamFailed(message, failure?.isTimeout ?? false);
    } finally {
      clearTimeout(totalTimer);
      res.off('close', onClose);
    }
  }

  /**
   * One call to one target. Returns 'answered' once the client has its response (success,
   * or an upstream 4xx passed through), or the failure to fail over from.
   */
  private async attempt(
    ex: Exchange,
    target: Target,
    body: Record<string, unknown>,
    res: ServerResponse,
    signal: AbortSignal,
    candidates: Candidate[],
  ): Promise<'answered' | UpstreamFailure> {
    const { health, upstream, metrics } = this.deps;
    const attemptNo = ex.attempts.length + 1;
    publishDecision(this.deps.bus, ex, target, 'ATTEMPT', null, null, candidates, attemptNo);
    const started = performance.now();
    const finishAttempt = (status: number, error: string | null) => {
      const latency = performance.now() - started;
      ex.upstreamMs += latency;
      ex.attempts.push({ provider: target.provider.name, model: target.model, status, error, latency_ms: roundMs(latency) });
      metrics.upstreamAttempts.inc({ provider: target.provider.name, outcome: error ? 'failure' : 'success' });
      return latency;
    };
    const failover = (failure: UpstreamFailure, status: number, retryAfterMs?: number): UpstreamFailure => {
      const latency = finishAttempt(status, failure.kind);
      if (failure.kind === 'aborted' || signal.reason instanceof ClientGone) health.release(target.key);
      else health.onFailure(target.key, { retryAfterMs, latencyMs: latency });
      publishDecision(this.deps.bus, ex, target, 'FAILOVER', failure.kind, latency, candidates, attemptNo);
      return failure;
    };

    const upstreamBody = JSON.stringify(
      ex.stream
        ? { ...body, model: target.upstreamModel, stream_options: { ...(body.stream_options as object | undefined), include_usage: true } }
        : { ...body, model: target.upstreamModel },
    );

    let response;
    try {
      response = await upstream.post(target.provider, UPSTREAM_PATH[ex.endpoint], upstreamBody, signal);
    } catch (err) {
      return failover(classify(err, signal), 0);
    }

    if (response.status < 200 || response.status >= 300) {
      let errorBody: unknown = null;
      try {
        const buf = await readUpstreamBody(response.body, MAX_ERROR_BODY);
        errorBody = JSON.parse(buf.toString('utf8'));
      } catch {
        response.body.destroy();
      }
      const status = response.status;
      if (status === 429) {
        const retryAfterMs = parseRetryAfter(response.headers['retry-after']) ?? 1_000;
        return failover(new UpstreamFailure('network_error', `upstream rate limited (429)`), status, retryAfterMs);
      }
      // 508: the provider is (a path back to) this Tollgate; another try goes round again.
      if ((status >= 500 && status !== 508) || status === 408) {
        return failover(new UpstreamFailure('network_error', `upstream answered ${status}`), status);
      }
      // Any other 4xx is about the request itself: no failover, the client gets it back.
      const latency = finishAttempt(status, `http_${status}`);
      health.release(target.key);
      publishDecision(this.deps.bus, ex, target, 'FAILED', `http_${status}`, latency, candidates, attemptNo);
      ex.target = target;
      await this.endings.fail(ex, res, fromUpstreamClientError(status, errorBody), 'error');
      return 'answered';
    }

    ex.target = target;
    if (ex.stream) return this.relayStream(ex, target, body, response.body, res, signal, { finishAttempt, failover, candidates, attemptNo });

    let buf: Buffer;
    let parsed: any;
    try {
      buf = await readUpstreamBody(response.body);
      parsed = JSON.parse(buf.toString('utf8'));
    } catch (err) {
      ex.target = null;
      const failure = err instanceof SyntaxError ? new UpstreamFailure('network_error', 'upstream sent invalid JSON') : classify(err, signal);
      return failover(failure, err instanceof SyntaxError ? response.status : 0);
    }
    const latency = finishAttempt(response.status, null);
    health.onSuccess(target.key, latency);
    publishDecision(this.deps.bus, ex, target, 'SUCCESS', null, latency, candidates, attemptNo);

    const usage = await usageOf(readUsage(parsed?.usage), body, () => collectText(parsed));
    this.deps.limiter.recordTokens(ex.key!.id, usage.promptTokens + usage.completionTokens, ex.key!.tpmLimit);
    const receipt = await this.endings.appendReceipt(ex, 'ok', response.status, null, usage, sha256(buf));
    this.endings.writeHead(ex, res, response.status, 'application/json');
    res.end(buf);
    this.endings.observe(ex, response.status, null);
    this.remember(ex, parsed, receipt.cost_usd, target);
    return 'answered';
  }

  private async relayStream(
    ex: Exchange,
    target: Target,
    body: Record<string, unknown>,
    upstreamBody: AsyncIterable<Buffer> & { destroy(): void },
    res: ServerResponse,
    signal: AbortSignal,
    attempt: {
      finishAttempt: (status: number, error: string | null) => number;
      failover: (failure: UpstreamFailure, status: number) => UpstreamFailure;
      candidates: Candidate[];
      attemptNo: number;
    },
  ): Promise<'answered' | UpstreamFailure> {
    const clientWantsUsage = (body.stream_options as { include_usage?: boolean } | undefined)?.include_usage === true;
    const assembler = ex.cacheLookup ? new StreamAssembler() : null;
    const relay = new SseRelay(clientWantsUsage, assembler ? (chunk) => assembler.add(chunk) : undefined);
    const decoder = new StringDecoder('utf8');
    const responseHash = createHash('sha256');
    let started = false;
    let breakage: UpstreamFailure | null = null;
    try {
      for await (const chunk of upstreamBody) {
        const out = relay.push(decoder.write(chunk));
        if (!out) continue;
        if (!started) {
          // Nothing has reached the client yet: an error event up front can still fail over.
          if (relay.tally.upstreamError && relay.tally.contentChunks === 0) {
            upstreamBody.destroy();
            ex.target = null;
            return attempt.failover(new UpstreamFailure('network_error', 'upstream stream began with an error'), 200);
          }
          started = true;
          ex.ttftMs = ex.elapsed();
          // The attempt that is streaming is recorded when it ends: count it in the header now.
          this.endings.writeHead(ex, res, 200, 'text/event-stream', attempt.attemptNo);
        }
        responseHash.update(out);
        if (!res.write(out)) await drained(res, signal);
      }
      const tail = relay.push(decoder.end()) + relay.rest();
      if (tail && started) {
        responseHash.update(tail);
        res.write(tail);
      }
      if (!relay.tally.done) breakage = new UpstreamFailure('connection_reset', 'upstream stream ended without [DONE]');
    } catch (err) {
      breakage = classify(err, signal);
    }

    if (!started) {
      ex.target = null;
      return attempt.failover(breakage ?? new UpstreamFailure('network_error', 'upstream stream was empty'), 200);
    }

    // From here on the client has bytes: no failover, whatever happens.
    const tally = relay.tally;
    const usage = await usageOf(readUsage(tally.usage), body, () => tally.deliveredText);
    this.deps.limiter.recordTokens(ex.key!.id, usage.promptTokens + usage.completionTokens, ex.key!.tpmLimit);
    if (signal.reason instanceof ClientGone) {
      attempt.finishAttempt(200, 'client_cancelled');
      this.deps.health.release(target.key);
      publishDecision(this.deps.bus, ex, target, 'CANCELLED', 'client_cancelled', null, attempt.candidates, attempt.attemptNo);
      await this.endings.appendReceipt(ex, 'cancelled', 499, 'client_cancelled', usage, responseHash.digest('hex'));
      this.endings.observe(ex, 499, 'client_cancelled');
      return 'answered';
    }
    if (breakage) {
      const latency = attempt.finishAttempt(200, breakage.kind);
      this.deps.health.onFailure(target.key, { latencyMs: latency });
      publishDecision(this.deps.bus, ex, target, 'FAILED', `mid_stream_${breakage.kind}`, latency, attempt.candidates, attempt.attemptNo);
      const errorEvent = sseEvent('error', {
        error: {
          message: `The upstream stream broke after the response started (${breakage.message}); the answer is incomplete.`,
          type: 'api_error',
          param: null,
          code: 'upstream_stream_interrupted',
        },
      });
      res.write(errorEvent);
      const receipt = await this.endings.appendReceipt(ex, 'partial', 200, 'upstream_stream_interrupted', usage, responseHash.digest('hex'));
      res.end(receiptEvent(receipt));
      this.endings.observe(ex, 200, 'upstream_stream_interrupted');
      return 'answered';
    }

    const latency = attempt.finishAttempt(200, null);
    this.deps.health.onSuccess(target.key, latency);
    publishDecision(this.deps.bus, ex, target, 'SUCCESS', null, latency, attempt.candidates, attempt.attemptNo);
    const receipt = await this.endings.endStream(ex, res, usage, responseHash.digest('hex'));
    if (receipt) this.remember(ex, assembler?.completion(), receipt.cost_usd, target);
    return 'answered';
  }


}

/** The usage the upstream reported, or an estimate from the request and the text delivered. */
async function usageOf(reported: Omit<Usage, 'estimated'> | null, body: Record<string, unknown>, deliveredText: () => string): Promise<Usage> {
  if (reported) return { ...reported, estimated: false };
  return {
    promptTokens: await estimatePromptTokens(body),
    completionTokens: await estimateCompletionTokens(deliveredText()),
    cachedTokens: 0,
    estimated: true,
  };
}

function collectText(parsed: any): string {
  let text = '';
  for (const c of parsed?.choices ?? []) {
    if (typeof c?.message?.content === 'string') text += c.message.content;
    for (const tc of c?.message?.tool_calls ?? []) if (typeof tc?.function?.arguments === 'string') text += tc.function.arguments;
  }
  return text;
}

function sha256(buf: Buffer): string {
  return hash('sha256', buf);
}

/** Exponential backoff with full jitter between retry rounds; wakes early on abort. */
function backoff(round: number, signal: AbortSignal): Promise<void> {
  const ms = Math.random() * Math.min(MAX_BACKOFF_MS, 100 * 2 ** (round - 1));
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

async function drained(res: ServerResponse, signal: AbortSignal): Promise<void> {
  await once(res, 'drain', { signal }).catch(() => undefined);
}
