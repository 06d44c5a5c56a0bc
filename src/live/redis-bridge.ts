// Cross-instance live events over Redis pub/sub (when REDIS_URL is set).
//
// Each instance publishes the decisions and budget events made locally to `<prefix>:live`,
// tagged with its instance id, and republishes into its local topics the events of OTHER
// instances (its own are ignored), so a subscriber on instance A sees decisions made on B.
//
// Cost on the request path: the proxy only builds a decision when its topic has listeners.
// The bridge listens to a local topic only while some OTHER instance has a live subscriber on
// that topic: instances announce their interest on `<prefix>:ctl` when it starts or ends and
// every `heartbeatMs` while it lasts; an announcement expires after `interestTtlMs`. With no
// subscriber anywhere, Redis adds nothing to a request. (The first events made on B in the
// millisecond after a subscriber appears on A, before B hears about it, are not forwarded.)
//
// Publishing never blocks a request: events go into a bounded backlog (drop-oldest, counted)
// that is flushed on the next tick as one PUBLISH per batch. While Redis is down (no offline
// queue in ioredis) the backlog fills and drops; ioredis reconnects with backoff and the
// subscriptions are restored.
//
// `<prefix>:keys` carries API-key revocations: publishKeyRevoked(keyId) / onKeyRevoked(cb).
// `<prefix>:cooldowns` carries upstream Retry-After cooldowns (DESIGN §4): a target that
// answered 429 on one instance is skipped by all of them for as long as it asked.
// Durations travel, not times, so clock skew between instances does not matter.

import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { Redis, type RedisOptions } from 'ioredis';
import type { BudgetEvent, LiveBus, RoutingDecision, Topic } from './events.js';
import { type CooldownMessage, type CtlMessage, channels, type KeysMessage, type LiveMessage, MAX_COOLDOWN_MS, TOPICS, type TopicName } from './redis-wire.js';

export interface BridgeLogger {
  warn(obj: object, msg?: string): void;
  info?(obj: object, msg?: string): void;
}

export interface RedisBridgeOptions {
  url: string;
  /** Unique per running instance; events tagged with it are not re-delivered to itself. */
  instanceId: string;
  log?: BridgeLogger;
  /** Channel prefix (default `tollgate`); instances sharing it see each other. */
  prefix?: string;
  /** Events waiting to be published; beyond it the oldest are dropped (default 10 000). */
  maxBacklog?: number;
  /** Events per PUBLISH (default 256). */
  maxBatch?: number;
  heartbeatMs?: number;
  interestTtlMs?: number;
}

export interface RedisBridgeStats {
  connected: boolean;
  /** Events sent to Redis. */
  published: number;
  /** Events from other instances republished locally. */
  received: number;
  /** Events that could not be sent (backlog full, Redis down, publish failed). */
  dropped: number;
  backlog: number;
  /** Topics this instance currently forwards (some other instance has subscribers). */
  forwarding: string[];
}

export interface RedisBridge {
  /** Resolves once the subscriber connection listens on every channel. */
  ready: Promise<void>;
  readonly instanceId: string;
  /** Broadcast that an API key was revoked (other instances drop it from their auth cache). */
  publishKeyRevoked(keyId: string): void;
  /** Tells the other instances that `target` (provider/model) asked for a pause of `ms`. */
  publishCooldown(target: string, ms: number): void;
  onCooldown(cb: (target: string, ms: number) => void): () => void;
  /** Revocations announced by OTHER instances. Returns an unsubscribe function. */
  onKeyRevoked(cb: (keyId: string) => void): () => void;
  stats(): RedisBridgeStats;
  close(): Promise<void>;
}

export function defaultInstanceId(): string {
  return `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

/** Throws on a URL that is not redis:// or rediss://; never throws because Redis is down. */
export function startRedisBridge(bus: LiveBus, options: RedisBridgeOptions): RedisBridge {
  let parsed: URL;
  try {
    parsed = new URL(options.url);
  } catch {
    throw new Error('REDIS_URL is not a valid URL (expected redis://host:port or rediss://…).');
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw new Error(`REDIS_URL must use redis:// or rediss://, not ${parsed.protocol}//`);
  }
  if (!options.instanceId) throw new Error('instanceId is required');

  const me = options.instanceId;
  const prefix = options.prefix ?? 'tollgate';
  const { liveChannel, ctlChannel, keysChannel, cooldownsChannel } = channels(prefix);
  const maxBacklog = options.maxBacklog ?? 10_000;
  const maxBatch = options.maxBatch ?? 256;
  const heartbeatMs = options.heartbeatMs ?? 2_000;
  const interestTtlMs = options.interestTtlMs ?? 3 * heartbeatMs;
  const log = options.log;

  const common: RedisOptions = {
    retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 5), 3_000),
    connectTimeout: 5_000,
    lazyConnect: false,
  };
  // pub: no offline queue, so a publish while disconnected fails at once instead of piling up.
  // A publish that hangs on a connection still called ready would hold an in-flight slot for
  // good (and with all of them, every later event would wait in the backlog): 2 s, then dropped.
  const pub = new Redis(options.url, {
    ...common,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: 2_000,
    connectionName: `tollgate-pub-${me}`,
  });
  const sub = new Redis(options.url, { ...common, maxRetriesPerRequest: null, connectionName: `tollgate-sub-${me}` });

  let lastErrorLog = 0;
  const onError = (which: string) => (err: Error) => {
    const now = Date.now();
    if (now - lastErrorLog < 10_000) return;
    lastErrorLog = now;
    log?.warn({ err: err.message, redis: which }, 'redis bridge: connection problem; live events from other instances paused, retrying');
  };
  pub.on('error', onError('pub'));
  sub.on('error', onError('sub'));

  const stats = { published: 0, received: 0, dropped: 0 };
  let closed = false;

  // ── Outbound: bounded backlog, flushed each tick ────────────────────────────────────
  type Outbound = { t: 'd'; e: RoutingDecision } | { t: 'b'; e: BudgetEvent };
  let backlog: Outbound[] = [];
  let backlogHead = 0;
  let flushScheduled = false;
  let inflight = 0;
  const MAX_INFLIGHT = 8;
  let injecting = false; // true while republishing a remote event locally: do not echo it

  const backlogSize = () => backlog.length - backlogHead;
  function enqueue(item: Outbound): void {
    if (backlogSize() >= maxBacklog) {
      backlog[backlogHead++] = undefined as never; // drop the oldest, and let it go
      stats.dropped++;
    }
    backlog.push(item);
    compact(); // here, not only in flush: that returns early while the publishing connection is down
    scheduleFlush();
  }
  /** Drops the slots before the head once they are most of the array. */
  function compact(): void {
    if (backlogHead > 4096 && backlogHead * 2 > backlog.length) {
      backlog = backlog.slice(backlogHead);
      backlogHead = 0;
    }
  }
  function scheduleFlush(): void {
    if (flushScheduled || closed) return;
    flushScheduled = true;
    setImmediate(flush);
  }
  function flush(): void {
    flushScheduled = false;
    if (closed || pub.status !== 'ready') return; // 'ready' triggers the next flush
    while (backlogSize() > 0 && inflight < MAX_INFLIGHT) {
      const n = Math.min(maxBatch, backlogSize());
      const batch = backlog.slice(backlogHead, backlogHead + n);
      backlogHead += n;
      const msg: LiveMessage = { from: me };
      for (const item of batch) {
        if (item.t === 'd') (msg.d ??= []).push(item.e);
        else (msg.b ??= []).push(item.e);
      }
      inflight++;
      pub.publish(liveChannel, JSON.stringify(msg)).then(
        () => {
          inflight--;
          stats.published += n;
          if (backlogSize() > 0) scheduleFlush();
        },
        () => {
          inflight--;
          stats.dropped += n;
          if (backlogSize() > 0) scheduleFlush();
        },
      );
    }
    compact();
  }
  pub.on('ready', () => {
    scheduleFlush();
    flushRevocations();
  });

  // ── Interest: forward a topic only while another instance has subscribers on it ────────
  const remoteInterest: Record<TopicName, Map<string, number>> = { decisions: new Map(), budgets: new Map() };
  const forwarders: Record<TopicName, (() => void) | null> = { decisions: null, budgets: null };
  // biome-ignore lint/suspicious/noExplicitAny: the two topics' event types differ; callers forward events as they came
  const topicOf = (name: TopicName): Topic<any> => (name === 'decisions' ? bus.decisions : bus.budgets);
  // Our own forwarding listener does not count as local interest. Counted before it is
  // attached and after it is detached, because the topic's watchers run inside (un)subscribe.
  const own: Record<TopicName, number> = { decisions: 0, budgets: 0 };
  const localCount = (name: TopicName) => topicOf(name).listenerCount - own[name];

  function updateForwarder(name: TopicName): void {
    const now = Date.now();
    const interest = remoteInterest[name];
    for (const [id, until] of interest) if (until <= now) interest.delete(id);
    const want = interest.size > 0 && !closed;
    if (want && !forwarders[name]) {
      const tag = name === 'decisions' ? 'd' : 'b';
      own[name]++;
      forwarders[name] = topicOf(name).subscribe((e) => {
        if (!injecting) enqueue({ t: tag, e } as Outbound);
      });
    } else if (!want && forwarders[name]) {
      const off = forwarders[name]!;
      forwarders[name] = null;
      own[name]--;
      off();
    }
  }

  let announced: string = '';
  function announce(force: boolean): void {
    if (closed || pub.status !== 'ready') return;
    const topics = TOPICS.filter((t) => localCount(t) > 0);
    const key = topics.join(',');
    if (!force && key === announced) return;
    announced = key;
    const msg: CtlMessage = { from: me, type: 'interest', topics };
    pub.publish(ctlChannel, JSON.stringify(msg)).catch(() => {
      announced = ''; // retry on the next heartbeat
    });
  }
  const unwatch = TOPICS.map((name) => topicOf(name).watch(() => announce(false)));

  const heartbeat = setInterval(() => {
    if (TOPICS.some((t) => localCount(t) > 0)) announce(true);
    for (const t of TOPICS) updateForwarder(t);
  }, heartbeatMs);
  heartbeat.unref();

  // ── Inbound ────────────────────────────────────────────────────────────────────────────
  const revokedCallbacks = new Set<(keyId: string) => void>();
  const cooldownCallbacks = new Set<(target: string, ms: number) => void>();

  function deliver<T>(topic: Topic<T>, events: T[] | undefined): void {
    if (!events || !topic.hasListeners) return;
    injecting = true;
    try {
      for (const e of events) {
        topic.publish(e);
        stats.received++;
      }
    } finally {
      injecting = false;
    }
  }

  sub.on('message', (channel: string, raw: string) => {
    if (closed) return;
    let msg: { from?: unknown } | null;
    try {
      msg = JSON.parse(raw);
    } catch {
      return;
    }
    if (!msg || typeof msg !== 'object' || msg.from === me) return;
    if (channel === liveChannel) {
      const m = msg as LiveMessage;
      deliver(bus.decisions, Array.isArray(m.d) ? m.d : undefined);
      deliver(bus.budgets, Array.isArray(m.b) ? m.b : undefined);
    } else if (channel === ctlChannel) {
      const m = msg as CtlMessage;
      if (m.type === 'query') {
        announce(true);
        return;
      }
      if (m.type !== 'interest' || typeof m.from !== 'string') return;
      const topics = new Set(Array.isArray(m.topics) ? m.topics : []);
      for (const t of TOPICS) {
        if (topics.has(t)) remoteInterest[t].set(m.from, Date.now() + interestTtlMs);
        else remoteInterest[t].delete(m.from);
        updateForwarder(t);
      }
    } else if (channel === cooldownsChannel) {
      const m = msg as CooldownMessage;
      if (typeof m.target !== 'string' || typeof m.ms !== 'number' || !(m.ms > 0)) return;
      for (const cb of cooldownCallbacks) cb(m.target, Math.min(m.ms, MAX_COOLDOWN_MS));
    } else if (channel === keysChannel) {
      const m = msg as KeysMessage;
      if (!Array.isArray(m.keyIds)) return;
      for (const id of m.keyIds) {
        if (typeof id !== 'string') continue;
        for (const cb of revokedCallbacks) {
          try {
            cb(id);
          } catch (err) {
            log?.warn({ err: String(err) }, 'redis bridge: key revocation callback failed');
          }
        }
      }
    }
  });

  let resolveReady!: () => void;
  const ready = new Promise<void>((resolve) => (resolveReady = resolve));
  const subscribeAll = () =>
    sub.subscribe(liveChannel, ctlChannel, keysChannel, cooldownsChannel).then(
      () => {
        resolveReady();
        // Ask the others who is listening; announce our own interest.
        if (pub.status === 'ready') pub.publish(ctlChannel, JSON.stringify({ from: me, type: 'query' } satisfies CtlMessage)).catch(() => undefined);
        announce(true);
      },
      () => undefined, // ioredis re-subscribes on reconnect (autoResubscribe)
    );
  void subscribeAll();
  sub.on('ready', () => {
    // After a reconnect: announce again (others may have expired our interest).
    if (pub.status === 'ready') announce(true);
  });
  pub.on('ready', () => announce(true));

  // ── Key revocations: small bounded queue, sent as soon as Redis is reachable ─────────
  let pendingRevocations: string[] = [];
  function flushRevocations(): void {
    if (closed || pendingRevocations.length === 0 || pub.status !== 'ready') return;
    const keyIds = pendingRevocations;
    pendingRevocations = [];
    pub.publish(keysChannel, JSON.stringify({ from: me, keyIds } satisfies KeysMessage)).catch(() => {
      pendingRevocations = [...keyIds, ...pendingRevocations].slice(-1000);
    });
  }

  return {
    ready,
    instanceId: me,
    publishKeyRevoked(keyId: string) {
      if (closed) return;
      pendingRevocations.push(keyId);
      if (pendingRevocations.length > 1000) pendingRevocations = pendingRevocations.slice(-1000);
      flushRevocations();
    },
    onKeyRevoked(cb) {
      revokedCallbacks.add(cb);
      return () => revokedCallbacks.delete(cb);
    },
    publishCooldown(target: string, ms: number) {
      // Best effort and never queued: a cooldown heard late is worth little.
      if (closed || pub.status !== 'ready') return;
      pub.publish(cooldownsChannel, JSON.stringify({ from: me, target, ms } satisfies CooldownMessage)).catch(() => undefined);
    },
    onCooldown(cb) {
      cooldownCallbacks.add(cb);
      return () => cooldownCallbacks.delete(cb);
    },
    stats() {
      return {
        connected: pub.status === 'ready' && sub.status === 'ready',
        published: stats.published,
        received: stats.received,
        dropped: stats.dropped,
        backlog: backlogSize(),
        forwarding: TOPICS.filter((t) => forwarders[t] !== null),
      };
    },
    async close() {
      if (closed) return;
      // Tell the others our interest ended (best effort), then stop.
      if (pub.status === 'ready' && TOPICS.some((t) => localCount(t) > 0)) {
        await pub.publish(ctlChannel, JSON.stringify({ from: me, type: 'interest', topics: [] } satisfies CtlMessage)).catch(() => undefined);
      }
      closed = true;
      clearInterval(heartbeat);
      for (const off of unwatch) off();
      for (const t of TOPICS) updateForwarder(t);
      stats.dropped += backlogSize();
      backlog = [];
      backlogHead = 0;
      revokedCallbacks.clear();
      cooldownCallbacks.clear();
      await Promise.all([end(pub), end(sub)]);
    },
  };
}

async function end(r: Redis): Promise<void> {
  if (r.status === 'ready') {
    await Promise.race([r.quit().catch(() => undefined), new Promise((res) => setTimeout(res, 1_000).unref())]);
  }
  r.disconnect();
}
