/**
 * The simulated provider: a real loopback HTTP server (node:http, no framework) that speaks
 * the OpenAI wire (openai.ts; the Responses API: responses.ts) and the Anthropic Messages wire
 * (anthropic.ts). Tollgate's tests, the proxy benchmark and `tollgate demo` use it as the
 * upstream, so it has to be:
 *
 * - fast: the benchmark compares Tollgate against this server directly, so per-request work is
 *   a JSON.parse, one pass over the prompt text (length + FNV-1a hash) and one JSON string.
 *   Prompt tokens are estimated (answer.ts); completion tokens are exact by construction: the
 *   answer is built from `completionTokens` pieces and usage reports the number sent.
 * - deterministic: the answer text, tool-call arguments and embeddings are derived from a hash
 *   of the request; ids come from a per-server counter.
 * - controllable: `SimBehaviour` (behaviour.ts) adds latency, pacing, error statuses, hangs,
 *   broken streams and cache usage, per model and for a bounded number of requests (`times`).
 *
 * Endpoints (with or without the `/v1` prefix): POST /chat/completions (JSON and SSE),
 * POST /responses (JSON and SSE, a web_search tool included), POST /embeddings, POST /messages (Anthropic, JSON and SSE), GET /models, GET /models/{id}.
 * Anything else is a 404 in OpenAI's error shape.
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { messages, sendAnthropicError } from './anthropic.js';
import { BehaviourBook, OWNER, type SimBehaviour } from './behaviour.js';
import { sendJson } from './http.js';
import { chat, embeddings, internalError, sendError } from './openai.js';
import { responses } from './responses.js';

export { SIMULATED_MODELS, type SimBehaviour } from './behaviour.js';
export { SIM_EMBEDDING_DIMS } from './openai.js';

export interface RecordedRequest {
  method: string;
  path: string;
  /** The query string, without its `?` ('' when none). */
  query: string;
  headers: Record<string, string | string[] | undefined>;
  /** Parsed JSON body; the raw text when it was not JSON; undefined when empty. */
  body: any;
  /** Date.now() when the request body had been read. */
  at: number;
}

export interface SimulatedProvider {
  /** Base URL of the OpenAI wire, including /v1, e.g. http://127.0.0.1:PORT/v1 */
  readonly url: string;
  /** Base URL of the Anthropic wire (an ANTHROPIC provider's baseUrl), e.g. http://127.0.0.1:PORT */
  readonly origin: string;
  readonly port: number;
  setDefault(b: SimBehaviour): void;
  behave(model: string, b: SimBehaviour): void;
  /** Clear behaviours (back to the start-up defaults) and recorded requests. */
  reset(): void;
  /** Recorded requests, oldest first, bounded to the last `maxRecorded`; empty when record is false. */
  readonly requests: RecordedRequest[];
  /** Currently open sockets. */
  connections(): number;
  /** Stop listening and destroy every open socket (hung requests too). Idempotent. */
  close(): Promise<void>;
}

export interface SimulatedProviderOptions {
  /** Port to listen on (default 0: an ephemeral port). */
  port?: number;
  /** Interface to bind (default 127.0.0.1). */
  host?: string;
  /** Default behaviour; reset() returns to it. */
  defaults?: SimBehaviour;
  /** Record requests (default true). Turn off for benchmarks. */
  record?: boolean;
  /** Ring size of the recording (default 10_000). */
  maxRecorded?: number;
  /**
   * When set, every request must carry its key (`Authorization: Bearer <requireApiKey>` on the
   * OpenAI wire, that or `x-api-key: <requireApiKey>` on the Anthropic wire), else 401.
   */
  requireApiKey?: string;
}

const MAX_BODY_BYTES = 32 * 1024 * 1024;

export async function startSimulatedProvider(opts: SimulatedProviderOptions = {}): Promise<SimulatedProvider> {
  const host = opts.host ?? '127.0.0.1';
  const record = opts.record ?? true;
  const maxRecorded = Math.max(1, opts.maxRecorded ?? 10_000);
  const expectedAuth = opts.requireApiKey === undefined ? undefined : `Bearer ${opts.requireApiKey}`;
  const book = new BehaviourBook(opts.defaults ?? {});
  const requests: RecordedRequest[] = [];
  const sockets = new Set<Socket>();
  const ids = { n: 0 }; // completion and tool-call ids
  let requestSeq = 0;

  // noDelay matters: SSE chunks must leave as soon as they are written, not after Nagle's delay.
  const server = http.createServer({ noDelay: true }, (req, res) => {
    const parts: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) tooLarge = true;
      else parts.push(chunk);
    });
    req.on('end', () => {
      const raw = parts.length === 0 ? '' : parts.length === 1 ? parts[0].toString('utf8') : Buffer.concat(parts).toString('utf8');
      try {
        dispatch(req, res, raw, tooLarge);
      } catch (err) {
        internalError(res, err);
      }
    });
  });

  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });

  function dispatch(req: http.IncomingMessage, res: http.ServerResponse, raw: string, tooLarge: boolean): void {
    const requestId = `req_sim_${(++requestSeq).toString(36)}`;
    res.setHeader('x-request-id', requestId);
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    let route = path.startsWith('/v1/') ? path.slice(3) : path;
    if (route.length > 1 && route.endsWith('/')) route = route.slice(0, -1);

    let body: any;
    let badJson = false;
    if (raw.length > 0) {
      try {
        body = JSON.parse(raw);
      } catch {
        body = raw;
        badJson = true;
      }
    }
    if (record) {
      requests.push({ method: req.method ?? 'GET', path, query: q < 0 ? '' : url.slice(q + 1), headers: req.headers, body, at: Date.now() });
      // shift() on a 10k array is a few microseconds; keeps the ring exact and oldest-first.
      if (requests.length > maxRecorded) requests.shift();
    }

    const method = req.method;
    if (method === 'POST' && route === '/messages') {
      // Never echo the key back (same rule as the gateway).
      if (expectedAuth !== undefined && req.headers['x-api-key'] !== opts.requireApiKey && req.headers.authorization !== expectedAuth) {
        return sendAnthropicError(res, 401, 'invalid x-api-key');
      }
      if (tooLarge) return sendAnthropicError(res, 413, 'Request exceeds the maximum allowed number of bytes.');
      if (badJson || body === null || typeof body !== 'object' || Array.isArray(body))
        return sendAnthropicError(res, 400, 'The request body is not valid JSON.');
      messages(res, body, book, ids).catch((err) => internalError(res, err));
      return;
    }
    if (expectedAuth !== undefined && req.headers.authorization !== expectedAuth) {
      const missing = !req.headers.authorization;
      return sendError(res, 401, missing ? "You didn't provide an API key." : 'Incorrect API key provided.', 'invalid_request_error', null, 'invalid_api_key');
    }
    if (tooLarge) return sendError(res, 413, 'Request body too large.', 'invalid_request_error', null, null);

    if (method === 'POST' && (route === '/chat/completions' || route === '/embeddings' || route === '/responses')) {
      if (badJson || body === null || typeof body !== 'object' || Array.isArray(body)) {
        return sendError(res, 400, 'We could not parse the JSON body of your request: expected a JSON object.', 'invalid_request_error', null, null);
      }
      const task =
        route === '/chat/completions' ? chat(res, body, book, ids) : route === '/responses' ? responses(res, body, book, ids) : embeddings(res, body, book);
      task.catch((err) => internalError(res, err));
      return;
    }
    if (method === 'GET' && route === '/models') return sendJson(res, 200, book.modelsJson());
    if (method === 'GET' && route.startsWith('/models/')) {
      const id = decodeURIComponent(route.slice('/models/'.length));
      return sendJson(res, 200, JSON.stringify({ id, object: 'model', created: 0, owned_by: OWNER }));
    }
    sendError(res, 404, `Invalid URL (${method} ${path})`, 'invalid_request_error', null, null);
  }

  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const urlHost = host.includes(':') ? `[${host}]` : host;

  let closing: Promise<void> | undefined;
  return {
    url: `http://${urlHost}:${port}/v1`,
    origin: `http://${urlHost}:${port}`,
    port,
    requests,
    setDefault: (b) => book.setDefault(b),
    behave: (model, b) => book.behave(model, b),
    reset() {
      book.reset();
      requests.length = 0; // same array: callers may hold a reference to `requests`
    },
    connections: () => sockets.size,
    close() {
      closing ??= (async () => {
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        // Hung and keep-alive sockets would keep server.close() waiting forever: end them now.
        // Destroying a socket also fires each response's 'close', which cancels pending waits.
        // Wait for every socket's own 'close' too, so connections() is 0 once close() resolves.
        const gone = [...sockets].map((socket) => new Promise((resolve) => socket.once('close', resolve)));
        for (const socket of sockets) socket.destroy();
        await Promise.all([stopped, ...gone]);
      })();
      return closing;
    },
  };
}
