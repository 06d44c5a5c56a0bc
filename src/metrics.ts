// Prometheus metrics. One registry per app instance (tests run several apps in one process).
import client from 'prom-client';
import type { CacheStats } from './cache/store.js';

export interface JournalStatsSource {
  stats(): { pendingRecords: number; pendingSegments: number; insertedRecords: number; insertErrors: number; appendedRecords: number };
}

export function createMetrics() {
  const registry = new client.Registry();
  // Node's defaults (process_*, nodejs_*) under tollgate_ like every other name: tollgate_process_cpu_seconds_total.
  client.collectDefaultMetrics({ register: registry, prefix: 'tollgate_' });

  const requests = new client.Counter({
    name: 'tollgate_requests_total',
    help: 'Proxied API requests by endpoint and HTTP status',
    labelNames: ['endpoint', 'status'] as const,
    registers: [registry],
  });
  const errors = new client.Counter({
    name: 'tollgate_request_errors_total',
    help: 'Requests answered with an error, by error code',
    labelNames: ['endpoint', 'code'] as const,
    registers: [registry],
  });
  const latency = new client.Histogram({
    name: 'tollgate_request_duration_seconds',
    help: 'Time from request start to the last byte of the response',
    labelNames: ['endpoint', 'stream'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
    registers: [registry],
  });
  const overhead = new client.Histogram({
    name: 'tollgate_overhead_seconds',
    help: 'Time the gateway added on top of the upstream call',
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05],
    registers: [registry],
  });
  const retriesRefused = new client.Counter({
    name: 'tollgate_retries_refused_total',
    help: "Retries and failovers not made because the route's retry budget was spent, by route",
    labelNames: ['route'] as const,
    registers: [registry],
  });
  const ruleErrors = new client.Counter({
    name: 'tollgate_rule_errors_total',
    help: 'Routing rules whose `when` failed to evaluate (counted as false), by route and rule',
    labelNames: ['route', 'rule'] as const,
    registers: [registry],
  });
  const upstreamAttempts = new client.Counter({
    name: 'tollgate_upstream_attempts_total',
    help: 'Calls to upstream providers by provider and outcome',
    labelNames: ['provider', 'outcome'] as const,
    registers: [registry],
  });

  const cacheRequests = new client.Counter({
    name: 'tollgate_cache_requests_total',
    help: 'Proxied requests by cache status (miss, exact, semantic, bypass)',
    labelNames: ['status'] as const,
    registers: [registry],
  });
  let cache: { stats(): CacheStats } | null = null;
  const cacheStat = (pick: (s: CacheStats) => number) => collectFrom(() => cache, pick);
  new client.Gauge({ name: 'tollgate_cache_entries', help: 'Answers held in the response cache', registers: [registry], collect: cacheStat((s) => s.entries) });
  new client.Gauge({
    name: 'tollgate_cache_bytes',
    help: 'Approximate bytes held by the response cache (bounded by TOLLGATE_CACHE_MAX_BYTES)',
    registers: [registry],
    collect: cacheStat((s) => s.bytes),
  });
  new client.Gauge({
    name: 'tollgate_cache_semantic_entries',
    help: 'Answers in the semantic index',
    registers: [registry],
    collect: cacheStat((s) => s.semanticEntries),
  });
  new client.Gauge({
    name: 'tollgate_cache_evictions',
    help: 'Answers evicted to stay under the size limit, since start',
    registers: [registry],
    collect: cacheStat((s) => s.evictions),
  });
  new client.Gauge({
    name: 'tollgate_cache_expirations',
    help: 'Answers dropped when their TTL passed, since start',
    registers: [registry],
    collect: cacheStat((s) => s.expirations),
  });
  new client.Gauge({
    name: 'tollgate_cache_redis_errors',
    help: 'Failed Redis cache reads/writes (treated as misses), since start',
    registers: [registry],
    collect: cacheStat((s) => s.redisErrors),
  });

  let journal: JournalStatsSource | null = null;
  const stat = (pick: (s: ReturnType<JournalStatsSource['stats']>) => number) => collectFrom(() => journal, pick);
  new client.Gauge({
    name: 'tollgate_receipts_appended',
    help: 'Receipts appended to the WAL since start',
    registers: [registry],
    collect: stat((s) => s.appendedRecords),
  });
  new client.Gauge({
    name: 'tollgate_receipts_written',
    help: 'Receipts acknowledged by ClickHouse since start',
    registers: [registry],
    collect: stat((s) => s.insertedRecords),
  });
  new client.Gauge({
    name: 'tollgate_receipts_queued',
    help: 'Receipts in the WAL not yet acknowledged by ClickHouse',
    registers: [registry],
    collect: stat((s) => s.pendingRecords),
  });
  new client.Gauge({
    name: 'tollgate_wal_segments',
    help: 'WAL segments not yet released (WAL depth)',
    registers: [registry],
    collect: stat((s) => s.pendingSegments),
  });
  new client.Gauge({
    name: 'tollgate_receipt_insert_errors',
    help: 'Failed ClickHouse inserts (retried) since start',
    registers: [registry],
    collect: stat((s) => s.insertErrors),
  });

  let bus: { droppedTotal: number; subscriberCount: number } | null = null;
  new client.Gauge({
    name: 'tollgate_live_subscribers',
    help: 'Live subscriptions (GraphQL routingDecisions/budgetEvents) on this instance',
    registers: [registry],
    collect() {
      if (bus) this.set(bus.subscriberCount);
    },
  });
  new client.Gauge({
    name: 'tollgate_live_dropped_events',
    help: 'Live events dropped for slow subscribers since start (bounded per-subscriber buffers)',
    registers: [registry],
    collect() {
      if (bus) this.set(bus.droppedTotal);
    },
  });

  const wsSlowConsumers = new client.Counter({
    name: 'tollgate_ws_slow_consumer_closes_total',
    help: 'Websockets closed (1008 "slow consumer") because their unsent bytes passed TOLLGATE_WS_MAX_BUFFER_BYTES',
    registers: [registry],
  });
  let websockets: { bufferedBytes(): number } | null = null;
  new client.Gauge({
    name: 'tollgate_ws_buffered_bytes',
    help: 'Bytes waiting to be sent to websocket subscribers, all sockets together',
    registers: [registry],
    collect() {
      if (websockets) this.set(websockets.bufferedBytes());
    },
  });

  // The Redis bridge (REDIS_URL): what other instances' subscribers miss from this one.
  let bridge: BridgeStatsSource | null = null;
  const bridgeStat = (pick: (s: ReturnType<BridgeStatsSource['stats']>) => number) => collectFrom(() => bridge, pick);
  new client.Gauge({
    name: 'tollgate_live_bridge_connected',
    help: '1 while both Redis connections of the live bridge are ready (REDIS_URL)',
    registers: [registry],
    collect: bridgeStat((s) => (s.connected ? 1 : 0)),
  });
  new client.Gauge({
    name: 'tollgate_live_bridge_dropped_events',
    help: 'Live events for other instances dropped since start (backlog full, publish failed or timed out)',
    registers: [registry],
    collect: bridgeStat((s) => s.dropped),
  });
  new client.Gauge({
    name: 'tollgate_live_bridge_backlog',
    help: 'Live events waiting to be published to other instances',
    registers: [registry],
    collect: bridgeStat((s) => s.backlog),
  });

  return {
    registry,
    wsSlowConsumers,
    requests,
    errors,
    latency,
    overhead,
    upstreamAttempts,
    retriesRefused,
    ruleErrors,
    cacheRequests,
    watchCache(source: { stats(): CacheStats }) {
      cache = source;
    },
    watchJournal(source: JournalStatsSource) {
      journal = source;
    },
    watchBus(source: { droppedTotal: number; subscriberCount: number }) {
      bus = source;
    },
    watchWebsockets(source: { bufferedBytes(): number }) {
      websockets = source;
    },
    watchBridge(source: BridgeStatsSource) {
      bridge = source;
    },
  };
}

/** A gauge's collect: one figure of a source's stats, once the source is watched (until then, unset). */
function collectFrom<S>(source: () => { stats(): S } | null, pick: (stats: S) => number) {
  return function (this: client.Gauge) {
    const watched = source();
    if (watched) this.set(pick(watched.stats()));
  };
}

export interface BridgeStatsSource {
  stats(): { connected: boolean; dropped: number; backlog: number };
}

export type Metrics = ReturnType<typeof createMetrics>;
