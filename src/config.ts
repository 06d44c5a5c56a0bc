// The only module that reads the environment. Everything else receives a Config.
import path from 'node:path';
import { z } from 'zod';
import type { RetryBudgetOptions } from './routing/retry-budget.js';

const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v.trim()));

const intFrom = (def: number, min = 0) =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v.trim() === '') return def;
      const n = Number(v);
      if (!Number.isInteger(n) || n < min) {
        ctx.addIssue({ code: 'custom', message: `must be an integer >= ${min}` });
        return z.NEVER;
      }
      return n;
    });

const EnvSchema = z.object({
  NODE_ENV: optionalString,
  TOLLGATE_PORT: intFrom(8787),
  TOLLGATE_HOST: optionalString,
  TOLLGATE_ADMIN_PORT: intFrom(0),
  TOLLGATE_DATA_DIR: optionalString,
  TOLLGATE_CONFIG: optionalString,
  TOLLGATE_ADMIN_TOKEN: optionalString,
  TOLLGATE_SECRET_KEY: optionalString,
  TOLLGATE_MAX_BODY_BYTES: intFrom(4 * 1024 * 1024, 1024),
  TOLLGATE_LOG_LEVEL: optionalString,
  /** WAL durability: `write` survives a process crash (kill -9); `fsync` also survives power loss. */
  TOLLGATE_WAL_SYNC: z.enum(['write', 'fsync']).optional().default('write'),
  TOLLGATE_BATCH_MAX_ROWS: intFrom(5000, 1),
  TOLLGATE_BATCH_MAX_MS: intFrom(250, 1),
  TOLLGATE_AUTH_CACHE_MS: intFrom(1000, 0),
  TOLLGATE_CATALOG_REFRESH_MS: intFrom(2000, 100),
  TOLLGATE_BREAKER_FAILURES: intFrom(5, 1),
  TOLLGATE_BREAKER_COOLDOWN_MS: intFrom(30_000, 1),
  /** Retry budget per route: retries per 100 requests (10 s window), and the floor per second. */
  TOLLGATE_RETRY_BUDGET_PERCENT: intFrom(20, 0),
  TOLLGATE_RETRY_BUDGET_MIN_PER_SECOND: intFrom(10, 0),
  TOLLGATE_CONNECT_TIMEOUT_MS: intFrom(5_000, 1),
  TOLLGATE_FIRST_BYTE_TIMEOUT_MS: intFrom(60_000, 1),
  TOLLGATE_IDLE_TIMEOUT_MS: intFrom(60_000, 1),
  TOLLGATE_TOTAL_TIMEOUT_MS: intFrom(600_000, 1),
  TOLLGATE_DRAIN_TIMEOUT_MS: intFrom(30_000, 0),
  TOLLGATE_ANALYTICS_TIMEOUT_MS: intFrom(10_000, 100),
  /** HMAC key for budget webhooks (default: derived from the admin token). */
  TOLLGATE_WEBHOOK_SECRET: optionalString,
  /** Completion tokens a budget reserves for a request that sets no max_tokens. */
  TOLLGATE_BUDGET_DEFAULT_MAX_TOKENS: intFrom(4096, 1),
  /** Response cache memory bound (bytes of cached answers held in this process). */
  TOLLGATE_CACHE_MAX_BYTES: intFrom(256 * 1024 * 1024, 0),
  TOLLGATE_CACHE_MAX_ENTRY_BYTES: intFrom(1024 * 1024, 1024),
  /** How long stored Responses API answers are kept for previous_response_id and GET. */
  TOLLGATE_RESPONSES_RETENTION_HOURS: intFrom(720, 1),
  /** A JSON file {hash: query}: when set, /graphql runs only these operations. */
  TOLLGATE_PERSISTED_OPERATIONS: optionalString,
  DATABASE_URL: optionalString,
  CLICKHOUSE_URL: optionalString,
  CLICKHOUSE_USER: optionalString,
  CLICKHOUSE_PASSWORD: optionalString,
  CLICKHOUSE_DATABASE: optionalString,
  CLICKHOUSE_CLUSTER: optionalString,
  REDIS_URL: optionalString,
  OPENROUTER_API_KEY: optionalString,
  ARK_API_KEY: optionalString,
  OPENAI_API_KEY: optionalString,
  DEEPSEEK_API_KEY: optionalString,
  QWEN_API_KEY: optionalString,
  /** Alibaba's own name for the Qwen (DashScope) key; QWEN_API_KEY wins when both are set. */
  DASHSCOPE_API_KEY: optionalString,
  ZHIPU_API_KEY: optionalString,
  ANTHROPIC_API_KEY: optionalString,
});

export interface TimeoutConfig {
  connectMs: number;
  firstByteMs: number;
  idleMs: number;
  totalMs: number;
}

export interface Config {
  production: boolean;
  host: string;
  port: number;
  /** 0 = GraphQL on the main port. */
  adminPort: number;
  dataDir: string;
  configFile?: string;
  adminToken?: string;
  secretKey?: string;
  maxBodyBytes: number;
  logLevel: string;
  walSync: 'write' | 'fsync';
  batchMaxRows: number;
  batchMaxMs: number;
  authCacheMs: number;
  catalogRefreshMs: number;
  breaker: { failures: number; cooldownMs: number };
  retryBudget: RetryBudgetOptions;
  timeouts: TimeoutConfig;
  drainTimeoutMs: number;
  /** Upper bound for one analytics query (ClickHouse max_execution_time). */
  analyticsTimeoutMs: number;
  budgets: { webhookSecret?: string; defaultMaxTokens: number };
  /** Response cache: bytes held in memory (0 turns the cache off) and the largest answer kept. */
  cache: { maxBytes: number; maxEntryBytes: number };
  /** Stored Responses API answers expire after this long. */
  responsesRetentionMs: number;
  persistedOperationsFile?: string;
  databaseUrl?: string;
  clickhouse?: { url: string; username?: string; password?: string; database?: string; cluster?: string };
  redisUrl?: string;
  /** Provider presets configured from well-known environment variables. */
  presetKeys: { openrouter?: string; ark?: string; openai?: string; deepseek?: string; qwen?: string; zhipu?: string; anthropic?: string };
  /** Raw environment, only for `${VAR}` references inside the declarative config file. */
  envForReferences: Readonly<Record<string, string | undefined>>;
}

export class ConfigError extends Error {}

export function loadConfig(env: NodeJS.ProcessEnv = process.env, overrides: Partial<Config> = {}): Config {
  const parsed = EnvSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new ConfigError(`invalid environment: ${problems}`);
  }
  const e = parsed.data;
  const config: Config = {
    production: e.NODE_ENV === 'production',
    host: e.TOLLGATE_HOST ?? '127.0.0.1',
    port: e.TOLLGATE_PORT,
    adminPort: e.TOLLGATE_ADMIN_PORT,
    dataDir: path.resolve(e.TOLLGATE_DATA_DIR ?? '.tollgate'),
    configFile: e.TOLLGATE_CONFIG,
    adminToken: e.TOLLGATE_ADMIN_TOKEN,
    secretKey: e.TOLLGATE_SECRET_KEY,
    maxBodyBytes: e.TOLLGATE_MAX_BODY_BYTES,
    logLevel: e.TOLLGATE_LOG_LEVEL ?? 'info',
    walSync: e.TOLLGATE_WAL_SYNC,
    batchMaxRows: e.TOLLGATE_BATCH_MAX_ROWS,
    batchMaxMs: e.TOLLGATE_BATCH_MAX_MS,
    authCacheMs: e.TOLLGATE_AUTH_CACHE_MS,
    catalogRefreshMs: e.TOLLGATE_CATALOG_REFRESH_MS,
    breaker: { failures: e.TOLLGATE_BREAKER_FAILURES, cooldownMs: e.TOLLGATE_BREAKER_COOLDOWN_MS },
    retryBudget: { percent: e.TOLLGATE_RETRY_BUDGET_PERCENT, minPerSecond: e.TOLLGATE_RETRY_BUDGET_MIN_PER_SECOND, windowSeconds: 10 },
    timeouts: {
      connectMs: e.TOLLGATE_CONNECT_TIMEOUT_MS,
      firstByteMs: e.TOLLGATE_FIRST_BYTE_TIMEOUT_MS,
      idleMs: e.TOLLGATE_IDLE_TIMEOUT_MS,
      totalMs: e.TOLLGATE_TOTAL_TIMEOUT_MS,
    },
    drainTimeoutMs: e.TOLLGATE_DRAIN_TIMEOUT_MS,
    analyticsTimeoutMs: e.TOLLGATE_ANALYTICS_TIMEOUT_MS,
    budgets: { webhookSecret: e.TOLLGATE_WEBHOOK_SECRET, defaultMaxTokens: e.TOLLGATE_BUDGET_DEFAULT_MAX_TOKENS },
    cache: { maxBytes: e.TOLLGATE_CACHE_MAX_BYTES, maxEntryBytes: e.TOLLGATE_CACHE_MAX_ENTRY_BYTES },
    responsesRetentionMs: e.TOLLGATE_RESPONSES_RETENTION_HOURS * 3_600_000,
    persistedOperationsFile: e.TOLLGATE_PERSISTED_OPERATIONS,
    databaseUrl: e.DATABASE_URL,
    clickhouse: e.CLICKHOUSE_URL
      ? {
          url: e.CLICKHOUSE_URL,
          username: e.CLICKHOUSE_USER,
          password: e.CLICKHOUSE_PASSWORD,
          database: e.CLICKHOUSE_DATABASE,
          cluster: e.CLICKHOUSE_CLUSTER,
        }
      : undefined,
    redisUrl: e.REDIS_URL,
    presetKeys: {
      openrouter: e.OPENROUTER_API_KEY,
      ark: e.ARK_API_KEY,
      openai: e.OPENAI_API_KEY,
      deepseek: e.DEEPSEEK_API_KEY,
      qwen: e.QWEN_API_KEY ?? e.DASHSCOPE_API_KEY,
      zhipu: e.ZHIPU_API_KEY,
      anthropic: e.ANTHROPIC_API_KEY,
    },
    envForReferences: { ...env },
  };
  return { ...config, ...overrides };
}
