// buildApp(deps) → { server, start, stop }: wires the gateway's parts around stores that the
// caller opened (src/main.ts in production, test/support in tests).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { TaskOutcomeInput, recordTaskOutcome } from './analytics/outcomes.js';
import type { Config } from './config.js';
import { badRequest, serviceUnavailable } from './gateway/errors.js';
import { KeyAuthenticator, type KeyLookup } from './gateway/auth.js';
import { createHmac } from 'node:crypto';
import type { BudgetCounters } from './budgets/counters.js';
import { BudgetEnforcer } from './budgets/enforcer.js';
import { spentInWindow } from './budgets/spend.js';
import { WebhookSender } from './budgets/webhooks.js';
import type { AnswerStore } from './cache/store.js';
import { CacheStage } from './gateway/cache.js';
import { isConsolePath } from './gateway/console.js';
import { createRequestHandler } from './gateway/http.js';
import { RateLimiter, type WindowStore } from './gateway/limits.js';
import { Pipeline, type Logger, type ReceiptSink } from './gateway/pipeline.js';
import { TokenVerifier, type AccessTokenLookup } from './gateway/tokens.js';
import { UpstreamClient } from './gateway/upstream.js';
import { LiveBus } from './live/events.js';
import type { GraphQLServices } from './graphql/context.js';
import { createGraphQL } from './graphql/yoga.js';
import { createMetrics, type JournalStatsSource } from './metrics.js';
import type { Receipt, ReceiptDraft, UnsignedReceipt } from './receipts/receipt.js';
import { CatalogSource, type CatalogStore } from './routing/catalog-source.js';
import { TargetHealth } from './routing/health.js';
import { RetryBudgets } from './routing/retry-budget.js';

export interface AppStore extends KeyLookup, AccessTokenLookup, CatalogStore {
  ensureTeam(name: string): Promise<{ id: string }>;
  createApiKey(input: { teamId: string; name: string }): Promise<{ apiKey: { id: string; teamId: string }; secret: string }>;
}

export interface AppJournal extends JournalStatsSource {
  /** Resolves once the receipt is in the WAL; signing happens off the request path. */
  append(draft: ReceiptDraft): Promise<UnsignedReceipt>;
  /** Signs on demand (a receipt asked for before its batch was signed). */
  sign(receipt: UnsignedReceipt): Receipt;
  flush(): Promise<void>;
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
  /** The response cache's storage; none = no caching. */
  answers?: AnswerStore | null;
  /** Budget counters (Redis or this process); budgets are enforced only with the receipts store too. */
  budgetCounters?: BudgetCounters;
  /** Rate-limit windows shared by every instance (Redis); none = this process's own. */
  rateWindows?: WindowStore | null;
  /** Called after an admin change that affects admission (other instances must hear of it). */
  onConfigChanged?: () => void;
  /** The stores the GraphQL API reads and writes; no GraphQL endpoint without them. */
  graphql?: Pick<GraphQLServices, 'prisma' | 'admin' | 'clickhouse' | 'receiptsTable' | 'analyticsTimeoutMs'> & {
    persistedOperations?: Record<string, string>;
  };
}

export interface App {
  server: http.Server;
  bus: LiveBus;
  catalog: CatalogSource;
  health: TargetHealth;
  keys: KeyAuthenticator;
  budgets: BudgetEnforcer | null;
  webhooks: WebhookSender;
  /** Resolves with the bound port. */
  start(): Promise<number>;
  /** Stops accepting, lets in-flight requests finish (bounded), flushes receipts. */
  stop(): Promise<void>;
}

/** Receipts made moments ago may not be in ClickHouse yet; serve them from memory. */
class RecentReceipts implements ReceiptSink {
  private readonly recent = new Map<string, UnsignedReceipt | Receipt>();

  constructor(
    private readonly journal: AppJournal,
    private readonly limit = 10_000,
  ) {}

  async append(draft: ReceiptDraft): Promise<UnsignedReceipt> {
    const receipt = await this.journal.append(draft);
    if (this.recent.size >= this.limit) this.recent.delete(this.recent.keys().next().value!);
    this.recent.set(receipt.receipt_id, receipt);
    return receipt;
  }

  get(id: string): Receipt | undefined {
    const held = this.recent.get(id);
    if (!held) return undefined;
    if ('signature' in held) return held;
    // Signed once, on first request (Ed25519 is deterministic: the worker signs identically).
    const signed = this.journal.sign(held);
    this.recent.set(id, signed);
    return signed;
  }
}

export function buildApp(deps: AppDeps): App {
  const { config, log, store } = deps;
  const metrics = createMetrics();
  metrics.watchJournal(deps.journal);
  const bus = new LiveBus();
  metrics.watchBus(bus);
  const catalog = new CatalogSource(store, (err) => log.warn({ err: String(err) }, 'catalog refresh failed; keeping the last good catalog'));
  const health = new TargetHealth(config.breaker);
  const retryBudgets = new RetryBudgets(config.retryBudget);
  const keys = new KeyAuthenticator(store, config.authCacheMs);
  const tokens = new TokenVerifier(deps.adminToken, store);
  const upstream = new UpstreamClient(config.timeouts);
  const recent = new RecentReceipts(deps.journal);
  if (deps.answers) metrics.watchCache(deps.answers);
  const cache = deps.answers
    ? new CacheStage(deps.answers, () => catalog.catalog, upstream, (err, what) => log.warn({ err: String(err) }, `${what} failed`))
    : null;
  const webhooks = new WebhookSender({
    secret: config.budgets.webhookSecret ?? createHmac('sha256', deps.adminToken).update('tollgate budget webhooks').digest('hex'),
    onError: (err, what) => log.warn({ err: String(err) }, `${what} failed`),
  });
  const receiptsStore = deps.graphql;
  const budgets =
    deps.budgetCounters && receiptsStore
      ? new BudgetEnforcer({
          counters: deps.budgetCounters,
          budgets: () => catalog.budgets,
          spentSince: (budget, window) => spentInWindow(receiptsStore.clickhouse, receiptsStore.receiptsTable, budget, window),
          bus,
          notify: (budget, event) => webhooks.send(budget.webhookUrl!, event),
          onError: (err, what) => log.warn({ err: String(err) }, `${what} failed`),
        })
      : null;
  const pipeline = new Pipeline({
    config,
    auth: keys,
    limiter: new RateLimiter(Date.now, deps.rateWindows ?? null, (err) => log.warn({ err: String(err) }, 'shared rate-limit windows unreachable; counting in this process')),
    catalog: () => catalog.catalog,
    health,
    retryBudgets,
    upstream,
    receipts: recent,
    cache,
    budgets,
    bus,
    metrics,
    log,
  });

  const findReceipt = async (id: string) => recent.get(id) ?? deps.findStoredReceipt(id);
  const graphql = deps.graphql
    ? createGraphQL(
        {
          ...deps.graphql,
          bus,
          tokens,
          jwks: deps.jwks as GraphQLServices['jwks'],
          findReceipt,
          budgetStatus: budgets
            ? async (id) => {
                const budget = catalog.budgets.find((b) => b.id === id) ?? (await store.listBudgets()).find((b) => b.id === id);
                return budget ? budgets.status(budget) : null;
              }
            : undefined,
          configChanged: async () => {
            keys.invalidate();
            deps.onConfigChanged?.();
            await catalog.refresh();
          },
        },
        { production: config.production, persistedOperations: deps.graphql.persistedOperations },
      )
    : null;

  let draining = false;
  const handler = createRequestHandler({
    pipeline,
    keys,
    tokens,
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
          checks[name] = err instanceof Error ? err.message.slice(0, 200) : 'failed';
        }
      }
      return { ok, checks };
    },
    maxBodyBytes: config.maxBodyBytes,
    createKey: async ({ team, name }) => {
      const t = await store.ensureTeam(team);
      const created = await store.createApiKey({ teamId: t.id, name });
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

  const serverOptions = { keepAliveTimeout: 65_000, requestTimeout: 0, headersTimeout: 60_000 };
  const server = http.createServer(serverOptions, handler);
  // The proxy's latency budget is sub-millisecond: never wait for Nagle.
  server.on('connection', (socket) => socket.setNoDelay(true));
  const adminServer =
    graphql && config.adminPort
      ? http.createServer(serverOptions, (req, res) => {
          const path = (req.url ?? '').split('?')[0]!;
          if (path === '/graphql' || isConsolePath(path)) return graphql.handle(req, res);
          res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":{"message":"Only /graphql and /console are served on the admin port.","type":"invalid_request_error","param":null,"code":"not_found"}}');
        })
      : null;
  const websocket = graphql ? graphql.attachWebSocket(adminServer ?? server) : null;

  return {
    server,
    bus,
    catalog,
    health,
    keys,
    budgets,
    webhooks,
    async start() {
      await catalog.load();
      catalog.startPolling(config.catalogRefreshMs);
      await listen(server, config.port, config.host);
      if (adminServer) await listen(adminServer, config.adminPort, config.host);
      return (server.address() as AddressInfo).port;
    },
    async stop() {
      draining = true;
      catalog.stopPolling();
      await websocket?.close();
      adminServer?.close();
      adminServer?.closeAllConnections();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const deadline = new Promise<void>((resolve) => setTimeout(resolve, config.drainTimeoutMs).unref());
      await Promise.race([closed, deadline]);
      server.closeAllConnections();
      await upstream.close();
      await deps.journal.flush().catch((err) => log.error({ err: String(err) }, 'receipt flush at shutdown failed; the WAL keeps them for replay'));
    },
  };
}

function listen(server: http.Server, port: number, host: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
