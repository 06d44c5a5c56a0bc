// The only module that reads the environment. Everything else receives a Config.
import path from 'node:path';
import { z } from 'zod';
import {
  connectionUrl,
  corsOrigins,
  egressAllowList,
  integer,
  intFrom,
  issuerUrl,
  keyValueList,
  listOf,
  MAX_TIMER_MS,
  msFrom,
  optionalEnum,
  optionalString,
  otlpCompression,
  otlpProtocol,
  portFrom,
} from './config-values.js';
import { CidrList } from './net/ip.js';
import type { RetryBudgetOptions } from './routing/retry-budget.js';
import { TRACE_SAMPLERS, type TracingConfig } from './telemetry/tracing.js';

const EnvSchema = z.object({
  NODE_ENV: optionalString,
  TOLLGATE_PORT: portFrom(8787),
  TOLLGATE_HOST: optionalString,
  TOLLGATE_ADMIN_PORT: portFrom(0),
  TOLLGATE_DATA_DIR: optionalString,
  TOLLGATE_CONFIG: optionalString,
  // Root of every credential (and, hashed, of the loop marker every upstream call carries, which
  // a short token could be guessed back from offline): a generated one has 256 bits.
  TOLLGATE_ADMIN_TOKEN: optionalString.refine((v) => v === undefined || v.length >= 32, { message: 'must be at least 32 characters' }),
  TOLLGATE_SECRET_KEY: optionalString,
  TOLLGATE_MAX_BODY_BYTES: intFrom(4 * 1024 * 1024, 1024),
  TOLLGATE_LOG_LEVEL: optionalEnum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
  /** Request side of every port: headers, and the whole request, must arrive within these. */
  TOLLGATE_HEADERS_TIMEOUT_MS: msFrom(15_000, 1),
  TOLLGATE_REQUEST_TIMEOUT_MS: msFrom(60_000, 1),
  /** graphql-ws: operations open at once on one socket, and bytes waiting to be sent to it. */
  TOLLGATE_WS_MAX_SUBSCRIPTIONS: intFrom(100, 1),
  TOLLGATE_LIVE_MAX_SUBSCRIBERS: intFrom(10_000, 1),
  TOLLGATE_WS_MAX_BUFFER_BYTES: intFrom(4 * 1024 * 1024, 64 * 1024),
  /** Failed authentications allowed per client address and minute (0: unlimited). */
  TOLLGATE_AUTH_FAIL_LIMIT: intFrom(50, 0),
  /** Proxies whose X-Forwarded-For is believed (CIDRs). */
  TOLLGATE_TRUSTED_PROXIES: listOf((entries) => CidrList.parse(entries)),
  /** Non-public destinations budget webhooks may reach anyway (host names and CIDRs). */
  TOLLGATE_EGRESS_ALLOW: listOf(egressAllowList),
  /** OIDC/JWT bearer tokens on GraphQL and GET /v1/receipts/{id}, beside Tollgate's own tokens. */
  TOLLGATE_OIDC_ISSUER: issuerUrl,
  /** Accepted `aud` values (comma-separated); required with TOLLGATE_OIDC_ISSUER. */
  TOLLGATE_OIDC_AUDIENCE: listOf((entries) => entries),
  TOLLGATE_OIDC_ROLE_CLAIM: optionalString,
  TOLLGATE_OIDC_TEAM_CLAIM: optionalString,
  /** WAL durability: `write` survives a process crash (kill -9); `fsync` also survives power loss. */
  TOLLGATE_WAL_SYNC: optionalEnum(['write', 'fsync']).transform((v) => v ?? 'write'),
  TOLLGATE_BATCH_MAX_ROWS: intFrom(5000, 1),
  // About one insert a second, as ClickHouse advises: every insert makes a part in `receipts`
  // and in each rollup, and merges them later. At c=32 on the embedded engine, 1000 ms against
  // 250 ms took Tollgate's CPU per request from 277 to 243 µs (engine threads 49 → 25 µs,
  // signing worker 49 → 40 µs). A receipt is served from memory until it lands.
  TOLLGATE_BATCH_MAX_MS: msFrom(1000, 1),
  TOLLGATE_AUTH_CACHE_MS: msFrom(1000, 0),
  TOLLGATE_CATALOG_REFRESH_MS: msFrom(2000, 100),
  TOLLGATE_BREAKER_FAILURES: intFrom(5, 1),
  TOLLGATE_BREAKER_COOLDOWN_MS: msFrom(30_000, 1),
  /** Retry budget per route: retries per 100 requests (10 s window), and the floor per second. */
  TOLLGATE_RETRY_BUDGET_PERCENT: intFrom(20, 0),
  TOLLGATE_RETRY_BUDGET_MIN_PER_SECOND: intFrom(10, 0),
  TOLLGATE_CONNECT_TIMEOUT_MS: msFrom(5_000, 1),
  TOLLGATE_FIRST_BYTE_TIMEOUT_MS: msFrom(60_000, 1),
  TOLLGATE_ANSWER_TIMEOUT_MS: msFrom(300_000, 1),
  TOLLGATE_IDLE_TIMEOUT_MS: msFrom(60_000, 1),
  TOLLGATE_TOTAL_TIMEOUT_MS: msFrom(600_000, 1),
  TOLLGATE_STREAM_HOLD_MS: msFrom(10_000, 0),
  TOLLGATE_DRAIN_TIMEOUT_MS: msFrom(30_000, 0),
  TOLLGATE_ANALYTICS_TIMEOUT_MS: msFrom(10_000, 100),
  TOLLGATE_ANALYTICS_MAX_ROWS: intFrom(100_000, 1, 10_000_000),
  TOLLGATE_ANALYTICS_MAX_MEMORY_MB: intFrom(0, 0, 1_048_576),
  // How far V8 lets the old generation grow past what its last full collection kept (0: V8's
  // own sizing). Under c=32 V8's own sizing let it reach ~2× the ~50 MB live heap (77–113 MB
  // committed), when every receipt was still held in the heap until it landed (~1.5 s; now
  // only its WAL position is, outside the heap: receipts/wal-index.ts). At 50 % the
  // external-stores process's RSS under load was 226–231 MB instead of 264 (bench:proxy, runs
  // alternated), CPU per request within the runs' noise; at 20 %, 205 MB but 15–20 % more CPU,
  // each full collection marking the live heap again.
  TOLLGATE_HEAP_GROWTH_PERCENT: intFrom(50, 0),
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
  TOLLGATE_CORS_ORIGINS: corsOrigins,
  DATABASE_URL: connectionUrl('postgres:', 'postgresql:'),
  CLICKHOUSE_URL: connectionUrl('http:', 'https:'),
  CLICKHOUSE_USER: optionalString,
  CLICKHOUSE_PASSWORD: optionalString,
  CLICKHOUSE_DATABASE: optionalString,
  CLICKHOUSE_CLUSTER: optionalString,
  REDIS_URL: connectionUrl('redis:', 'rediss:'),
  OPENROUTER_API_KEY: optionalString,
  ARK_API_KEY: optionalString,
  OPENAI_API_KEY: optionalString,
  DEEPSEEK_API_KEY: optionalString,
  QWEN_API_KEY: optionalString,
  /** Alibaba's own name for the Qwen (DashScope) key; QWEN_API_KEY wins when both are set. */
  DASHSCOPE_API_KEY: optionalString,
  ZHIPU_API_KEY: optionalString,
  ANTHROPIC_API_KEY: optionalString,
  // OpenTelemetry's standard variables (traces only; README "Observability"). The TRACES_
  // variants win over the general ones, as the OpenTelemetry specification says.
  OTEL_SDK_DISABLED: optionalString,
  OTEL_TRACES_EXPORTER: optionalString,
  OTEL_EXPORTER_OTLP_ENDPOINT: connectionUrl('http:', 'https:'),
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: connectionUrl('http:', 'https:'),
  OTEL_EXPORTER_OTLP_PROTOCOL: otlpProtocol,
  OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: otlpProtocol,
  OTEL_EXPORTER_OTLP_HEADERS: keyValueList,
  OTEL_EXPORTER_OTLP_TRACES_HEADERS: keyValueList,
  OTEL_EXPORTER_OTLP_TIMEOUT: integer(1, MAX_TIMER_MS),
  OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: integer(1, MAX_TIMER_MS),
  OTEL_EXPORTER_OTLP_COMPRESSION: otlpCompression,
  OTEL_EXPORTER_OTLP_TRACES_COMPRESSION: otlpCompression,
  OTEL_SERVICE_NAME: optionalString,
  OTEL_RESOURCE_ATTRIBUTES: keyValueList,
  OTEL_TRACES_SAMPLER: optionalEnum(TRACE_SAMPLERS),
  OTEL_TRACES_SAMPLER_ARG: optionalString.refine((v) => v === undefined || (Number(v) >= 0 && Number(v) <= 1), { message: 'must be a number from 0 to 1' }),
  OTEL_BSP_SCHEDULE_DELAY: msFrom(5_000, 0),
  OTEL_BSP_EXPORT_TIMEOUT: msFrom(30_000, 1),
  OTEL_BSP_MAX_QUEUE_SIZE: intFrom(2_048, 1),
  OTEL_BSP_MAX_EXPORT_BATCH_SIZE: intFrom(512, 1),
});

export interface TimeoutConfig {
  connectMs: number;
  /** A streamed request: until the upstream's headers. */
  firstByteMs: number;
  /** A request answered in one piece: until its headers, which come with the whole answer. */
  answerMs: number;
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
  /** Request side of every port (slowloris): headers and the whole request must arrive within these. */
  inbound: { headersTimeoutMs: number; requestTimeoutMs: number };
  /** graphql-ws limits per socket. */
  websocket: { maxSubscriptions: number; maxBufferBytes: number };
  /** Live subscriptions (websocket and SSE) this instance serves at once; the next is refused. */
  liveMaxSubscribers: number;
  /** Failed authentications per client address and minute before 429 (0: unlimited). */
  authFailLimit: number;
  /** Peers whose X-Forwarded-For names the client address. */
  trustedProxies: CidrList;
  /** Non-public destinations that budget webhooks may reach anyway. */
  egressAllow: { hosts: string[]; cidrs: CidrList };
  /** Identity provider whose JWTs are GraphQL tokens too; absent: none. */
  oidc?: OidcConfig;
  logLevel: string;
  walSync: 'write' | 'fsync';
  batchMaxRows: number;
  batchMaxMs: number;
  authCacheMs: number;
  catalogRefreshMs: number;
  breaker: { failures: number; cooldownMs: number };
  retryBudget: RetryBudgetOptions;
  timeouts: TimeoutConfig;
  /**
   * A stream: how long what comes before its answer (SSE comments, a role-only chunk) is held
   * back so that the attempt can still fail over; past it, it goes on to the client, whose
   * proxies would otherwise cut a connection that has been silent while a model thinks.
   */
  streamHoldMs: number;
  drainTimeoutMs: number;
  /** Upper bound for one analytics query (ClickHouse max_execution_time). */
  analyticsTimeoutMs: number;
  /** Most rows one analytics query may return. */
  analyticsMaxRows: number;
  /** ClickHouse max_memory_usage of one analytics query, in bytes (0: the server's own limits). */
  analyticsMaxMemoryBytes: number;
  /** `tollgate start`: V8's old-generation growth past its live size, in percent (0: V8's own). */
  heapGrowthPercent: number;
  budgets: { webhookSecret?: string; defaultMaxTokens: number };
  /** Response cache: bytes held in memory (0 turns the cache off) and the largest answer kept. */
  cache: { maxBytes: number; maxEntryBytes: number };
  /** Stored Responses API answers expire after this long. */
  responsesRetentionMs: number;
  persistedOperationsFile?: string;
  /** Origins whose browser pages may call Tollgate (CORS); `*` = any; empty = none. */
  corsOrigins: string[];
  databaseUrl?: string;
  /** `requestTimeoutMs`: the client's own timeout (no variable; by default it outlasts the analytics timeout). */
  clickhouse?: { url: string; username?: string; password?: string; database?: string; cluster?: string; requestTimeoutMs?: number };
  redisUrl?: string;
  /** Provider presets configured from well-known environment variables. */
  presetKeys: { openrouter?: string; ark?: string; openai?: string; deepseek?: string; qwen?: string; zhipu?: string; anthropic?: string };
  /** OpenTelemetry traces; absent: off (no OTLP endpoint set, or OTEL_SDK_DISABLED). */
  tracing?: TracingConfig;
  /** Raw environment, only for `${VAR}` references inside the declarative config file. */
  envForReferences: Readonly<Record<string, string | undefined>>;
}

export interface OidcConfig {
  issuer: string;
  audiences: string[];
  /** Claim holding the role, `ADMIN` or `ANALYST` (a string, or an array of strings). */
  roleClaim: string;
  /** Claim holding the name of the team the token is bound to; absent claim = not bound. */
  teamClaim: string;
}

export class ConfigError extends Error {}

export function loadConfig(env: NodeJS.ProcessEnv = process.env, overrides: Partial<Config> = {}): Config {
  const parsed = EnvSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new ConfigError(`invalid environment: ${problems}`);
  }
  const e = parsed.data;
  if (e.TOLLGATE_OIDC_ISSUER && e.TOLLGATE_OIDC_AUDIENCE.length === 0) {
    throw new ConfigError(
      'invalid environment: TOLLGATE_OIDC_AUDIENCE is required with TOLLGATE_OIDC_ISSUER (tokens for other applications must not be accepted)',
    );
  }
  // Node refuses a headers timeout longer than the request timeout.
  if (e.TOLLGATE_HEADERS_TIMEOUT_MS > e.TOLLGATE_REQUEST_TIMEOUT_MS) {
    throw new ConfigError('invalid environment: TOLLGATE_HEADERS_TIMEOUT_MS must not exceed TOLLGATE_REQUEST_TIMEOUT_MS');
  }
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
    inbound: { headersTimeoutMs: e.TOLLGATE_HEADERS_TIMEOUT_MS, requestTimeoutMs: e.TOLLGATE_REQUEST_TIMEOUT_MS },
    websocket: { maxSubscriptions: e.TOLLGATE_WS_MAX_SUBSCRIPTIONS, maxBufferBytes: e.TOLLGATE_WS_MAX_BUFFER_BYTES },
    liveMaxSubscribers: e.TOLLGATE_LIVE_MAX_SUBSCRIBERS,
    authFailLimit: e.TOLLGATE_AUTH_FAIL_LIMIT,
    trustedProxies: e.TOLLGATE_TRUSTED_PROXIES,
    egressAllow: e.TOLLGATE_EGRESS_ALLOW,
    oidc: e.TOLLGATE_OIDC_ISSUER
      ? {
          issuer: e.TOLLGATE_OIDC_ISSUER,
          audiences: e.TOLLGATE_OIDC_AUDIENCE,
          roleClaim: e.TOLLGATE_OIDC_ROLE_CLAIM ?? 'tollgate_role',
          teamClaim: e.TOLLGATE_OIDC_TEAM_CLAIM ?? 'tollgate_team',
        }
      : undefined,
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
      answerMs: e.TOLLGATE_ANSWER_TIMEOUT_MS,
      idleMs: e.TOLLGATE_IDLE_TIMEOUT_MS,
      totalMs: e.TOLLGATE_TOTAL_TIMEOUT_MS,
    },
    streamHoldMs: e.TOLLGATE_STREAM_HOLD_MS,
    drainTimeoutMs: e.TOLLGATE_DRAIN_TIMEOUT_MS,
    analyticsTimeoutMs: e.TOLLGATE_ANALYTICS_TIMEOUT_MS,
    analyticsMaxRows: e.TOLLGATE_ANALYTICS_MAX_ROWS,
    analyticsMaxMemoryBytes: e.TOLLGATE_ANALYTICS_MAX_MEMORY_MB * 1024 * 1024,
    heapGrowthPercent: e.TOLLGATE_HEAP_GROWTH_PERCENT,
    budgets: { webhookSecret: e.TOLLGATE_WEBHOOK_SECRET, defaultMaxTokens: e.TOLLGATE_BUDGET_DEFAULT_MAX_TOKENS },
    cache: { maxBytes: e.TOLLGATE_CACHE_MAX_BYTES, maxEntryBytes: e.TOLLGATE_CACHE_MAX_ENTRY_BYTES },
    responsesRetentionMs: e.TOLLGATE_RESPONSES_RETENTION_HOURS * 3_600_000,
    persistedOperationsFile: e.TOLLGATE_PERSISTED_OPERATIONS,
    corsOrigins: e.TOLLGATE_CORS_ORIGINS,
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
    tracing: tracingConfig(e),
    envForReferences: { ...env },
  };
  return { ...config, ...overrides };
}

/** Traces are exported when an OTLP endpoint is set and the SDK is not disabled. */
function tracingConfig(e: z.infer<typeof EnvSchema>): TracingConfig | undefined {
  const base = e.OTEL_EXPORTER_OTLP_ENDPOINT;
  // OTEL_EXPORTER_OTLP_ENDPOINT is the collector's base URL; the traces one is used as is.
  const url = e.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? (base ? `${base.replace(/\/+$/, '')}/v1/traces` : undefined);
  const exporters = (e.OTEL_TRACES_EXPORTER ?? 'otlp').split(',').map((x) => x.trim().toLowerCase());
  if (!url || e.OTEL_SDK_DISABLED?.toLowerCase() === 'true' || exporters.includes('none')) return undefined;
  const unsupported = exporters.find((x) => x !== 'otlp');
  if (unsupported)
    throw new ConfigError(
      `invalid environment: OTEL_TRACES_EXPORTER: Tollgate exports traces over OTLP only ('otlp' or 'none'), not '${unsupported.slice(0, 50)}'`,
    );
  return {
    url,
    protocol: e.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? e.OTEL_EXPORTER_OTLP_PROTOCOL ?? 'http/protobuf',
    headers: { ...e.OTEL_EXPORTER_OTLP_HEADERS, ...e.OTEL_EXPORTER_OTLP_TRACES_HEADERS },
    timeoutMs: e.OTEL_EXPORTER_OTLP_TRACES_TIMEOUT ?? e.OTEL_EXPORTER_OTLP_TIMEOUT ?? 10_000,
    compression: e.OTEL_EXPORTER_OTLP_TRACES_COMPRESSION ?? e.OTEL_EXPORTER_OTLP_COMPRESSION ?? 'none',
    resource: { ...e.OTEL_RESOURCE_ATTRIBUTES, 'service.name': e.OTEL_SERVICE_NAME ?? e.OTEL_RESOURCE_ATTRIBUTES['service.name'] ?? 'tollgate' },
    sampler: e.OTEL_TRACES_SAMPLER ?? 'parentbased_always_on',
    samplerRatio: e.OTEL_TRACES_SAMPLER_ARG === undefined ? 1 : Number(e.OTEL_TRACES_SAMPLER_ARG),
    batch: {
      scheduleDelayMs: e.OTEL_BSP_SCHEDULE_DELAY,
      exportTimeoutMs: e.OTEL_BSP_EXPORT_TIMEOUT,
      maxQueueSize: e.OTEL_BSP_MAX_QUEUE_SIZE,
      maxExportBatchSize: e.OTEL_BSP_MAX_EXPORT_BATCH_SIZE,
    },
  };
}
