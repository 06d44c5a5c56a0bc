// The proxy path, the same for every client protocol (src/protocols/):
//   auth → body → parse (canonical form) → resolve route → limits → cache → attempts
//   (failover) → respond → receipt.
// Every request ends in exactly one receipt, appended to the WAL before the response
// completes (for streams: before their closing event); endings.ts writes those endings.
import { createHash, hash } from 'node:crypto';
import { once } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { StringDecoder } from 'node:string_decoder';
import type { BudgetEnforcer } from '../budgets/enforcer.js';
import type { Config } from '../config.js';
import type { Candidate, LiveBus } from '../live/events.js';
import type { Metrics } from '../metrics.js';
import { completionChunks } from '../protocols/assemble.js';
import type { ChatCompletion } from '../protocols/canonical.js';
import type { ClientProtocol, ParsedRequest, StreamPump } from '../protocols/protocol.js';
import { Transcoder } from '../protocols/transcode.js';
import { adapterFor } from '../providers/adapter.js';
import type { ReceiptDraft, UnsignedReceipt } from '../receipts/receipt.js';
import { roundMs } from '../receipts/receipt.js';
import { isRouteAllowed, type Catalog, type Route, type Target } from '../routing/catalog.js';
import type { TargetHealth } from '../routing/health.js';
import type { RetryBudgets } from '../routing/retry-budget.js';
import { decideRoute, type DecideHooks } from '../routing/decide.js';
import type { Tracing } from '../telemetry/tracing.js';
import { orderTargets } from '../routing/strategy.js';
import { assertAllowedFrom } from './allowed-cidrs.js';
import { assertCredentialsOnce, type ApiKeyRecord, type KeyAuthenticator } from './auth.js';
import { readRequestBody, readUpstreamBody } from './body.js';
import type { CacheHit, CacheStage } from './cache.js';
import type { Ingress } from './ingress.js';
import { candidatesOf, publishDecision } from './decisions.js';
import { Endings, ZERO_USAGE } from './endings.js';
import { Exchange } from './exchange.js';
import {
  GatewayError,
  badRequest,
  modelNotFound,
  rateLimited,
  routeForbidden,
  serviceUnavailable,
  upstreamFailed,
} from './errors.js';
import type { RateLimiter } from './limits.js';
import { UpstreamFailure, classify, parseRetryAfter, type UpstreamClient } from './upstream.js';
import { estimateCompletionTokens, estimatePromptTokens, maxCostOf, readUsage, type Usage } from './usage.js';
import { parseJsonBody } from './validate.js';

const MAX_BACKOFF_MS = 2_000;
const MAX_ERROR_BODY = 64 * 1024;

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
  /** The prompt classifier rules may read (routing/classifier.ts). */
  classify: DecideHooks['classify'];
  /** OpenTelemetry spans; absent: tracing is off. */
  tracing?: Tracing | null;
}

/** Why the signal fired: the client went away, or the route's total timeout passed. */
class ClientGone extends Error {}

/** Why an attempt did not answer: the failure to fail over from, and any Retry-After hint. */
interface Unanswered {
  failure: UpstreamFailure;
  /** The upstream answered 429. */
  rateLimited: boolean;
  retryAfterMs?: number;
}

export class Pipeline {
  private readonly endings: Endings;
  private readonly decideHooks: DecideHooks;

  constructor(private readonly deps: PipelineDeps) {
    this.endings = new Endings(deps);
    this.decideHooks = {
      classify: deps.classify,
      onRuleError: (route, rule, err) => {
        deps.metrics.ruleErrors.inc({ route, rule });
        deps.log.warn({ route, rule, err: String(err).split('\n')[0] }, 'routing rule failed to evaluate; counted as false');
      },
    };
  }

  async handle(protocol: ClientProtocol, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const ex = new Exchange(protocol, req);
    ex.trace = this.deps.tracing?.startRequest(req.headers, protocol) ?? null;
    try {
      assertCredentialsOnce(req.rawHeaders);
      ex.key = await this.deps.ingress.admit(req, () => this.authenticate(protocol.authorization(req)));
      // A key with an IP allowlist used from elsewhere: 403 ip_not_allowed, with its receipt.
      assertAllowedFrom(ex.key.allowedCidrs, req, this.deps.config.trustedProxies);
      const raw = await readRequestBody(req, this.deps.config.maxBodyBytes);
      ex.requestSha256 = hash('sha256', raw);
      const parsed = protocol.parse(parseJsonBody(raw));
      ex.parsed = parsed;
      ex.requestedModel = parsed.model;
      ex.stream = parsed.stream;
      ex.attribute(req, parsed);
      await protocol.prepare?.(parsed, ex.key.teamId);

      const catalog = this.deps.catalog();
      const route = catalog.resolve(parsed.model);
      if (!route || route.targets.length === 0) throw modelNotFound(parsed.model);
      ex.route = route;
      if (!isRouteAllowed(ex.key.allowedRoutes, route)) throw routeForbidden(route.name);
      const decision = decideRoute(catalog, route, ex.decisionRequest(req.headers, catalog.teams.get(ex.key.teamId) ?? ''), this.decideHooks);
      ex.rule = decision.rule;
      ex.classifierTier = decision.classifier?.tier ?? null;
      ex.experiment = decision.experiment;
      ex.variant = decision.variant;
      const served = servingRoute(decision.route, protocol, parsed);
      ex.served = served;
      ex.responseHeaders = (await this.deps.limiter.admit(ex.key.id, ex.key.rpmLimit, ex.key.tpmLimit)).headers;
      const budgets = this.deps.budgets;
      if (budgets) {
        const { key } = ex;
        const subject = { teamId: key.teamId, apiKeyId: key.id, feature: ex.feature };
        const request = parsed.chat ?? parsed.body;
        ex.budgetTicket = await budgets.admit(subject, () => maxCostOf(served.targets, request, this.deps.config.budgets.defaultMaxTokens), ex.requestId);
      }

      const hit = await this.lookInCache(ex, route, parsed, req.headers['x-tollgate-cache']);
      if (hit) return await this.answerFromCache(ex, hit, res);
      await this.forward(ex, served, res);
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

  private async lookInCache(ex: Exchange, route: Route, parsed: ParsedRequest, header: string | string[] | undefined): Promise<CacheHit | null> {
    const cache = this.deps.cache;
    // Chat-like protocols share one canonical question, and so their answers.
    const plan = cache?.plan(parsed.chat ? 'chat' : 'embeddings', ex.key!.teamId, route, parsed.chat ?? parsed.body, header);
    if (!cache || !plan) return null;
    ex.cacheStatus = plan.lookup ? 'miss' : 'bypass';
    const { hit, lookup } = await cache.lookup(plan);
    ex.cacheLookup = lookup;
    return hit;
  }

  private async answerFromCache(ex: Exchange, hit: CacheHit, res: ServerResponse): Promise<void> {
    const { entry } = hit;
    ex.cacheStatus = hit.status;
    ex.cacheHit = { similarity: hit.similarity, savedCostUsd: entry.costUsd, provider: entry.provider, model: entry.model };
    ex.responseHeaders['x-tollgate-cache-similarity'] = hit.similarity.toFixed(4);
    publishDecision(this.deps.bus, ex, null, 'CACHE_HIT', `cache_${hit.status}`, null, []);
    const stored = JSON.parse(entry.answer) as Record<string, unknown>;
    const usage: Usage = { ...(readUsage(stored.usage) ?? ZERO_USAGE), estimated: false };
    const ctx = ex.renderContext();
    // A fresh answer: new id and time, same content and usage.
    const answer = stored.object === 'chat.completion' ? ({ ...stored, id: ctx.id, created: Math.floor(Date.now() / 1000) } as unknown as ChatCompletion) : stored;
    if (!ex.stream) {
      const json = JSON.stringify(ex.protocol.render(answer as ChatCompletion, ctx));
      await this.endings.respond(ex, res, 200, json, { receiptStatus: 'ok', errorCode: null, usage, responseSha256: sha256(json) });
      return;
    }
    const replay = new Transcoder(FINISHED, ex.protocol.encoder(ctx));
    const events = replay.encode(completionChunks(answer as ChatCompletion, ctx.id));
    const responseHash = createHash('sha256').update(events);
    ex.ttftMs = ex.elapsed();
    this.endings.startStream(ex, res, 0);
    res.write(events);
    await this.endings.endStream(ex, res, replay, usage, responseHash);
  }

  /** After a complete, successful answer: keep it for the next identical (or similar) request. */
  private remember(ex: Exchange, answer: unknown, costUsd: number | null, target: Target): void {
    if (!ex.cacheLookup || !this.deps.cache || !answer || typeof answer !== 'object') return;
    this.deps.cache
      .store(ex.cacheLookup, answer as Record<string, unknown>, costUsd, target.provider.name, target.model)
      .catch((err: unknown) => this.deps.log.warn({ err: String(err), requestId: ex.requestId }, 'could not store the answer in the cache'));
  }

  // ── Routing and failover ─────────────────────────────────────────────────────────────

  private async forward(ex: Exchange, route: Route, res: ServerResponse): Promise<void> {
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
      let last: Unanswered | null = null;
      let outOfBudget = false;
      // DESIGN §4: when every target was rate-limited or is cooling after a 429 (and none
      // failed otherwise), the client gets a 429 with the smallest wait, not a 502.
      let onlyRateLimited = true;
      let soonestRetryMs = Number.POSITIVE_INFINITY;
      attempts: for (let round = 0; round <= route.retries; round++) {
        if (round > 0) await backoff(round, controller.signal);
        for (const target of order) {
          if (controller.signal.aborted) break attempts;
          const admission = health.admit(target.key);
          if (!admission.ok) {
            publishDecision(this.deps.bus, ex, target, 'SKIPPED', admission.reason, null, candidates);
            if (admission.reason === 'cooling_down') soonestRetryMs = Math.min(soonestRetryMs, admission.untilMs - Date.now());
            else onlyRateLimited = false;
            continue;
          }
          if (ex.attempts.length > 0 && !budget.tryRetry()) {
            health.release(target.key); // admitted, never called
            publishDecision(this.deps.bus, ex, target, 'SKIPPED', 'retry_budget_exhausted', null, candidates);
            this.deps.metrics.retriesRefused.inc({ route: route.name });
            outOfBudget = true;
            break attempts;
          }
          const outcome = await this.attempt(ex, target, res, controller.signal, candidates);
          if (outcome === 'answered') return;
          last = outcome;
          if (outcome.rateLimited) soonestRetryMs = Math.min(soonestRetryMs, outcome.retryAfterMs ?? Number.POSITIVE_INFINITY);
          else onlyRateLimited = false;
        }
      }
      const reason = controller.signal.reason;
      if (reason instanceof ClientGone) {
        publishDecision(this.deps.bus, ex, null, 'CANCELLED', 'client_cancelled', null, []);
        return await this.endings.cancelled(ex);
      }
      if (onlyRateLimited && !outOfBudget && !(reason instanceof UpstreamFailure)) {
        const waitMs = Number.isFinite(soonestRetryMs) ? soonestRetryMs : this.deps.config.breaker.cooldownMs;
        throw rateLimited(
          `Every upstream target of '${route.name.slice(0, 200)}' is rate limited; retry after the wait the upstream asked for.`,
          Math.max(1, waitMs) / 1000,
        );
      }
      const failure = reason instanceof UpstreamFailure ? reason : last?.failure;
      const message =
        ex.attempts.length === 0
          ? 'No upstream target is available for this route right now (all circuits open or cooling down).'
          : `All upstream targets failed (${ex.attempts.length} attempt${ex.attempts.length === 1 ? '' : 's'}${outOfBudget ? ", then the route's retry budget ran out" : ''}; last: ${failure?.message ?? 'unknown error'}).`;
      throw upstreamFailed(message, failure?.isTimeout ?? false);
    } finally {
      clearTimeout(totalTimer);
      res.off('close', onClose);
    }
  }

  /**
   * One call to one target. Returns 'answered' once the client has its response (success,
   * or an upstream 4xx passed through), or what to fail over from.
   */
  private async attempt(ex: Exchange, target: Target, res: ServerResponse, signal: AbortSignal, candidates: Candidate[]): Promise<'answered' | Unanswered> {
    const { health, upstream, metrics } = this.deps;
    const protocol = ex.protocol;
    const parsed = ex.parsed!;
    const attemptNo = ex.attempts.length + 1;
    publishDecision(this.deps.bus, ex, target, 'ATTEMPT', null, null, candidates, attemptNo);
    const started = performance.now();
    const finishAttempt = (status: number, error: string | null) => {
      const latency = performance.now() - started;
      ex.upstreamMs += latency;
      ex.attempts.push({ provider: target.provider.name, model: target.model, status, error, latency_ms: roundMs(latency) });
      metrics.upstreamAttempts.inc({ provider: target.provider.name, outcome: error ? 'failure' : 'success' });
      span?.end(status, error);
      return latency;
    };
    const failover = (failure: UpstreamFailure, status: number, retryAfterMs?: number): Unanswered => {
      const latency = finishAttempt(status, failure.kind);
      if (failure.kind === 'aborted' || signal.reason instanceof ClientGone) health.release(target.key);
      else health.onFailure(target.key, { retryAfterMs, latencyMs: latency });
      publishDecision(this.deps.bus, ex, target, 'FAILOVER', failure.kind, latency, candidates, attemptNo);
      return { failure, rateLimited: status === 429, retryAfterMs };
    };

    // Same protocol on both sides: the client's body goes through; otherwise it is translated.
    const adapter = adapterFor(target.provider);
    const native = adapter.wires.has(protocol.wire);
    let request;
    try {
      request = native ? adapter.passthrough(protocol.wire, parsed.body, target, ex.stream) : adapter.request(parsed.chat!, target, ex.stream);
    } catch (err) {
      health.release(target.key); // admitted, never called: what the upstream cannot take is a 400
      throw err;
    }

    // The attempt's span (declared here, ended by finishAttempt): its context goes upstream.
    const span = ex.trace?.startAttempt(target) ?? null;
    let response;
    try {
      response = await upstream.post(target.provider, request.path, request.body, signal, { headers: span?.headers });
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
      await this.endings.fail(ex, res, adapter.error(status, errorBody), 'error');
      return 'answered';
    }

    ex.target = target;
    if (ex.stream) {
      const pump = native ? protocol.relay!(parsed, ex.cacheLookup !== null) : new Transcoder(adapter.decoder(), protocol.encoder(ex.renderContext()));
      return this.relayStream(ex, target, pump, response.body, res, signal, { finishAttempt, failover, candidates, attemptNo });
    }

    let buf: Buffer;
    let answer: ChatCompletion;
    try {
      buf = await readUpstreamBody(response.body);
      const json = JSON.parse(buf.toString('utf8'));
      // Chat-like answers are read as canonical (receipt, cache) even when they pass through.
      answer = native && !parsed.chat ? json : adapter.answer(json);
    } catch (err) {
      ex.target = null;
      const failure = err instanceof SyntaxError ? new UpstreamFailure('network_error', 'upstream sent invalid JSON') : classify(err, signal);
      return failover(failure, err instanceof SyntaxError ? response.status : 0);
    }
    const latency = finishAttempt(response.status, null);
    health.onSuccess(target.key, latency);
    publishDecision(this.deps.bus, ex, target, 'SUCCESS', null, latency, candidates, attemptNo);

    const usage = await usageOf(readUsage(answer?.usage), parsed, () => collectText(answer));
    this.deps.limiter.recordTokens(ex.key!.id, usage.promptTokens + usage.completionTokens, ex.key!.tpmLimit);
    const body = native ? buf : JSON.stringify(protocol.render(answer, ex.renderContext()));
    const receipt = await this.endings.respond(ex, res, response.status, body, { receiptStatus: 'ok', errorCode: null, usage, responseSha256: sha256(body) });
    this.remember(ex, answer, receipt.cost_usd, target);
    return 'answered';
  }

  private async relayStream(
    ex: Exchange,
    target: Target,
    pump: StreamPump,
    upstreamBody: AsyncIterable<Buffer> & { destroy(): void },
    res: ServerResponse,
    signal: AbortSignal,
    attempt: {
      finishAttempt: (status: number, error: string | null) => number;
      failover: (failure: UpstreamFailure, status: number) => Unanswered;
      candidates: Candidate[];
      attemptNo: number;
    },
  ): Promise<'answered' | Unanswered> {
    const decoder = new StringDecoder('utf8');
    const responseHash = createHash('sha256');
    let started = false;
    let breakage: UpstreamFailure | null = null;
    try {
      for await (const chunk of upstreamBody) {
        const out = pump.push(decoder.write(chunk));
        if (!out) continue;
        if (!started) {
          // Nothing has reached the client yet: an error event up front can still fail over.
          if (pump.tally.upstreamError && pump.tally.contentChunks === 0) {
            upstreamBody.destroy();
            ex.target = null;
            return attempt.failover(new UpstreamFailure('network_error', 'upstream stream began with an error'), 200);
          }
          started = true;
          ex.ttftMs = ex.elapsed();
          // The attempt that is streaming is recorded when it ends: count it in the header now.
          this.endings.startStream(ex, res, attempt.attemptNo);
        }
        responseHash.update(out);
        if (!res.write(out)) await drained(res, signal);
      }
      const tail = pump.push(decoder.end()) + pump.end();
      if (tail && started) {
        responseHash.update(tail);
        res.write(tail);
      }
      if (!pump.tally.done) breakage = new UpstreamFailure('connection_reset', 'upstream stream ended before its end event');
    } catch (err) {
      breakage = classify(err, signal);
    }

    if (!started) {
      ex.target = null;
      return attempt.failover(breakage ?? new UpstreamFailure('network_error', 'upstream stream was empty'), 200);
    }

    // From here on the client has bytes: no failover, whatever happens.
    const tally = pump.tally;
    const usage = await usageOf(readUsage(tally.usage), ex.parsed!, () => tally.deliveredText);
    this.deps.limiter.recordTokens(ex.key!.id, usage.promptTokens + usage.completionTokens, ex.key!.tpmLimit);
    if (signal.reason instanceof ClientGone) {
      attempt.finishAttempt(200, 'client_cancelled');
      this.deps.health.release(target.key);
      publishDecision(this.deps.bus, ex, target, 'CANCELLED', 'client_cancelled', null, attempt.candidates, attempt.attemptNo);
      await this.endings.cancelled(ex, usage, responseHash.digest('hex'));
      return 'answered';
    }
    if (breakage) {
      const latency = attempt.finishAttempt(200, breakage.kind);
      this.deps.health.onFailure(target.key, { latencyMs: latency });
      publishDecision(this.deps.bus, ex, target, 'FAILED', `mid_stream_${breakage.kind}`, latency, attempt.candidates, attempt.attemptNo);
      const error = new GatewayError(
        502,
        'api_error',
        'upstream_stream_interrupted',
        `The upstream stream broke after the response started (${breakage.message}); the answer is incomplete.`,
      );
      await this.endings.breakStream(ex, res, pump, error, usage, responseHash);
      return 'answered';
    }

    const latency = attempt.finishAttempt(200, null);
    this.deps.health.onSuccess(target.key, latency);
    publishDecision(this.deps.bus, ex, target, 'SUCCESS', null, latency, attempt.candidates, attempt.attemptNo);
    const receipt = await this.endings.endStream(ex, res, pump, usage, responseHash);
    if (receipt) this.remember(ex, pump.completion(), receipt.cost_usd, target);
    return 'answered';
  }
}

/** A decoder that has nothing more to say: a cache replay feeds its chunks directly. */
const FINISHED = { push: () => [], end: () => [], done: true };

/**
 * The route with the targets that can serve this request: all of them, unless the request
 * can only go to an upstream that speaks its protocol natively (then a route with none of
 * those is a 400).
 */
function servingRoute(route: Route, protocol: ClientProtocol, parsed: ParsedRequest): Route {
  if (!parsed.nativeOnly) return route;
  const targets = route.targets.filter((t) => adapterFor(t.provider).wires.has(protocol.wire));
  if (targets.length === 0) {
    throw badRequest(`The route '${route.name.slice(0, 200)}' cannot serve this request: ${parsed.nativeOnly.reason}.`, parsed.nativeOnly.param, 'unsupported_value');
  }
  return targets.length === route.targets.length ? route : { ...route, targets };
}

/** The usage the upstream reported, or an estimate from the request and the text delivered. */
async function usageOf(reported: Omit<Usage, 'estimated'> | null, parsed: ParsedRequest, deliveredText: () => string): Promise<Usage> {
  if (reported) return { ...reported, estimated: false };
  return {
    promptTokens: await estimatePromptTokens(parsed.chat ?? parsed.body),
    completionTokens: await estimateCompletionTokens(deliveredText()),
    cachedTokens: 0,
    cacheWriteTokens: 0,
    reasoningTokens: 0,
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

function sha256(body: string | Buffer): string {
  return hash('sha256', body);
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
