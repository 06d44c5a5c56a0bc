// buildApp(deps) → { server, start, stop }: wires the gateway's parts around stores that the
// caller opened (src/main.ts in production, test/support in tests).

import { createHmac } from 'node:crypto';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import { recordTaskOutcome, TaskOutcomeInput } from './analytics/outcomes.js';
import type { BudgetCounters } from './budgets/counters.js';
import { BudgetEnforcer } from './budgets/enforcer.js';
import { type LeftoverSpend, spentInWindow } from './budgets/spend.js';
import { WebhookSender } from './budgets/webhooks.js';
import type { AnswerStore } from './cache/store.js';
import type { Config } from './config.js';
import { KeyAuthenticator, type KeyLookup } from './gateway/auth.js';
import { AuthThrottle } from './gateway/auth-throttle.js';
import { CacheStage } from './gateway/cache.js';
import { isCascade } from './gateway/cascade.js';
import { corsPolicy } from './gateway/cors.js';
import type { Logger } from './gateway/deps.js';
import { badRequest, serviceUnavailable } from './gateway/errors.js';
import { createAdminRequestHandler, createRequestHandler } from './gateway/http.js';
import { InboundServer } from './gateway/inbound.js';
import { Ingress } from './gateway/ingress.js';
import { RateLimiter, type WindowStore } from './gateway/limits.js';
import { Pipeline } from './gateway/pipeline.js';
import { type AccessTokenLookup, TokenVerifier } from './gateway/tokens.js';
import { UpstreamClient } from './gateway/upstream.js';
import { maxCostOf } from './gateway/usage.js';
import type { GraphQLServices } from './graphql/context.js';
import { createGraphQL } from './graphql/yoga.js';
import { LiveBus } from './live/events.js';
import { createMetrics, type JournalStatsSource, type Metrics } from './metrics.js';
import { type Listener, webhookAgent } from './net/egress.js';
import { deploymentMarker } from './net/hop.js';
import { chatProtocol } from './protocols/chat.js';
import { embeddingsProtocol } from './protocols/embeddings.js';
import { messagesProtocol } from './protocols/messages/protocol.js';
import type { ClientProtocol } from './protocols/protocol.js';
import { responsesProtocol } from './protocols/responses/protocol.js';
import type { Receipt, ReceiptDraft, UnsignedReceipt } from './receipts/receipt.js';
import { redactSecrets } from './redact.js';
import { CatalogSource, type CatalogStore } from './routing/catalog-source.js';
import { classifyPrompt, warmUpClassifier } from './routing/classifier.js';
import type { DecideHooks } from './routing/decide.js';
import { explainRoute } from './routing/explain.js';
import { TargetHealth } from './routing/health.js';
import { RetryBudgets } from './routing/retry-budget.js';
import type { Actor } from './store/admin/audit.js';
import type { BudgetRecord } from './store/admin/pricing.js';
import { AdminStoreError } from './store/admin/validators.js';
import type { ResponseStore } from './store/responses.js';
import type { Tracing } from './telemetry/tracing.js';

/** The longest shutdown waits for budget alerts still being delivered. */
const WEBHOOK_DRAIN_MS = 5_000;

export interface AppStore extends CatalogStore {
  /** The same store, naming `actor` in the audit log. */
  as(actor: Actor): AppStore;
  teams: KeyLookup &
    AccessTokenLookup & {
      ensureTeam(name: string): Promise<{ id: string }>;
      createApiKey(input: { teamId: string; name: string }): Promise<{ apiKey: { id: string; teamId: string }; secret: string }>;
    };
  pricing: { listBudgets(): Promise<BudgetRecord[]> };
}

/** Appends resolve once the receipt is in the WAL; signing happens off the request path. */
export interface AppJournal extends JournalStatsSource {
  /** Resolves once the receipt is in the WAL. */
  append(draft: ReceiptDraft): Promise<UnsignedReceipt>;
  /** A receipt not in ClickHouse yet, from the WAL (undefined: ClickHouse has it, if anyone does). */
  find(id: string): Promise<Receipt | undefined>;
  /** Resolves once the receipts appended so far are in ClickHouse (true), or after `timeoutMs` (false). */
  flush(timeoutMs?: number): Promise<boolean>;
}

export interface AppDeps {
  config: Config;
  log: Logger;
  store: AppStore;
  journal: AppJournal;
  jwks: () => object;
  findStoredReceipt: (id: string) => Promise<Receipt | null>;
  adminToken: string;
  /** Store checks for /readyz: name → throws when not ready. */
  readinessChecks: Record<string, () => Promise<unknown>>;
  /** Stored Responses API answers; none = `store` is ignored and previous_response_id unknown. */
  responses?: ResponseStore | null;
  /** The response cache's storage; none = no caching. */
  answers?: AnswerStore | null;
  /** Budget counters (Redis or this process); budgets are enforced only with the receipts store too. */
  budgetCounters?: BudgetCounters;
  /** What the receipts the previous run left in the WAL cost, until ClickHouse has them all. */
  leftoverSpend?: LeftoverSpend;
  /** Rate-limit windows shared by every instance (Redis); none = this process's own. */
  rateWindows?: WindowStore | null;
  /** Called after an admin change that affects admission (other instances must hear of it). */
  onConfigChanged?: () => void;
  /** The stores the GraphQL API reads and writes; no GraphQL endpoint without them. */
  graphql?: Pick<
    GraphQLServices,
    'prisma' | 'admin' | 'clickhouse' | 'receiptsTable' | 'analyticsTimeoutMs' | 'analyticsMaxRows' | 'analyticsMaxMemoryBytes' | 'analyticsEmbedded'
  > & {
    persistedOperations?: Record<string, string>;
  };
  /** OpenTelemetry spans for proxied requests; none = tracing off. */
  tracing?: Tracing | null;
}

export interface App {
  server: http.Server;
  bus: LiveBus;
  metrics: Metrics;
  catalog: CatalogSource;
  health: TargetHealth;
  keys: KeyAuthenticator;
  tokens: TokenVerifier;
  budgets: BudgetEnforcer | null;
  webhooks: WebhookSender;
  /** Resolves with the bound port. */
  start(): Promise<number>;
  /** Stops accepting, lets in-flight requests finish (bounded), flushes receipts. */
  stop(): Promise<void>;
}

export function buildApp(deps: AppDeps): App {
  const { config, log, store } = deps;
  const metrics = createMetrics();
  metrics.watchJournal(deps.journal);
  const bus = new LiveBus();
  bus.maxSubscribers = config.liveMaxSubscribers;
  metrics.watchBus(bus);
  const catalog = new CatalogSource(store, (err) => log.warn({ err: String(err) }, 'catalog refresh failed; keeping the last good catalog'));
  const health = new TargetHealth(config.breaker);
  const retryBudgets = new RetryBudgets(config.retryBudget);
  const keys = new KeyAuthenticator(store.teams, config.authCacheMs);
  const tokens = new TokenVerifier(deps.adminToken, store.teams, {
    cacheMs: config.authCacheMs,
    trustedProxies: config.trustedProxies,
    oidc: config.oidc,
    onError: (err, what) => log.warn({ err: String(err) }, `${what} failed; identity provider tokens are refused until it works`),
  });
  const authThrottle = new AuthThrottle({ limit: config.authFailLimit, trustedProxies: config.trustedProxies });
  const hopMarker = deploymentMarker(deps.adminToken);
  // Tollgate's own sockets, once listening: no provider may point at them.
  const listeners = (): Listener[] =>
    [inbound, adminInbound].flatMap((s) => {
      const address = s?.server.address();
      return address && typeof address === 'object' ? [{ address: address.address, port: address.port }] : [];
    });
  const upstream = new UpstreamClient(config.timeouts, { hopMarker, listeners });
  if (deps.answers) metrics.watchCache(deps.answers);
  const cache = deps.answers
    ? new CacheStage(
        deps.answers,
        () => catalog.catalog,
        upstream,
        health,
        (err, what) => log.warn({ err: String(err) }, `${what} failed`),
      )
    : null;
  const webhooks = new WebhookSender({
    secret: config.budgets.webhookSecret ?? createHmac('sha256', deps.adminToken).update('tollgate budget webhooks').digest('hex'),
    dispatcher: webhookAgent(config.egressAllow, { timeout: config.timeouts.connectMs }),
    onError: (err, what) => log.warn({ err: String(err) }, `${what} failed`),
  });
  const receiptsStore = deps.graphql;
  const budgets =
    deps.budgetCounters && receiptsStore
      ? new BudgetEnforcer({
          counters: deps.budgetCounters,
          budgets: () => catalog.budgets,
          spentSince: (budget, window) => spentInWindow(receiptsStore.clickhouse, receiptsStore.receiptsTable, budget, window, deps.leftoverSpend ?? null),
          bus,
          notify: (budget, event) => webhooks.send(budget.webhookUrl!, event),
          onError: (err, what) => log.warn({ err: String(err) }, `${what} failed`),
        })
      : null;
  // The router's hooks, shared by the pipeline and explainRoute.
  const decideHooks: DecideHooks = {
    classify: classifyPrompt,
    onRuleError: (route, rule, err) => {
      metrics.ruleErrors.inc({ route, rule });
      log.warn({ route, rule, err: String(err).split('\n')[0] }, 'routing rule failed to evaluate; counted as false');
    },
  };
  const limiter = new RateLimiter(Date.now, deps.rateWindows ?? null, (err) =>
    log.warn({ err: String(err) }, 'shared rate-limit windows unreachable; counting in this process'),
  );
  const pipeline = new Pipeline({
    config,
    auth: keys,
    ingress: new Ingress(hopMarker, authThrottle),
    limiter,
    catalog: () => catalog.catalog,
    health,
    retryBudgets,
    upstream,
    receipts: deps.journal,
    cache,
    budgets,
    bus,
    metrics,
    log,
    decide: decideHooks,
    tracing: deps.tracing,
  });

  // The WAL first: a receipt whose segment lands meanwhile is in ClickHouse by then.
  const findReceipt = async (id: string) => (await deps.journal.find(id)) ?? deps.findStoredReceipt(id);
  const graphql = deps.graphql
    ? createGraphQL(
        {
          ...deps.graphql,
          bus,
          tokens,
          jwks: deps.jwks as GraphQLServices['jwks'],
          findReceipt,
          explainRoute: (input) =>
            explainRoute(
              {
                catalog: () => catalog.catalog,
                health,
                retryBudgets,
                hooks: decideHooks,
                budgetHasRoom: budgets
                  ? async (subject, served, parsed) =>
                      budgets.hasRoom(subject, await maxCostOf(served.targets, parsed, config.budgets.defaultMaxTokens, isCascade(served, parsed)))
                  : undefined,
              },
              {
                body: input.body,
                protocol: [...protocols.values()].find((p) => p.endpoint === input.endpoint)!,
                headers: input.headers,
                team: input.team,
                apiKey: input.apiKey,
              },
            ),
          budgetStatus: budgets
            ? async (id) => {
                const budget = catalog.budgets.find((b) => b.id === id) ?? (await store.pricing.listBudgets()).find((b) => b.id === id);
                return budget ? budgets.status(budget) : null;
              }
            : undefined,
          configChanged: async () => {
            keys.invalidate();
            tokens.invalidate();
            deps.onConfigChanged?.();
            await catalog.refresh();
          },
        },
        {
          production: config.production,
          persistedOperations: deps.graphql.persistedOperations,
          authThrottle,
          onSlowConsumer: () => metrics.wsSlowConsumers.inc(),
          limits: { bodyBytes: config.maxBodyBytes, wsSubscriptions: config.websocket.maxSubscriptions, wsBufferBytes: config.websocket.maxBufferBytes },
        },
      )
    : null;

  let draining = false;
  let purge: NodeJS.Timeout | null = null;
  const responses = deps.responses ?? null;
  const protocols = new Map<string, ClientProtocol>([chatProtocol, responsesProtocol(responses), messagesProtocol, embeddingsProtocol].map((p) => [p.path, p]));
  const cors = corsPolicy(config.corsOrigins);
  const handler = createRequestHandler({
    cors,
    pipeline,
    protocols,
    responses,
    keys,
    tokens,
    authThrottle,
    catalog: () => catalog.catalog,
    receipts: { find: findReceipt },
    jwks: deps.jwks,
    metrics: { contentType: metrics.registry.contentType, render: () => metrics.registry.metrics() },
    ready: async () => {
      const checks: Record<string, string> = {};
      let ok = true;
      for (const [name, check] of Object.entries(deps.readinessChecks)) {
        try {
          await check();
          checks[name] = 'ok';
        } catch (err) {
          ok = false;
          // A store's error may quote its URL: credentials in it are masked.
          checks[name] = err instanceof Error ? redactSecrets(err.message).slice(0, 200) : 'failed';
        }
      }
      return { ok, checks };
    },
    maxBodyBytes: config.maxBodyBytes,
    limiter,
    trustedProxies: config.trustedProxies,
    createKey: async ({ team, name }, actor) => {
      const teams = store.as(actor).teams;
      const t = await refusedAs('team', () => teams.ensureTeam(team));
      const created = await refusedAs('name', () => teams.createApiKey({ teamId: t.id, name }));
      await catalog.refresh();
      return { id: created.apiKey.id, teamId: created.apiKey.teamId, secret: created.secret };
    },
    recordOutcome: async (teamId, body) => {
      if (!deps.graphql) throw serviceUnavailable('Task outcomes need the receipts store.');
      const parsed = TaskOutcomeInput.safeParse(body);
      if (!parsed.success) {
        const issue = parsed.error.issues[0]!;
        throw badRequest(`Invalid value for '${issue.path.join('.') || 'body'}': ${issue.message}.`, issue.path.join('.') || null);
      }
      const outcome = await recordTaskOutcome(deps.graphql.clickhouse, teamId, parsed.data);
      return { task_id: outcome.taskId, success: outcome.success, score: outcome.score, note: outcome.note, recorded_at: outcome.recordedAt.toISOString() };
    },
    isDraining: () => draining,
    // With TOLLGATE_ADMIN_PORT, /graphql lives on its own port instead.
    graphql: graphql && !config.adminPort ? graphql.handle : undefined,
  });

  const timeouts = { headersMs: config.inbound.headersTimeoutMs, requestMs: config.inbound.requestTimeoutMs };
  const inbound = new InboundServer(timeouts, handler);
  const adminInbound =
    graphql && config.adminPort ? new InboundServer(timeouts, createAdminRequestHandler({ cors, jwks: deps.jwks, graphql: graphql.handle })) : null;
  const server = inbound.server;
  const websocket = graphql ? graphql.attachWebSocket(adminInbound?.server ?? server) : null;
  if (websocket) metrics.watchWebsockets(websocket);

  return {
    server,
    bus,
    metrics,
    catalog,
    health,
    keys,
    tokens,
    budgets,
    webhooks,
    async start() {
      await catalog.load();
      warmUpClassifier();
      catalog.startPolling(config.catalogRefreshMs);
      if (responses)
        purge = setInterval(
          () => void responses.purgeExpired().catch((err) => log.warn({ err: String(err) }, 'purging expired responses failed')),
          3_600_000,
        ).unref();
      await inbound.listen(config.port, config.host);
      if (adminInbound) await adminInbound.listen(config.adminPort, config.host);
      return (server.address() as AddressInfo).port;
    },
    async stop() {
      const deadline = performance.now() + config.drainTimeoutMs;
      draining = true;
      catalog.stopPolling();
      if (purge) clearInterval(purge);
      await websocket?.close();
      graphql?.httpSubscriptions.endAll();
      // The admin port's requests (a mutation, an analytics query) are finished like the proxy's.
      await Promise.all([inbound.drain(config.drainTimeoutMs), adminInbound?.drain(config.drainTimeoutMs)]);
      inbound.closeAll();
      adminInbound?.closeAll();
      await upstream.close();
      await budgets?.close();
      // The receipts get what is left of the drain to reach ClickHouse, not more: while it is
      // down they would never land. The journal's close says how many stay in the WAL for the next start.
      await deps.journal
        .flush(Math.max(0, deadline - performance.now()))
        .catch((err) => log.error({ err: String(err) }, 'receipt flush at shutdown failed; the WAL keeps them for replay'));
      // Budget alerts on their way (retries included) get what is left too, at most a few
      // seconds: a receiver that is down must not hold a restart. Undelivered ones are logged.
      await webhooks.drain(Math.min(WEBHOOK_DRAIN_MS, Math.max(0, deadline - performance.now())));
      await webhooks.close();
    },
  };
}

/**
 * The store's verdict on the one request parameter it was given (a name with control
 * characters, too long, …): 400 naming that parameter, not a 500.
 */
async function refusedAs<T>(param: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    if (!(err instanceof AdminStoreError) || err.code !== 'INVALID_INPUT') throw err;
    throw badRequest(`Invalid '${param}': ${err.message.replace(/^[\w.]+: /, '')}.`, param);
  }
}
