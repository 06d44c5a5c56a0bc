// Opens the stores in order (config DB → ClickHouse → receipt journal), applies migrations,
// bootstraps configuration, and builds the app. Used by `tollgate start` and by tests, so
// both run exactly the same wiring.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Redis } from 'ioredis';
import { type App, buildApp } from './app.js';
import { bootstrap } from './bootstrap.js';
import { MemoryCounters, RedisCounters } from './budgets/counters.js';
import { LeftoverSpend } from './budgets/spend.js';
import { AnswerStore } from './cache/store.js';
import type { Config } from './config.js';
import { MAX_TIMER_MS } from './config-values.js';
import type { Logger } from './gateway/deps.js';
import { RedisWindows } from './gateway/limits.js';
import { defaultInstanceId, type RedisBridge, startRedisBridge } from './live/redis-bridge.js';
import { ReceiptJournal } from './receipts/journal.js';
import { fetchReceipt } from './receipts/rows.js';
import { ReceiptSigner } from './receipts/signer.js';
import { AdminStore } from './store/admin-store.js';
import { type ClickHouseStore, openClickHouse, tuneEmbeddedTables } from './store/clickhouse.js';
import { MigrationError, migrateClickHouse, pendingMigrations } from './store/clickhouse-migrate.js';
import { ensureAdminToken } from './store/credentials.js';
import { type ConfigDb, openConfigDb } from './store/prisma.js';
import { migrateConfigDb } from './store/prisma-migrate.js';
import { ResponseStore } from './store/responses.js';
import { SecretBox } from './store/secret-box.js';
import { openTracing, type Tracing } from './telemetry/tracing.js';

/** A Redis command that has not answered in this long has failed (a stalled server, a lost link). */
const COMMAND_TIMEOUT_MS = 2_000;

export interface Runtime {
  app: App;
  adminStore: AdminStore;
  configDb: ConfigDb;
  clickhouse: ClickHouseStore;
  journal: ReceiptJournal;
  signer: ReceiptSigner;
  adminToken: { token: string; created: boolean };
  bootstrapped: string[];
  /** The response cache's storage (null when TOLLGATE_CACHE_MAX_BYTES=0). */
  answers: AnswerStore | null;
  /** Cross-instance live events and key revocations, when REDIS_URL is set. */
  bridge: RedisBridge | null;
  /** Stops the app (drain) and closes every store. */
  close(): Promise<void>;
}

export interface Stores {
  configDb: ConfigDb;
  adminStore: AdminStore;
  clickhouse: ClickHouseStore;
  close(): Promise<void>;
}

/** Config DB and ClickHouse, migrated. Also what `tollgate migrate` runs. */
/**
 * `waitForClickHouse: false` (`tollgate migrate`): ClickHouse out of reach fails the call
 * instead of being migrated in the background later.
 */
export async function openStores(config: Config, log: Logger, { waitForClickHouse = true } = {}): Promise<Stores> {
  const configDb = await openConfigDb({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
  let clickhouse: ClickHouseStore | null = null;
  let stopMigrating: () => void = () => undefined;
  try {
    const pg = await migrateConfigDb(configDb);
    if (pg.applied.length) log.info({ applied: pg.applied }, 'config database migrated');
    // The client's own timeout (30 s by default) must not end an analytics query before the
    // server's limit does: that one is answered as ANALYTICS_TIMEOUT, the client's as an error.
    const requestTimeoutMs = config.clickhouse?.requestTimeoutMs ?? Math.min(MAX_TIMER_MS, Math.max(30_000, config.analyticsTimeoutMs + 5_000));
    clickhouse = await openClickHouse({ ...config.clickhouse, dataDir: config.dataDir, requestTimeoutMs, log: (msg, fields) => log.warn(fields, msg) });
    stopMigrating = await migrateReceiptsStore(clickhouse, config, log, waitForClickHouse);
    const secretBox = await SecretBox.open({ dataDir: config.dataDir, secretKey: config.secretKey });
    const adminStore = new AdminStore(configDb.prisma, secretBox);
    const ch2 = clickhouse;
    return {
      configDb,
      adminStore,
      clickhouse: ch2,
      close: async () => {
        stopMigrating();
        await ch2.close();
        await configDb.close();
      },
    };
  } catch (err) {
    stopMigrating();
    await clickhouse?.close().catch(() => undefined);
    await configDb.close().catch(() => undefined);
    throw err;
  }
}

/** Errors of the connection itself, not of ClickHouse answering: a server that is down or on its way. */
const UNREACHABLE = /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN|ENOTFOUND|socket hang up|^Timeout error/i;

/** Unreachable, through a MigrationError too. */
function isUnreachable(err: unknown): boolean {
  const cause = err instanceof MigrationError && err.cause instanceof Error ? err.cause : err;
  const text = cause instanceof Error ? `${cause.message} ${(cause as { code?: unknown }).code ?? ''}` : String(cause);
  return UNREACHABLE.test(text);
}

/**
 * The embedded engine is local: a failure is fatal. A ClickHouse server may be down while the
 * gateway starts; requests still flow (receipts wait in the WAL) and the migrations are
 * retried in the background until they apply. /readyz says not ready until then. Returns what
 * stops those retries (the stores' close, or a start that failed after them).
 */
async function migrateReceiptsStore(clickhouse: ClickHouseStore, config: Config, log: Logger, waitForClickHouse: boolean): Promise<() => void> {
  const attempt = async () => {
    const ch = await migrateClickHouse(clickhouse.client, { cluster: config.clickhouse?.cluster });
    if (ch.applied.length) log.info({ applied: ch.applied }, 'clickhouse migrated');
  };
  const nothingToStop = () => undefined;
  if (clickhouse.kind === 'chdb') {
    await attempt();
    // Memory, not correctness: a start is not refused for it.
    await tuneEmbeddedTables(clickhouse.client).catch((err) => log.warn({ err: String(err) }, 'could not tune the embedded ClickHouse tables'));
    return nothingToStop;
  }
  try {
    await attempt();
    return nothingToStop;
  } catch (err) {
    // Only a server out of reach is waited for: a refused password, an unknown database or a
    // failed migration stop the start (they were taken for "unreachable", and `migrate` said
    // "migrations applied" having applied none).
    if (!waitForClickHouse || !isUnreachable(err)) throw err;
    log.warn({ err: String(err) }, 'ClickHouse is unreachable; starting anyway, receipts wait in the WAL');
    // Retried in the background until it applies (said so, and a failure that is not the
    // server being away, said each time), or until the stores close: not against a closed client.
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    const retry = (delayMs: number) => {
      timer = setTimeout(async () => {
        try {
          await attempt();
          log.info({}, 'ClickHouse is reachable: its migrations are applied');
        } catch (err) {
          if (stopped) return;
          if (!isUnreachable(err)) log.error({ err: String(err) }, 'ClickHouse migrations failed; retrying');
          retry(Math.min(delayMs * 2, 30_000));
        }
      }, delayMs).unref();
    };
    retry(1_000);
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }
}

export async function openRuntime(config: Config, log: Logger): Promise<Runtime> {
  const stores = await openStores(config, log);
  const { configDb, adminStore, clickhouse } = stores;
  try {
    const bootstrapped = await bootstrap(config, adminStore);
    const adminToken = await ensureAdminToken({ dataDir: config.dataDir, configured: config.adminToken });
    const signer = await ReceiptSigner.open(config.dataDir);
    const leftoverSpend = new LeftoverSpend();
    const journal = await ReceiptJournal.open({
      dataDir: config.dataDir,
      signer,
      insertRows: clickhouse.insertRows,
      sync: config.walSync,
      batchMaxRows: config.batchMaxRows,
      batchMaxMs: config.batchMaxMs,
      cluster: config.clickhouse?.cluster,
      // A replica may serve a read before it has fetched a freshly inserted part.
      landedGraceMs: config.clickhouse?.cluster ? 10_000 : 0,
      log: (msg, fields) => log.warn(fields ?? {}, msg),
      onLeftover: (receipt) => leftoverSpend.add(receipt),
    });
    const redis = openCommandRedis(config);
    const answers = await openAnswerStore(config, redis, log);
    const responses = new ResponseStore(configDb.prisma, config.responsesRetentionMs, (err) =>
      log.warn({ err: String(err) }, 'could not store a Responses API answer'),
    );
    let bridge: RedisBridge | null = null;
    // Only with an OTLP endpoint configured is the OpenTelemetry SDK loaded at all.
    const tracing: Tracing | null = config.tracing ? await openTracing(config.tracing, log) : null;
    const app = buildApp({
      tracing,
      answers,
      responses,
      budgetCounters: redis ? new RedisCounters(redis) : new MemoryCounters(),
      leftoverSpend,
      rateWindows: redis ? new RedisWindows(redis) : null,
      config,
      log,
      store: adminStore,
      journal,
      jwks: () => signer.jwks(),
      findStoredReceipt: (id) => fetchReceipt(clickhouse.client, id, config.clickhouse?.cluster ? { table: 'receipts_distributed' } : undefined),
      adminToken: adminToken.token,
      // A revoked key must stop working on every instance, not only this one.
      onConfigChanged: () => bridge?.publishKeyRevoked('*'),
      graphql: {
        prisma: configDb.prisma,
        admin: adminStore,
        clickhouse: clickhouse.client,
        receiptsTable: config.clickhouse?.cluster ? 'receipts_distributed' : 'receipts',
        analyticsTimeoutMs: config.analyticsTimeoutMs,
        analyticsMaxRows: config.analyticsMaxRows,
        analyticsMaxMemoryBytes: config.analyticsMaxMemoryBytes,
        analyticsEmbedded: clickhouse.kind === 'chdb',
        persistedOperations: config.persistedOperationsFile
          ? (JSON.parse(await readFile(config.persistedOperationsFile, 'utf8')) as Record<string, string>)
          : undefined,
      },
      readinessChecks: {
        config_db: () => configDb.prisma.$queryRaw`SELECT 1`,
        clickhouse: async () => {
          const r = await clickhouse.client.ping();
          if (!r.success) throw r.error;
        },
        clickhouse_migrations: async () => {
          const pending = await pendingMigrations(clickhouse.client);
          if (pending.length) throw new Error(`pending: ${pending.join(', ')}`);
        },
      },
    });
    bridge = config.redisUrl ? startRedisBridge(app.bus, { url: config.redisUrl, instanceId: defaultInstanceId(), log }) : null;
    bridge?.onKeyRevoked(() => {
      app.keys.invalidate();
      app.tokens.invalidate();
    });
    if (bridge) {
      app.metrics.watchBridge(bridge);
      // A target's Retry-After holds for every instance (DESIGN §4).
      const peers = bridge;
      bridge.onCooldown((target, ms) => app.health.coolDown(target, ms));
      app.health.onCooldown = (target, ms) => peers.publishCooldown(target, ms);
    }
    return {
      app,
      answers,
      bridge,
      adminStore,
      configDb,
      clickhouse,
      journal,
      signer,
      adminToken,
      bootstrapped,
      async close() {
        await app.stop();
        // After the drain: the last requests' spans are exported too.
        await tracing?.shutdown();
        await responses.flush();
        await answers?.close();
        redis?.disconnect();
        await bridge?.close();
        await journal.close();
        await stores.close();
      },
    };
  } catch (err) {
    await stores.close().catch(() => undefined);
    throw err;
  }
}

/**
 * The Redis connection for the cache and budget counters (live events have their own, in the
 * bridge). Commands fail at once while Redis is down instead of queueing, and after
 * COMMAND_TIMEOUT_MS when it stalls: each caller decides what that means (the cache misses,
 * budgets fail closed or open and retry their settlements). Nothing is re-sent by ioredis
 * after a reconnect: the caller has already been told the command failed.
 */
function openCommandRedis(config: Config): Redis | null {
  if (!config.redisUrl) return null;
  const redis = new Redis(config.redisUrl, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: COMMAND_TIMEOUT_MS,
    autoResendUnfulfilledCommands: false,
    connectionName: 'tollgate-commands',
  });
  redis.on('error', () => undefined); // reported per failed command by the cache and the budgets
  return redis;
}

/** The response cache: in memory with a log in the data directory; exact answers also in Redis. */
async function openAnswerStore(config: Config, redis: Redis | null, log: Logger): Promise<AnswerStore | null> {
  if (config.cache.maxBytes === 0) return null;
  return AnswerStore.open({
    maxBytes: config.cache.maxBytes,
    maxEntryBytes: config.cache.maxEntryBytes,
    dir: path.join(config.dataDir, 'cache'),
    redis,
    onError: (err, what) => log.warn({ err: String(err) }, `${what} failed`),
  });
}
