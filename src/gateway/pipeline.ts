// The proxy path, the same for every client protocol (src/protocols/):
//   auth → body → parse (canonical form) → resolve route → limits → cache → attempts
//   (failover) → respond → receipt.
// Every request ends in exactly one receipt, appended to the WAL before the response
// completes (for streams: before their closing event); endings.ts writes those endings.
import { hash } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { asksForUnreplayable } from '../cache/policy.js';
import type { ChatCompletion } from '../protocols/canonical.js';
import type { ClientProtocol, ParsedRequest } from '../protocols/protocol.js';
import { Transcoder } from '../protocols/transcode.js';
import { adapterFor } from '../providers/registry.js';
import type { UnsignedReceipt } from '../receipts/receipt.js';
import { isRouteAllowed, type Route, type Target } from '../routing/catalog.js';
import { decideRoute } from '../routing/decide.js';
import { orderTargets } from '../routing/strategy.js';
import { assertAllowedFrom } from './allowed-cidrs.js';
import { AttemptLog, answerGenerated, billUnansweredCall, type Prepared, prepareRequest, send, type Unanswered, usageOf } from './attempt.js';
import { type ApiKeyRecord, assertCredentialsOnce } from './auth.js';
import { readRequestBody } from './body.js';
import type { CacheHit } from './cache.js';
import { backoffMs, Cancellation, ClientGone, delay } from './cancellation.js';
import { Cascade, type CascadeStep, cascadeStep, isCascade } from './cascade.js';
import { candidatesOf, publishDecision } from './decisions.js';
import type { PipelineDeps } from './deps.js';
import { Endings, ZERO_USAGE } from './endings.js';
import { badRequest, GatewayError, modelNotFound, rateLimited, routeForbidden, serviceUnavailable, upstreamFailed } from './errors.js';
import { Exchange } from './exchange.js';
import { relayStream } from './stream-relay.js';
import { classify, UpstreamFailure } from './upstream.js';
import { billedTotal, maxCostOf, readUsage, tokenCeilingOf, type Usage } from './usage.js';
import { parseJsonBody } from './validate.js';

export class Pipeline {
  private readonly endings: Endings;

  constructor(private readonly deps: PipelineDeps) {
    this.endings = new Endings(deps);
  }

  async handle(protocol: ClientProtocol, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const ex = new Exchange(protocol, req);
    ex.trace = this.deps.tracing?.startRequest(req.headers, protocol) ?? null;
    try {
      assertCredentialsOnce(req.rawHeaders);
      ex.key = await this.deps.ingress.admit(req, () => this.authenticate(protocol.authorization(req)));
      // A key with an IP allowlist used from elsewhere: 403 ip_not_allowed, with its receipt.
      assertAllowedFrom(ex.key.allowedCidrs, req, this.deps.config.trustedProxies);
      if (protocol.passthroughHeaders) ex.passthroughHeaders = pickHeaders(req.headers, protocol.passthroughHeaders);
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
      const decision = decideRoute(catalog, route, ex.decisionRequest(req.headers, catalog.teams.get(ex.key.teamId) ?? ''), this.deps.decide);
      ex.rule = decision.rule;
      ex.classifierTier = decision.classifier?.tier ?? null;
      ex.experiment = decision.experiment;
      ex.variant = decision.variant;
      const served = servingRoute(decision.route, protocol, parsed);
      ex.served = served;
      // With a TPM limit a request reserves its prompt and the output it asks for (no default).
      const ceiling = ex.key.tpmLimit ? await tokenCeilingOf(parsed, 0) : null;
      const limits = await this.deps.limiter.admit(ex.key.id, ex.key.rpmLimit, ex.key.tpmLimit, ceiling ? ceiling.prompt + ceiling.completion : 0);
      ex.responseHeaders = limits.headers;
      ex.tokenReservation = limits.reservation;
      const budgets = this.deps.budgets;
      if (budgets) {
        const { key } = ex;
        const subject = { teamId: key.teamId, apiKeyId: key.id, feature: ex.feature };
        const climbs = isCascade(served, parsed);
        ex.budgetTicket = await budgets.admit(
          subject,
          () => maxCostOf(served.targets, parsed, this.deps.config.budgets.defaultMaxTokens, climbs),
          ex.requestId,
          this.totalTimeoutMs(served),
          ex.startedAt,
        );
      }

      const hit = await this.lookInCache(ex, served, parsed, req.headers['x-tollgate-cache']);
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
    // A native-only chat-like request says things its canonical question leaves out (a built-in
    // or server tool, a document block, extended thinking, top_k): keyed on that question it
    // would be answered with another request's answer, so it is neither looked up nor stored.
    // (Embeddings are native-only too, but keyed on their own body.) Nor is one asking for what
    // a cached answer cannot give back (log probabilities, included extras).
    if (cache && parsed.chat && (parsed.nativeOnly || asksForUnreplayable(parsed.body))) {
      ex.cacheStatus = 'bypass';
      return null;
    }
    // Chat-like protocols share one canonical question, and so their answers.
    // What a native upstream gets beyond the canonical question (and the headers that go with it) keys too.
    const question =
      parsed.chat && (parsed.untranslated || ex.passthroughHeaders)
        ? { ...parsed.chat, untranslated: [parsed.untranslated, ex.passthroughHeaders] }
        : parsed.chat;
    const plan = cache?.plan(parsed.chat ? 'chat' : 'embeddings', ex.key!.teamId, route, question ?? parsed.body, header);
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
    const usage: Usage = { ...(readUsage(stored.usage) ?? ZERO_USAGE), estimated: entry.usageEstimated === true };
    // A fresh answer: new id and time, same content and usage.
    const answer = Array.isArray(stored.choices) ? { ...stored, id: ex.renderContext().id, created: Math.floor(Date.now() / 1000) } : stored;
    await this.endings.deliver(ex, res, answer as unknown as ChatCompletion, usage);
  }

  /** After a complete, successful answer: keep it for the next identical (or similar) request. */
  private remember(ex: Exchange, answer: unknown, receipt: UnsignedReceipt, target: Target): void {
    if (!ex.cacheLookup || !this.deps.cache || !answer || typeof answer !== 'object') return;
    this.deps.cache
      .store(ex.cacheLookup, answer as Record<string, unknown>, receipt, target.provider.name, target.model)
      .catch((err: unknown) => this.deps.log.warn({ err: String(err), requestId: ex.requestId }, 'could not store the answer in the cache'));
  }

  // ── Routing and failover ─────────────────────────────────────────────────────────────

  private async forward(ex: Exchange, route: Route, res: ServerResponse): Promise<void> {
    const { health } = this.deps;
    const signal = new Cancellation();
    const onClose = () => {
      if (!res.writableFinished) signal.abort(new ClientGone('client closed the connection'));
    };
    res.on('close', onClose);
    // A client that left while the request waited for limits, budgets or a semantic-cache
    // embedding has already closed: its 'close' came before the listener, so look now.
    if (res.destroyed) onClose();
    const totalTimer = setTimeout(() => signal.abort(new UpstreamFailure('timeout_total', 'request exceeded its total timeout')), this.totalTimeoutMs(route));
    try {
      const order = orderTargets(route, health, { stream: ex.stream });
      const candidates = this.deps.bus.decisions.hasListeners ? candidatesOf(order, this.deps.health, ex.stream) : [];
      const budget = this.deps.retryBudgets.for(route.name);
      budget.request();
      // A cascade climbs its steps once, cheap first (DESIGN §5); `retries` does not re-run it.
      const cascade = isCascade(route, ex.parsed!) ? new Cascade(route.accept) : null;
      const rounds = cascade ? 0 : route.retries;
      let last: Unanswered | null = null;
      let outOfBudget = false;
      // DESIGN §4: when every target was rate-limited or is cooling after a 429 (and none
      // failed otherwise), the client gets a 429 with the smallest wait, not a 502.
      let onlyRateLimited = true;
      let soonestRetryMs = Number.POSITIVE_INFINITY;
      // The 400 of a target that cannot take this request: the answer when none of them can.
      let untakeable: GatewayError | null = null;
      const untakeableTargets = new Set<string>();
      attempts: for (let round = 0; round <= rounds; round++) {
        if (round > 0) await delay(backoffMs(round), signal);
        for (const target of order) {
          if (signal.aborted) break attempts;
          const admission = health.admit(target.key);
          if (!admission.ok) {
            publishDecision(this.deps.bus, ex, target, 'SKIPPED', admission.reason, null, candidates);
            if (admission.reason === 'cooling_down') soonestRetryMs = Math.min(soonestRetryMs, admission.untilMs - Date.now());
            else onlyRateLimited = false;
            continue;
          }
          // A target that cannot take this request is passed over before it costs a retry or an attempt.
          let prepared: ReturnType<typeof prepareRequest>;
          try {
            prepared = prepareRequest(ex, target, cascade !== null);
          } catch (err) {
            health.release(target.key, admission); // admitted, never called (a half-open target's probe slot)
            throw err;
          }
          if ('untakeable' in prepared) {
            health.release(target.key, admission); // admitted, never called
            publishDecision(this.deps.bus, ex, target, 'SKIPPED', 'unsupported', null, candidates);
            untakeable ??= prepared.untakeable;
            untakeableTargets.add(target.key);
            continue;
          }
          // Climbing past a rejected answer is an escalation, not a retry: the budget is for failures.
          if (ex.attempts.length > 0 && !cascade?.escalating && !budget.tryRetry()) {
            health.release(target.key, admission); // admitted, never called
            publishDecision(this.deps.bus, ex, target, 'SKIPPED', 'retry_budget_exhausted', null, candidates);
            this.deps.metrics.retriesRefused.inc({ route: route.name });
            outOfBudget = true;
            break attempts;
          }
          const log = new AttemptLog(this.deps, ex, target, candidates, signal, admission.probe);
          const outcome = cascade ? await this.climb(ex, cascade, log, prepared, res, signal) : await this.attempt(ex, log, prepared, res, signal);
          if (outcome === 'answered') return;
          if (outcome === 'rejected') continue;
          last = outcome;
          await billUnansweredCall(this.deps.limiter, ex, target, outcome.failure);
          if (outcome.rateLimited) soonestRetryMs = Math.min(soonestRetryMs, outcome.retryAfterMs ?? Number.POSITIVE_INFINITY);
          else onlyRateLimited = false;
        }
      }
      const reason = signal.reason;
      if (reason instanceof ClientGone) {
        publishDecision(this.deps.bus, ex, null, 'CANCELLED', 'client_cancelled', null, []);
        return await this.endings.cancelled(ex);
      }
      // Steps answered, none acceptably, and no stronger one could: the best there is (DESIGN §5).
      if (cascade?.lastAnswer) return await this.settleClimb(ex, cascade.lastAnswer, res);
      if (untakeable && untakeableTargets.size === order.length) throw untakeable;
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
   * How long forwarding to `route` may take in all: its attempts, backoffs and stream. (A
   * provider's own timeoutMs bounds each call to it: UpstreamClient.)
   */
  private totalTimeoutMs(route: Route): number {
    return route.timeoutMs ?? this.deps.config.timeouts.totalMs;
  }

  /**
   * One call to one target. Returns 'answered' once the client has its response (success,
   * or an upstream 4xx passed through), or what to fail over from.
   */
  private async attempt(
    ex: Exchange,
    log: AttemptLog,
    { adapter, request, native }: Prepared,
    res: ServerResponse,
    signal: Cancellation,
  ): Promise<'answered' | Unanswered> {
    const { protocol } = ex;
    const parsed = ex.parsed!;
    const { target } = log;
    const sent = await send(this.deps, log, adapter, request, signal, ex.stream);
    if ('unanswered' in sent) return sent.unanswered;
    ex.target = target;
    if ('refused' in sent) {
      // A 4xx about the request itself: no failover, the client gets it back.
      await this.endings.fail(ex, res, sent.refused, 'error');
      return 'answered';
    }
    const response = sent.ok;

    if (ex.stream) {
      const pump = native
        ? protocol.relay!(ex.renderContext(), ex.cacheLookup !== null)
        : new Transcoder(adapter.decoder(), protocol.encoder(ex.renderContext()));
      const relayed = await relayStream(this.deps, this.endings, ex, log, pump, response.body, res, signal);
      if ('unanswered' in relayed) return relayed.unanswered;
      if (relayed.receipt) this.remember(ex, pump.completion(), relayed.receipt, target);
      return 'answered';
    }

    let buf: Buffer;
    let json: unknown;
    let answer: ChatCompletion;
    try {
      buf = await response.body.read();
      json = JSON.parse(buf.toString('utf8'));
      // Chat-like answers are read as canonical (receipt, cache) even when they pass through.
      answer = native && !parsed.chat ? (json as ChatCompletion) : adapter.answer(json, native ? protocol.wire : undefined);
    } catch (err) {
      ex.target = null;
      const failure = err instanceof SyntaxError ? new UpstreamFailure('network_error', 'upstream sent invalid JSON') : classify(err, signal);
      return log.failover(failure, err instanceof SyntaxError ? response.status : 0);
    }
    log.succeeded(response.status);

    const usage = await usageOf(readUsage(answer?.usage), parsed, () => answerGenerated(answer));
    this.deps.limiter.recordTokens(ex.key!.id, usage.promptTokens + usage.completionTokens, ex.key!.tpmLimit);
    const body = !native
      ? JSON.stringify(protocol.render(answer, ex.renderContext()))
      : protocol.relayAnswer
        ? JSON.stringify(protocol.relayAnswer(json, ex.renderContext()))
        : buf;
    const receipt = await this.endings.respond(ex, res, response.status, body, {
      receiptStatus: 'ok',
      errorCode: null,
      usage,
      responseSha256: hash('sha256', body),
    });
    this.remember(ex, answer, receipt, target);
    return 'answered';
  }

  /**
   * One step of a cascade: an accepted answer goes to the client; a rejected one means
   * climbing on ('rejected'); a failure fails over; a 4xx goes back to the client.
   */
  private async climb(
    ex: Exchange,
    cascade: Cascade,
    log: AttemptLog,
    prepared: Prepared,
    res: ServerResponse,
    signal: Cancellation,
  ): Promise<'answered' | 'rejected' | Unanswered> {
    const outcome = await cascadeStep(this.deps, ex, log, prepared, cascade.accept, signal);
    if ('unanswered' in outcome) {
      cascade.escalating = false;
      return outcome.unanswered;
    }
    ex.target = log.target;
    if ('refused' in outcome) {
      await this.endings.fail(ex, res, outcome.refused, 'error');
      return 'answered';
    }
    cascade.answered(outcome.step);
    ex.climb = billedTotal(cascade.steps);
    this.deps.limiter.recordTokens(ex.key!.id, outcome.step.usage.promptTokens + outcome.step.usage.completionTokens, ex.key!.tpmLimit);
    if (!outcome.step.verdict.accepted) return 'rejected';
    await this.settleClimb(ex, outcome.step, res);
    return 'answered';
  }

  /** The client gets the answer the cascade settled on; only an accepted one is remembered. */
  private async settleClimb(ex: Exchange, step: CascadeStep, res: ServerResponse): Promise<void> {
    ex.target = step.target;
    ex.accepted = step.verdict.accepted;
    const receipt = await this.endings.deliver(ex, res, step.answer, step.usage);
    if (receipt && step.verdict.accepted) this.remember(ex, step.answer, receipt, step.target);
  }
}

/**
 * The route with the targets that can serve this request: all of them, unless the request
 * can only go to an upstream that speaks its protocol natively (then a route with none of
 * those is a 400).
 */
function servingRoute(route: Route, protocol: ClientProtocol, parsed: ParsedRequest): Route {
  // A rule's or variant's targets whose provider cannot be called (stored before it was refused).
  if (route.targets.length === 0) throw serviceUnavailable(`The route '${route.name.slice(0, 200)}' has no target that can be called.`);
  if (!parsed.nativeOnly) return route;
  const targets = route.targets.filter((t) => adapterFor(t.provider).wires.has(protocol.wire));
  if (targets.length === 0) {
    throw badRequest(
      `The route '${route.name.slice(0, 200)}' cannot serve this request: ${parsed.nativeOnly.reason}.`,
      parsed.nativeOnly.param,
      'unsupported_value',
    );
  }
  return targets.length === route.targets.length ? route : { ...route, targets };
}

/** The named request headers that are present (null: none). */
function pickHeaders(headers: IncomingHttpHeaders, names: readonly string[]): Record<string, string> | null {
  let picked: Record<string, string> | null = null;
  for (const name of names) {
    const value = headers[name];
    if (value !== undefined) (picked ??= {})[name] = Array.isArray(value) ? value.join(',') : value;
  }
  return picked;
}
