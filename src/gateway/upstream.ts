// Upstream HTTP: one undici Pool per provider origin, per-request timeouts, and a single
// classification of what went wrong so routing can decide whether to fail over.
import type { IncomingHttpHeaders } from 'node:http';
import { type buildConnector, type Dispatcher, Pool, errors as undiciErrors } from 'undici';
import type { TimeoutConfig } from '../config.js';
import { type Listener, policedConnector, providerPolicy, type Resolver } from '../net/egress.js';
import { HOP_HEADER } from '../net/hop.js';
import type { Provider } from '../routing/catalog.js';
import { type UpstreamSignal, whenCancelled } from './cancellation.js';
import { UpstreamBody } from './upstream-body.js';

export type FailureKind =
  | 'connect_refused'
  | 'connect_timeout'
  | 'timeout_first_byte'
  | 'timeout_idle'
  | 'timeout_total'
  | 'connection_reset'
  | 'aborted'
  | 'network_error'
  /** The upstream's stream carried an error event (the answer is cut short, whatever end followed). */
  | 'stream_error';

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
  headers: IncomingHttpHeaders;
  body: UpstreamBody;
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
        // The wait for headers is timed by ResponseHandler: undici's headers timer is not
        // re-armed reliably on a kept-alive socket (measured with undici 7.30: on a reused
        // connection a 400-ms headersTimeout let 700-ms waits through, most of the time).
        headersTimeout: 0,
        bodyTimeout: this.timeouts.idleMs,
      });
      this.pools.set(origin, pool);
    }
    return pool;
  }

  /**
   * POSTs `body` to `provider.basePath + path`. Resolves once response headers arrive (any
   * status); rejects with an UpstreamFailure when none do. `signal` aborts (client gone or
   * total timeout); idle time between body chunks is bounded by `idleMs`, and the whole call,
   * its body included, by the provider's own `timeoutMs` when it has one. `headers` (trace
   * context) go first, so they can never replace the provider's own or the loop marker.
   */
  post(
    provider: Provider,
    path: string,
    body: string,
    signal: UpstreamSignal,
    /** `whole`: the answer comes in one piece, with the headers (TimeoutConfig.answerMs applies, not firstByteMs). */
    options: { whole?: boolean; headers?: Record<string, string> } = {},
  ): Promise<UpstreamResponse> {
    if (signal.aborted) return Promise.reject(classify(null, signal));
    return new Promise((resolve, reject) => {
      const headersTimeoutMs = options.whole ? this.timeouts.answerMs : this.timeouts.firstByteMs;
      const handler = new ResponseHandler(signal, headersTimeoutMs, provider.timeoutMs, resolve, reject);
      try {
        this.pool(provider.origin).dispatch(
          {
            method: 'POST',
            path: provider.basePath + path + provider.query,
            headers: {
              ...options.headers,
              ...provider.headers,
              'content-type': 'application/json',
              accept: 'application/json, text/event-stream',
              // Nothing here decodes gzip or br: without this, any coding is acceptable (RFC 9110)
              // and a compressed answer read as garbage, a failure of a target that was fine.
              'accept-encoding': 'identity',
              ...this.hopHeaders,
            },
            body,
          },
          handler,
        );
      } catch (err) {
        handler.onResponseError(null, err as Error);
      }
    });
  }

  async close(): Promise<void> {
    await Promise.all([...this.pools.values()].map((p) => p.destroy().catch(() => undefined)));
    this.pools.clear();
  }
}

/**
 * One upstream call as undici reports it: resolves `post` when the final response headers
 * arrive, then feeds the body; rejects with an UpstreamFailure when no response comes.
 * `signal` aborts the call at any point (as undici's own `request` does with one).
 */
class ResponseHandler implements Dispatcher.DispatchHandler {
  #controller: Dispatcher.DispatchController | null = null;
  #body: UpstreamBody | null = null;
  #settled = false;
  readonly #stopListening: () => void;
  /** Until the final response headers: then the body's idle timeout (undici's) takes over. */
  #headersTimer: NodeJS.Timeout | null;
  /** The provider's limit on the whole call (Provider.timeoutMs), until its body ends. */
  #callTimer: NodeJS.Timeout | null = null;
  #abortedWith: Error | null = null;

  constructor(
    private readonly signal: UpstreamSignal,
    headersTimeoutMs: number,
    callTimeoutMs: number | null,
    private readonly resolve: (response: UpstreamResponse) => void,
    private readonly reject: (failure: UpstreamFailure) => void,
  ) {
    this.#stopListening = whenCancelled(signal, () => this.#abort());
    this.#headersTimer = setTimeout(() => this.#noHeaders(), headersTimeoutMs);
    this.#headersTimer.unref();
    if (callTimeoutMs) {
      const failure = new UpstreamFailure('timeout_total', `the call to the provider took longer than its timeoutMs (${callTimeoutMs} ms)`);
      this.#callTimer = setTimeout(() => this.#abort(failure), callTimeoutMs);
      this.#callTimer.unref();
    }
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    // Aborted (or out of time) while it waited for a connection: undici calls back with the reason.
    const reason = this.#abortedWith ?? (this.signal.aborted ? abortReason(this.signal) : null);
    if (reason) controller.abort(reason);
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    if (statusCode < 200) return; // 1xx: the final response is still to come
    this.#stopHeadersTimer();
    this.#body = new UpstreamBody(controller);
    this.resolve({ status: statusCode, headers, body: this.#body });
  }

  onResponseData(_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.#body?.push(chunk);
  }

  onResponseEnd(): void {
    this.#finish();
    this.#body?.end();
  }

  /** Before the headers: `post` rejects. After: the body's reader gets the error. */
  onResponseError(_controller: Dispatcher.DispatchController | null, err: Error): void {
    if (this.#finish()) return;
    if (this.#body) this.#body.fail(err);
    else this.reject(classify(err, this.signal));
  }

  #abort(reason: Error = abortReason(this.signal)): void {
    this.#abortedWith = reason;
    this.#controller?.abort(reason);
    // A reader waiting now learns at once, whenever undici reports the abort.
    this.onResponseError(null, reason);
  }

  #noHeaders(): void {
    this.#headersTimer = null;
    this.#abort(new UpstreamFailure('timeout_first_byte', 'upstream sent no response headers in time'));
  }

  #stopHeadersTimer(): void {
    if (this.#headersTimer) clearTimeout(this.#headersTimer);
    this.#headersTimer = null;
  }

  /** Stops listening to the signal and the clock; true when the call had already finished. */
  #finish(): boolean {
    if (this.#settled) return true;
    this.#settled = true;
    this.#stopListening();
    this.#stopHeadersTimer();
    if (this.#callTimer) clearTimeout(this.#callTimer);
    return false;
  }
}

function abortReason(signal: UpstreamSignal): Error {
  const reason = signal.reason;
  return reason instanceof Error ? reason : new undiciErrors.RequestAbortedError();
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
  if (code === 'SSE_EVENT_TOO_LARGE') return new UpstreamFailure('network_error', 'upstream sent an event larger than 16 MiB');
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
