// Upstream HTTP: one undici Pool per provider origin, per-request timeouts, and a single
// classification of what went wrong so routing can decide whether to fail over.
import { type buildConnector, type Dispatcher, Pool, errors as undiciErrors } from 'undici';
import type { TimeoutConfig } from '../config.js';
import { type Listener, policedConnector, providerPolicy, type Resolver } from '../net/egress.js';
import { HOP_HEADER } from '../net/hop.js';
import type { Provider } from '../routing/catalog.js';
import type { UpstreamSignal } from './cancellation.js';

export type FailureKind =
  | 'connect_refused'
  | 'connect_timeout'
  | 'timeout_first_byte'
  | 'timeout_idle'
  | 'timeout_total'
  | 'connection_reset'
  | 'aborted'
  | 'network_error';

export class UpstreamFailure extends Error {
  constructor(
    readonly kind: FailureKind,
    message: string,
  ) {
    super(message);
  }
  get isTimeout(): boolean {
    return this.kind.startsWith('timeout') || this.kind === 'connect_timeout';
  }
}

export interface UpstreamResponse {
  status: number;
  headers: Dispatcher.ResponseData['headers'];
  body: Dispatcher.ResponseData['body'];
}

export interface UpstreamOptions {
  /** This deployment's loop marker, sent as x-tollgate-hop on every upstream request. */
  hopMarker?: string;
  /** Tollgate's own listening sockets: no provider may point at them. */
  listeners?: () => readonly Listener[];
  /** DNS (tests): the system resolver by default. */
  resolve?: Resolver;
}

export class UpstreamClient {
  private readonly pools = new Map<string, Pool>();
  /** Every connection goes through the provider policy (no cloud metadata, not Tollgate itself). */
  private readonly connect: buildConnector.connector;
  private readonly hopHeaders: Record<string, string>;

  constructor(
    private readonly timeouts: TimeoutConfig,
    options: UpstreamOptions = {},
  ) {
    const listeners = options.listeners ?? (() => []);
    this.connect = policedConnector(providerPolicy(listeners), { timeout: timeouts.connectMs, resolve: options.resolve });
    this.hopHeaders = options.hopMarker ? { [HOP_HEADER]: options.hopMarker } : {};
  }

  private pool(origin: string): Pool {
    let pool = this.pools.get(origin);
    if (!pool) {
      pool = new Pool(origin, {
        connections: 256,
        pipelining: 1,
        connect: this.connect,
        keepAliveTimeout: 30_000,
        // Timeouts are set per request; these are only the pool's ceilings.
        headersTimeout: 0,
        bodyTimeout: 0,
      });
      this.pools.set(origin, pool);
    }
    return pool;
  }

  /**
   * POSTs `body` to `provider.basePath + path`. Resolves once response headers arrive (any
   * status); rejects with an UpstreamFailure when none do. `signal` aborts (client gone or
   * total timeout); idle time between body chunks is bounded by `idleMs`. `headers` (trace
   * context) go first, so they can never replace the provider's own or the loop marker.
   */
  async post(
    provider: Provider,
    path: string,
    body: string,
    signal: UpstreamSignal,
    options: { firstByteMs?: number; headers?: Record<string, string> } = {},
  ): Promise<UpstreamResponse> {
    try {
      const res = await this.pool(provider.origin).request({
        method: 'POST',
        path: provider.basePath + path,
        headers: {
          ...options.headers,
          ...provider.headers,
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          ...this.hopHeaders,
        },
        body,
        signal,
        headersTimeout: options.firstByteMs ?? this.timeouts.firstByteMs,
        bodyTimeout: this.timeouts.idleMs,
      });
      return { status: res.statusCode, headers: res.headers, body: res.body };
    } catch (err) {
      throw classify(err, signal);
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.pools.values()].map((p) => p.destroy().catch(() => undefined)));
    this.pools.clear();
  }
}

/** Maps undici / socket errors to the failure kinds routing and receipts speak. */
export function classify(err: unknown, signal?: UpstreamSignal): UpstreamFailure {
  if (err instanceof UpstreamFailure) return err;
  if (signal?.aborted) {
    const reason = signal.reason;
    if (reason instanceof UpstreamFailure) return reason;
    return new UpstreamFailure('aborted', 'request aborted');
  }
  const code = (err as { code?: string })?.code;
  if (err instanceof undiciErrors.HeadersTimeoutError || code === 'UND_ERR_HEADERS_TIMEOUT') {
    return new UpstreamFailure('timeout_first_byte', 'upstream sent no response headers in time');
  }
  if (err instanceof undiciErrors.BodyTimeoutError || code === 'UND_ERR_BODY_TIMEOUT') {
    return new UpstreamFailure('timeout_idle', 'upstream went idle between chunks');
  }
  if (err instanceof undiciErrors.ConnectTimeoutError || code === 'UND_ERR_CONNECT_TIMEOUT') {
    return new UpstreamFailure('connect_timeout', 'connecting to upstream timed out');
  }
  if (code === 'EGRESS_DENIED') {
    // The reason names internal addresses: clients read these messages, so it stays out.
    return new UpstreamFailure('connect_refused', "Tollgate's egress policy refused the provider's address");
  }
  const causeCode = (err as { cause?: { code?: string } })?.cause?.code;
  if (code === 'ECONNREFUSED' || causeCode === 'ECONNREFUSED') {
    return new UpstreamFailure('connect_refused', 'upstream refused the connection');
  }
  if (err instanceof undiciErrors.SocketError || code === 'UND_ERR_SOCKET' || code === 'ECONNRESET' || causeCode === 'ECONNRESET') {
    return new UpstreamFailure('connection_reset', 'upstream closed the connection');
  }
  if (err instanceof undiciErrors.RequestAbortedError || code === 'UND_ERR_ABORTED') {
    return new UpstreamFailure('aborted', 'request aborted');
  }
  return new UpstreamFailure('network_error', 'upstream request failed');
}

/** Seconds or an HTTP date → milliseconds, capped; undefined when absent or unparseable. */
export function parseRetryAfter(value: string | string[] | undefined, capMs = 60_000): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (!v) return undefined;
  const trimmed = v.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.min(Number(trimmed) * 1000, capMs);
  // HTTP-date (RFC 9110), e.g. "Wed, 21 Oct 2015 07:28:00 GMT"; Date.parse alone accepts junk.
  if (!/^[A-Za-z]{3}, \d{2} [A-Za-z]{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/.test(trimmed)) return undefined;
  const date = Date.parse(trimmed);
  return Number.isFinite(date) ? Math.min(Math.max(0, date - Date.now()), capMs) : undefined;
}
