/**
 * Simulated OpenAI-compatible provider: a real loopback HTTP server (node:http, no framework)
 * that speaks the OpenAI wire format. Tollgate's tests, the proxy benchmark and `tollgate demo`
 * use it as the upstream, so it has to be:
 *
 * - fast: the benchmark compares Tollgate against this server directly, so per-request work is
 *   a JSON.parse, one pass over the prompt text (length + FNV-1a hash) and one JSON string.
 *   No tokenizer: prompt tokens are *estimated* as ceil(chars / 4), where chars counts the text
 *   of every message (string content and text parts), tool-call arguments in the history and,
 *   when present, the JSON of `tools`. Embedding inputs use the same estimate (token arrays
 *   count their length). Completion tokens are exact by construction: the answer is built
 *   from `completionTokens` pieces and usage reports the number of pieces sent.
 * - deterministic: the answer text, tool-call arguments and embeddings are derived from a hash
 *   of the request; ids come from a per-server counter.
 * - controllable: `SimBehaviour` adds latency, pacing, error statuses, hangs and broken
 *   streams, per model and for a bounded number of requests (`times`).
 *
 * Endpoints (with or without the `/v1` prefix): POST /chat/completions (JSON and SSE),
 * POST /embeddings, GET /models, GET /models/{id}. Anything else is a 404 in OpenAI's error shape.
 *
 * Behaviour resolution for a request whose body.model is M (first match wins for each layer):
 *   effective = { ...default, ...standing[M], ...(queued[M] head ?? queued-default head) }
 * where `behave(M, b)` without `times` sets standing[M], with `times` appends to M's queue, and
 * `setDefault(b)` without `times` replaces the default, with `times` appends to a queue that
 * applies to every model. A queued entry is consumed once per matching request; after `times`
 * uses it is dropped and the next one (or nothing) applies. GET /models ignores behaviours.
 *
 * Order of effects for one request: latencyMs → hang 'before-headers' → status (error body) →
 * normal answer. A streamed answer then waits ttftMs, sends the role chunk and the first token
 * chunk, then the remaining tokens (paced by tokensPerSecond and/or dripMs), then the finish
 * chunk, the usage chunk (only if `stream_options.include_usage` and not omitUsage) and
 * `data: [DONE]`. A JSON answer is sent in one piece after latencyMs + ttftMs + the time the
 * tokens would take at tokensPerSecond (dripMs and breakAfterChunks only affect streams).
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface SimBehaviour {
  /** Delay before response headers (default 0). */
  latencyMs?: number;
  /** Stream: extra delay after the headers, before the first SSE chunk (default 0). JSON: added to the wait. */
  ttftMs?: number;
  /** Pacing of token chunks; 0/undefined = as fast as possible. */
  tokensPerSecond?: number;
  /**
   * How many tokens (= stream content chunks) each choice has (default 8). A fixed `content` is
   * divided into this many slices when set, else into one piece per word.
   */
  completionTokens?: number;
  /** Answer with this HTTP error status (>= 400) and an OpenAI-shaped error body. */
  status?: number;
  /** With status 429 (or any status): send a Retry-After header with this many seconds. */
  retryAfterSeconds?: number;
  /**
   * Never finish (until the client goes away or the server closes). 'after-first-chunk' means
   * after the role chunk and the first token chunk (JSON: after the first bytes of the body).
   */
  hang?: 'before-headers' | 'after-headers' | 'after-first-chunk';
  /** Stream: close the connection after N token chunks, without the terminating chunk (mid-stream break). */
  breakAfterChunks?: number;
  /** Stream: wait this long between consecutive writes (slow drip, for idle timeouts). */
  dripMs?: number;
  /** Never send usage (JSON: no usage field; stream: no usage chunk even if asked). */
  omitUsage?: boolean;
  /** Apply this behaviour to the next N matching requests only, then fall back. */
  times?: number;
  /** Fixed answer text (else a deterministic text derived from the prompt). Used as-is in JSON mode. */
  content?: string;
}

export interface RecordedRequest {
  method: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
  /** Parsed JSON body; the raw text when it was not JSON; undefined when empty. */
  body: any;
  /** Date.now() when the request body had been read. */
  at: number;
}

export interface SimulatedProvider {
  /** Base URL including /v1, e.g. http://127.0.0.1:PORT/v1 */
  readonly url: string;
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
  /** When set, every request must carry `Authorization: Bearer <requireApiKey>`, else 401. */
  requireApiKey?: string;
}

/** Models listed by GET /models, besides any model named in behave(). Any model name is accepted. */
export const SIMULATED_MODELS: readonly string[] = ['sim-chat', 'sim-chat-mini', 'sim-embed'];
export const SIM_EMBEDDING_DIMS = 256;
const DEFAULT_COMPLETION_TOKENS = 8;
const MAX_BODY_BYTES = 32 * 1024 * 1024;
const OWNER = 'tollgate-sim';

// ---------------------------------------------------------------------------------------------
// Entry point

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

    let body: any = undefined;
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
      requests.push({ method: req.method ?? 'GET', path, headers: req.headers, body, at: Date.now() });
      // shift() on a 10k array is a few microseconds; keeps the ring exact and oldest-first.
      if (requests.length > maxRecorded) requests.shift();
    }

    if (expectedAuth !== undefined && req.headers.authorization !== expectedAuth) {
      const missing = !req.headers.authorization;
      // Never echo the key back (same rule as the gateway).
      return sendError(res, 401, missing ? "You didn't provide an API key." : 'Incorrect API key provided.', 'invalid_request_error', null, 'invalid_api_key');
    }
    if (tooLarge) return sendError(res, 413, 'Request body too large.', 'invalid_request_error', null, null);

    const method = req.method;
    if (method === 'POST' && (route === '/chat/completions' || route === '/embeddings')) {
      if (badJson || body === null || typeof body !== 'object' || Array.isArray(body)) {
        return sendError(res, 400, 'We could not parse the JSON body of your request: expected a JSON object.', 'invalid_request_error', null, null);
      }
      const task = route === '/chat/completions' ? chat(res, body, book, ids) : embeddings(res, body, book);
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

// ---------------------------------------------------------------------------------------------
// Behaviours

interface Queued {
  behaviour: SimBehaviour;
  remaining: number;
}

class BehaviourBook {
  private base: SimBehaviour;
  private readonly globalQueue: Queued[] = [];
  private readonly standing = new Map<string, SimBehaviour>();
  private readonly queues = new Map<string, Queued[]>();
  private models: string | undefined;

  constructor(private readonly initial: SimBehaviour) {
    this.base = { ...initial, times: undefined };
  }

  setDefault(b: SimBehaviour): void {
    if (b.times === undefined) this.base = { ...b };
    else if (b.times > 0) this.globalQueue.push({ behaviour: { ...b }, remaining: b.times });
  }

  behave(model: string, b: SimBehaviour): void {
    if (b.times === undefined) this.standing.set(model, { ...b });
    else if (b.times > 0) {
      let queue = this.queues.get(model);
      if (!queue) this.queues.set(model, (queue = []));
      queue.push({ behaviour: { ...b }, remaining: b.times });
    }
    this.models = undefined; // the model list includes behaved models
  }

  reset(): void {
    this.base = { ...this.initial, times: undefined };
    this.globalQueue.length = 0;
    this.standing.clear();
    this.queues.clear();
    this.models = undefined;
  }

  /** The behaviour for one request; consumes one use of a queued entry. */
  resolve(model: string): SimBehaviour {
    // Hot path for benchmarks: nothing configured besides the default.
    if (this.queues.size === 0 && this.standing.size === 0 && this.globalQueue.length === 0) return this.base;
    const queue = this.queues.get(model);
    let queued: SimBehaviour | undefined;
    if (queue) {
      queued = take(queue);
      if (queue.length === 0) this.queues.delete(model);
    }
    queued ??= take(this.globalQueue);
    const standing = this.standing.get(model);
    if (!queued && !standing) return this.base;
    return { ...this.base, ...standing, ...queued };
  }

  modelsJson(): string {
    if (this.models === undefined) {
      const names = new Set<string>(SIMULATED_MODELS);
      for (const m of this.standing.keys()) names.add(m);
      for (const m of this.queues.keys()) names.add(m);
      this.models = JSON.stringify({
        object: 'list',
        data: [...names].map((id) => ({ id, object: 'model', created: 0, owned_by: OWNER })),
      });
    }
    return this.models;
  }
}

function take(queue: Queued[]): SimBehaviour | undefined {
  const head = queue[0];
  if (!head) return undefined;
  if (--head.remaining <= 0) queue.shift();
  return head.behaviour;
}

// ---------------------------------------------------------------------------------------------
// Per-request plumbing: cancellable waits tied to the response's lifetime

/**
 * Waits that end early when the client goes away or close() destroys the socket, so that no
 * timer outlives its connection. Only one wait is pending at a time per response.
 */
class Exchange {
  gone = false;
  private wake: (() => void) | undefined;
  private drainWake: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(readonly res: http.ServerResponse) {
    res.on('close', () => {
      this.gone = true;
      this.release();
      this.releaseDrain();
    });
    // Separate from sleeps: a 'drain' must not cut a pacing wait short.
    res.on('drain', () => this.releaseDrain());
  }

  /** Resolves true after ms, or false as soon as the connection is gone. */
  sleep(ms: number): Promise<boolean> {
    if (this.gone) return Promise.resolve(false);
    if (!(ms > 0)) return Promise.resolve(true);
    return new Promise((resolve) => {
      this.wake = () => resolve(!this.gone);
      this.timer = setTimeout(() => this.release(), ms);
    });
  }

  /** Resolves when the response can take more data again (false if it is gone). */
  drained(): Promise<boolean> {
    if (this.gone) return Promise.resolve(false);
    return new Promise((resolve) => {
      this.drainWake = () => resolve(!this.gone);
    });
  }

  private release(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  private releaseDrain(): void {
    const wake = this.drainWake;
    this.drainWake = undefined;
    wake?.();
  }
}

/**
 * Mid-stream break: end the TCP connection without the terminating zero-length chunk, so the
 * client sees a truncated chunked body. end() (not destroy()) first, so that the chunks already
 * written (the http layer corks the socket until the next tick) still reach the client.
 */
function breakConnection(res: http.ServerResponse): void {
  const socket = res.socket;
  if (!socket) return;
  socket.end(() => socket.destroy());
}

// ---------------------------------------------------------------------------------------------
// Errors

function sendJson(res: http.ServerResponse, status: number, body: string, extra?: Record<string, string>): void {
  const headers: Record<string, string | number> = {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
  };
  if (extra) Object.assign(headers, extra);
  res.writeHead(status, headers);
  res.end(body);
}

function sendError(
  res: http.ServerResponse,
  status: number,
  message: string,
  type: string,
  param: string | null,
  code: string | null,
  extra?: Record<string, string>,
): void {
  sendJson(res, status, JSON.stringify({ error: { message, type, param, code } }), extra);
}

function internalError(res: http.ServerResponse, err: unknown): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendError(res, 500, `Simulator failure: ${err instanceof Error ? err.message : String(err)}`, 'server_error', null, null);
}

/**
 * An injected error status, in the shape OpenAI uses for it. 429 mirrors OpenAI's per-minute
 * request limit (type 'requests', code 'rate_limit_exceeded'); 5xx are 'server_error'.
 */
function sendBehaviourError(res: http.ServerResponse, status: number, b: SimBehaviour, model: string): void {
  const extra = b.retryAfterSeconds !== undefined ? { 'retry-after': String(b.retryAfterSeconds) } : undefined;
  let message: string;
  let type: string;
  let code: string | null = null;
  switch (status) {
    case 400:
      [message, type] = ['Simulated bad request.', 'invalid_request_error'];
      break;
    case 401:
      [message, type, code] = ['Incorrect API key provided.', 'invalid_request_error', 'invalid_api_key'];
      break;
    case 403:
      [message, type] = ['Simulated permission error.', 'permission_error'];
      break;
    case 404:
      [message, type, code] = [`The model \`${model}\` does not exist or you do not have access to it.`, 'invalid_request_error', 'model_not_found'];
      break;
    case 429:
      [message, type, code] = [`Rate limit reached for ${model} (simulated). Please try again later.`, 'requests', 'rate_limit_exceeded'];
      break;
    case 503:
      [message, type] = ['The engine is currently overloaded, please try again later.', 'server_error'];
      break;
    default:
      if (status >= 500) [message, type] = ['The server had an error while processing your request. Sorry about that!', 'server_error'];
      else [message, type] = [`Simulated error ${status}.`, 'invalid_request_error'];
  }
  sendError(res, status, message, type, null, code, extra);
}

// ---------------------------------------------------------------------------------------------
// Chat completions

interface ChoicePlan {
  /** Text (or JSON text) answer, or one tool call whose arguments are streamed as pieces. */
  tool: { id: string; name: string } | undefined;
  pieces: string[];
  finish: 'stop' | 'length' | 'tool_calls';
}

async function chat(res: http.ServerResponse, body: any, book: BehaviourBook, ids: { n: number }): Promise<void> {
  const model = body.model;
  if (typeof model !== 'string' || model.length === 0) {
    return sendError(res, 400, 'you must provide a model parameter', 'invalid_request_error', 'model', null);
  }
  const messages = body.messages;
  if (!Array.isArray(messages) || messages.length === 0) {
    return sendError(res, 400, "Missing required parameter: 'messages'.", 'invalid_request_error', 'messages', 'missing_required_parameter');
  }
  const n = body.n ?? 1;
  if (!Number.isInteger(n) || n < 1 || n > 128) {
    return sendError(res, 400, 'n must be an integer between 1 and 128.', 'invalid_request_error', 'n', 'invalid_value');
  }

  const b = book.resolve(model);
  const stream = body.stream === true;
  // Waits and hangs need the cancellable plumbing; the default path stays synchronous.
  const ex = b.latencyMs || b.ttftMs || b.tokensPerSecond || b.hang || b.dripMs || stream ? new Exchange(res) : undefined;

  if (ex && b.latencyMs && !(await ex.sleep(b.latencyMs))) return;
  if (b.hang === 'before-headers') return; // the client or close() ends it
  if (b.status !== undefined && b.status >= 400) return sendBehaviourError(res, b.status, b, model);

  const prompt = scanPrompt(messages, body.tools);
  const plans = planChoices(body, b, prompt, n, ids);
  let completionTokens = 0;
  for (const p of plans) completionTokens += p.pieces.length;
  const usage = b.omitUsage ? undefined : usageJson(prompt.tokens, completionTokens);
  const id = `chatcmpl-sim${(++ids.n).toString(36)}`;
  const created = Math.floor(Date.now() / 1000);

  if (stream) return streamChat(ex!, b, body, plans, id, created, model, usage);

  if (ex) {
    // A non-streamed answer arrives when the whole generation would have finished.
    let longest = 0;
    for (const p of plans) longest = Math.max(longest, p.pieces.length);
    const generation = b.tokensPerSecond ? (longest * 1000) / b.tokensPerSecond : 0;
    if (!(await ex.sleep((b.ttftMs ?? 0) + generation))) return;
  }

  const choices = plans.map((p, index) => ({
    index,
    message: p.tool
      ? {
          role: 'assistant',
          content: null,
          tool_calls: [{ id: p.tool.id, type: 'function', function: { name: p.tool.name, arguments: p.pieces.join('') } }],
          refusal: null,
          annotations: [],
        }
      : { role: 'assistant', content: p.pieces.join(''), refusal: null, annotations: [] },
    logprobs: null,
    finish_reason: p.finish,
  }));
  const json =
    `{"id":"${id}","object":"chat.completion","created":${created},"model":${JSON.stringify(model)},` +
    `"choices":${JSON.stringify(choices)}${usage ? `,"usage":${usage}` : ''},"service_tier":"default","system_fingerprint":"fp_sim"}`;

  if (b.hang === 'after-headers') {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) });
    res.flushHeaders();
    return;
  }
  if (b.hang === 'after-first-chunk') {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) });
    res.write(json.slice(0, Math.ceil(json.length / 2)));
    return;
  }
  sendJson(res, 200, json);
}

function usageJson(promptTokens: number, completionTokens: number): string {
  return (
    `{"prompt_tokens":${promptTokens},"completion_tokens":${completionTokens},"total_tokens":${promptTokens + completionTokens},` +
    `"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},` +
    `"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}`
  );
}

/**
 * SSE exactly as OpenAI sends it: `data: <chunk>\n\n` per event, each event its own res.write.
 * Steps: [role + first token] → [token]… → [finish (+ usage) + DONE]. dripMs is waited before
 * every step after the first; tokensPerSecond schedules token steps on an absolute timeline so
 * timer jitter does not accumulate.
 */
async function streamChat(
  ex: Exchange,
  b: SimBehaviour,
  body: any,
  plans: ChoicePlan[],
  id: string,
  created: number,
  model: string,
  usage: string | undefined,
): Promise<void> {
  const res = ex.res;
  const includeUsage = body.stream_options?.include_usage === true;
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' });
  res.flushHeaders();
  if (b.hang === 'after-headers') return;
  if (b.ttftMs && !(await ex.sleep(b.ttftMs))) return;

  // Everything up to the choice object is the same for every chunk of this response.
  const head = `data: {"id":"${id}","object":"chat.completion.chunk","created":${created},"model":${JSON.stringify(model)},"service_tier":"default","system_fingerprint":"fp_sim","choices":[`;
  const tail = includeUsage ? '],"usage":null}\n\n' : ']}\n\n';
  const chunk = (index: number, delta: string, finish: string) =>
    `${head}{"index":${index},"delta":${delta},"logprobs":null,"finish_reason":${finish}}${tail}`;

  const drip = b.dripMs ?? 0;
  const gap = b.tokensPerSecond ? 1000 / b.tokensPerSecond : 0;
  const breakAfter = b.breakAfterChunks;
  let steps = 0;
  for (const p of plans) steps = Math.max(steps, p.pieces.length);
  let sent = 0; // token chunks written, over all choices
  let due = 0; // absolute time the next token step is due (tokensPerSecond pacing)

  // Returns false when the stream must stop (client gone, break or hang).
  const writeTokens = (step: number): boolean => {
    for (let i = 0; i < plans.length; i++) {
      const p = plans[i];
      if (step >= p.pieces.length) continue;
      if (breakAfter !== undefined && sent >= breakAfter) {
        breakConnection(res);
        return false;
      }
      const piece = JSON.stringify(p.pieces[step]);
      res.write(chunk(i, p.tool ? `{"tool_calls":[{"index":0,"function":{"arguments":${piece}}}]}` : `{"content":${piece}}`, 'null'));
      sent++;
    }
    return true;
  };

  // Step 0: one role chunk per choice, then the first token.
  for (let i = 0; i < plans.length; i++) {
    const tool = plans[i].tool;
    const delta = tool
      ? `{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"${tool.id}","type":"function","function":{"name":${JSON.stringify(tool.name)},"arguments":""}}],"refusal":null}`
      : '{"role":"assistant","content":"","refusal":null}';
    res.write(chunk(i, delta, 'null'));
  }
  if (steps > 0 && !writeTokens(0)) return;
  if (b.hang === 'after-first-chunk') return;
  due = performance.now();

  for (let step = 1; step < steps; step++) {
    if (gap > 0 || drip > 0) {
      due += gap;
      const wait = Math.max(drip, due - performance.now());
      if (!(await ex.sleep(wait))) return;
      if (drip > gap) due = performance.now(); // a drip longer than the pace resets the timeline
    } else if (res.writableNeedDrain && !(await ex.drained())) return;
    if (ex.gone || !writeTokens(step)) return;
  }
  if (breakAfter !== undefined && sent >= breakAfter) return breakConnection(res);

  if (drip > 0 && !(await ex.sleep(drip))) return;
  for (let i = 0; i < plans.length; i++) res.write(chunk(i, '{}', `"${plans[i].finish}"`));
  if (includeUsage && usage) res.write(`${head}],"usage":${usage}}\n\n`);
  res.end('data: [DONE]\n\n');
}

// ---------------------------------------------------------------------------------------------
// Building the answer

interface PromptScan {
  tokens: number;
  hash: number;
  /** Text of the last message when it is a user message (tool selection looks at it). */
  lastUserText: string | undefined;
}

/** One pass over the conversation: character count (→ estimated tokens) and FNV-1a hash. */
function scanPrompt(messages: any[], tools: unknown): PromptScan {
  let chars = 0;
  let hash = 0x811c9dc5;
  let lastUserText: string | undefined;
  const feed = (s: string) => {
    chars += s.length;
    for (let i = 0; i < s.length; i++) hash = Math.imul(hash ^ s.charCodeAt(i), 0x01000193);
  };
  for (let m = 0; m < messages.length; m++) {
    const msg = messages[m];
    if (msg === null || typeof msg !== 'object') continue;
    const c = msg.content;
    let text = '';
    if (typeof c === 'string') text = c;
    else if (Array.isArray(c)) for (const part of c) if (part && typeof part.text === 'string') text += part.text;
    feed(text);
    if (Array.isArray(msg.tool_calls)) {
      for (const call of msg.tool_calls) if (typeof call?.function?.arguments === 'string') feed(call.function.arguments);
    }
    if (m === messages.length - 1 && msg.role === 'user') lastUserText = text;
  }
  if (Array.isArray(tools) && tools.length > 0) chars += JSON.stringify(tools).length;
  return { tokens: Math.max(1, Math.ceil(chars / 4)), hash: hash >>> 0, lastUserText };
}

function planChoices(body: any, b: SimBehaviour, prompt: PromptScan, n: number, ids: { n: number }): ChoicePlan[] {
  const count = b.completionTokens ?? DEFAULT_COMPLETION_TOKENS;
  const maxTokens = positiveInt(body.max_completion_tokens) ?? positiveInt(body.max_tokens);
  const tool = pickTool(body.tools, body.tool_choice, prompt.lastUserText);
  const format = body.response_format?.type;
  const plans: ChoicePlan[] = [];
  for (let i = 0; i < n; i++) {
    // Each choice gets its own stream of words, all derived from the prompt.
    const rng = mulberry32(prompt.hash ^ Math.imul(i + 1, 0x9e3779b9));
    let pieces: string[];
    let toolCall: ChoicePlan['tool'];
    if (tool) {
      const args = JSON.stringify(sampleSchema(tool.function?.parameters ?? { type: 'object', properties: {} }, rng));
      pieces = splitEven(args, count);
      toolCall = { id: `call_sim${(++ids.n).toString(36)}`, name: String(tool.function?.name) };
    } else if (b.content !== undefined) {
      pieces = b.completionTokens !== undefined ? splitEven(b.content, count) : splitWords(b.content);
    } else if (format === 'json_schema') {
      const schema = body.response_format.json_schema?.schema ?? { type: 'object', properties: {} };
      pieces = splitEven(JSON.stringify(sampleSchema(schema, rng, schema)), count);
    } else if (format === 'json_object') {
      // {"answer":"w0 w1 … wN-1"} in exactly `count` pieces, so usage still matches the chunks.
      pieces = count === 0 ? ['{}'] : wordPieces(count, rng);
      if (count > 0) {
        pieces[0] = `{"answer":"${pieces[0]}`;
        pieces[count - 1] += '"}';
      }
    } else {
      pieces = wordPieces(count, rng);
    }
    let finish: ChoicePlan['finish'] = toolCall ? 'tool_calls' : 'stop';
    if (maxTokens !== undefined && pieces.length > maxTokens) {
      pieces = pieces.slice(0, maxTokens); // like OpenAI: cut, even mid-JSON
      finish = 'length';
    }
    plans.push({ tool: toolCall, pieces, finish });
  }
  return plans;
}

function positiveInt(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isInteger(v) && v > 0 ? v : undefined;
}

/**
 * When to call a tool (kept simple on purpose):
 * - tool_choice 'none' → never;
 * - {type:'function', function:{name}} → that function;
 * - 'required' → the function named in the last user message, else the first tool;
 * - 'auto' / absent → only when the last message is a user message that mentions a function's
 *   name (case-insensitive), e.g. "please call get_weather for Paris". A conversation that ends
 *   with a tool result is therefore answered with text, so agent loops terminate.
 */
function pickTool(tools: unknown, choice: any, lastUserText: string | undefined): any {
  if (!Array.isArray(tools) || tools.length === 0 || choice === 'none') return undefined;
  const fns = tools.filter((t) => t && typeof t.function?.name === 'string');
  if (fns.length === 0) return undefined;
  if (choice && typeof choice === 'object') {
    const name = choice.function?.name;
    return fns.find((t) => t.function.name === name);
  }
  const lower = lastUserText?.toLowerCase();
  const mentioned = lower ? fns.find((t) => lower.includes(String(t.function.name).toLowerCase())) : undefined;
  if (choice === 'required') return mentioned ?? fns[0];
  return mentioned;
}

const WORDS = [
  'the', 'gateway', 'routes', 'every', 'request', 'to', 'a', 'healthy', 'provider', 'and', 'signs', 'its',
  'receipt', 'while', 'cache', 'answers', 'repeat', 'questions', 'quickly', 'with', 'low', 'latency', 'cost',
  'model', 'token', 'stream', 'budget', 'team', 'feature', 'task', 'result', 'simulated', 'answer', 'is',
  'ready', 'here', 'now', 'clear', 'short', 'useful', 'data', 'shows', 'that', 'this', 'works', 'well', 'for',
  'you', 'today', 'because', 'we', 'measure', 'each', 'step', 'carefully', 'then', 'report', 'back', 'fast',
  'small', 'steady', 'plan', 'good', 'done',
];

/** `count` word pieces: "w0", " w1", " w2", … (one piece = one token = one SSE chunk). */
function wordPieces(count: number, rng: () => number): string[] {
  const out = new Array<string>(count);
  for (let i = 0; i < count; i++) {
    const w = WORDS[(rng() * WORDS.length) | 0];
    out[i] = i === 0 ? w : ` ${w}`;
  }
  return out;
}

/** Fixed content split at word starts ("Hello", " world", "!\n"), concatenating back exactly. */
let lastSplit: { text: string; pieces: string[] } | undefined;
function splitWords(text: string): string[] {
  if (lastSplit?.text === text) return lastSplit.pieces.slice();
  const pieces: string[] = text.match(/\s*\S+/g) ?? [];
  const covered = pieces.reduce((len, p) => len + p.length, 0);
  if (covered < text.length) {
    const rest = text.slice(covered); // trailing whitespace
    if (pieces.length > 0) pieces[pieces.length - 1] += rest;
    else pieces.push(rest);
  }
  lastSplit = { text, pieces };
  return pieces.slice();
}

/** `count` slices of nearly equal length (fewer when the text is shorter), split on code points. */
function splitEven(text: string, count: number): string[] {
  const cps = Array.from(text);
  const k = Math.min(count, cps.length);
  if (k <= 0) return text.length > 0 ? [text] : [];
  const out: string[] = [];
  for (let i = 0; i < k; i++) {
    out.push(cps.slice(Math.floor((i * cps.length) / k), Math.floor(((i + 1) * cps.length) / k)).join(''));
  }
  return out;
}

/**
 * A deterministic value that validates against common JSON Schema (the subset used by tool
 * parameters and structured outputs): type (incl. arrays of types), enum, const, default,
 * properties (all of them, so `strict` schemas with every property required are satisfied),
 * items/minItems, anyOf/oneOf (first non-null option), allOf (merged objects), local $ref,
 * string formats, numeric bounds. Recursion is cut at depth 6 (optional properties from depth 3).
 */
function sampleSchema(schema: any, rng: () => number, root: any = schema, depth = 0): unknown {
  if (!schema || typeof schema !== 'object') return null;
  if (typeof schema.$ref === 'string') {
    const target = resolveRef(root, schema.$ref);
    return depth > 6 ? null : sampleSchema(target, rng, root, depth + 1);
  }
  if ('const' in schema) return schema.const;
  if (Array.isArray(schema.enum) && schema.enum.length > 0) return schema.enum[0];
  if ('default' in schema) return schema.default;
  const options = schema.anyOf ?? schema.oneOf;
  if (Array.isArray(options) && options.length > 0) {
    const pick = options.find((o: any) => o?.type !== 'null') ?? options[0];
    return sampleSchema(pick, rng, root, depth + 1);
  }
  if (Array.isArray(schema.allOf)) {
    const merged: any = { type: 'object', properties: {}, required: [] };
    for (const part of schema.allOf) {
      const p = typeof part?.$ref === 'string' ? resolveRef(root, part.$ref) : part;
      Object.assign(merged.properties, p?.properties);
      if (Array.isArray(p?.required)) merged.required.push(...p.required);
    }
    return sampleSchema(merged, rng, root, depth + 1);
  }
  let type = schema.type;
  if (Array.isArray(type)) type = type.find((t: string) => t !== 'null') ?? 'null';
  if (type === undefined) type = schema.properties ? 'object' : schema.items ? 'array' : 'string';
  switch (type) {
    case 'object': {
      const out: Record<string, unknown> = {};
      const props = schema.properties ?? {};
      const required: string[] = Array.isArray(schema.required) ? schema.required : Object.keys(props);
      for (const key of Object.keys(props)) {
        if (depth > 6 || (depth >= 3 && !required.includes(key))) continue;
        out[key] = sampleSchema(props[key], rng, root, depth + 1);
      }
      return out;
    }
    case 'array': {
      const len = Math.min(3, Math.max(1, schema.minItems ?? 1));
      if (depth > 6 || (schema.maxItems !== undefined && schema.maxItems < len)) return [];
      return Array.from({ length: len }, () => sampleSchema(schema.items ?? { type: 'string' }, rng, root, depth + 1));
    }
    case 'integer':
    case 'number': {
      let v = schema.minimum ?? (schema.exclusiveMinimum !== undefined ? schema.exclusiveMinimum + 1 : 1);
      if (schema.maximum !== undefined && v > schema.maximum) v = schema.maximum;
      return type === 'integer' ? Math.ceil(v) : v;
    }
    case 'boolean':
      return true;
    case 'null':
      return null;
    default: {
      switch (schema.format) {
        case 'date-time':
          return '2025-01-01T00:00:00Z';
        case 'date':
          return '2025-01-01';
        case 'email':
          return 'user@example.com';
        case 'uri':
        case 'url':
          return 'https://example.com/';
        case 'uuid':
          return '00000000-0000-4000-8000-000000000000';
      }
      let s = WORDS[(rng() * WORDS.length) | 0];
      if (typeof schema.minLength === 'number') while (s.length < schema.minLength) s += 'x';
      if (typeof schema.maxLength === 'number') s = s.slice(0, schema.maxLength);
      return s;
    }
  }
}

function resolveRef(root: any, ref: string): any {
  if (!ref.startsWith('#')) return undefined;
  let node = root;
  for (const raw of ref.slice(1).split('/')) {
    if (raw === '') continue;
    node = node?.[raw.replace(/~1/g, '/').replace(/~0/g, '~')];
  }
  return node;
}

/** Small, fast, seedable PRNG (mulberry32); determinism is all we need from it. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

// ---------------------------------------------------------------------------------------------
// Embeddings

async function embeddings(res: http.ServerResponse, body: any, book: BehaviourBook): Promise<void> {
  const model = body.model;
  if (typeof model !== 'string' || model.length === 0) {
    return sendError(res, 400, 'you must provide a model parameter', 'invalid_request_error', 'model', null);
  }
  const inputs = normaliseInputs(body.input);
  if (!inputs) {
    return sendError(res, 400, "'input' must be a string, an array of strings, or token arrays.", 'invalid_request_error', 'input', 'invalid_value');
  }
  const dims = body.dimensions ?? SIM_EMBEDDING_DIMS;
  if (!Number.isInteger(dims) || dims < 1 || dims > 4096) {
    return sendError(res, 400, 'dimensions must be an integer between 1 and 4096.', 'invalid_request_error', 'dimensions', 'invalid_value');
  }

  const b = book.resolve(model);
  if (b.latencyMs || b.hang) {
    const ex = new Exchange(res);
    if (!(await ex.sleep(b.latencyMs ?? 0))) return;
    if (b.hang) {
      // Embeddings have no chunks: both later hang points stop right after the headers.
      if (b.hang !== 'before-headers') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.flushHeaders();
      }
      return;
    }
  }
  if (b.status !== undefined && b.status >= 400) return sendBehaviourError(res, b.status, b, model);

  const base64 = body.encoding_format === 'base64';
  let tokens = 0;
  const data = inputs.map((input, index) => {
    tokens += typeof input === 'string' ? Math.ceil(input.length / 4) : input.length;
    const vector = embed(input, dims);
    return { object: 'embedding', index, embedding: base64 ? toBase64(vector) : Array.from(vector) };
  });
  const usage = b.omitUsage ? undefined : { prompt_tokens: tokens, total_tokens: tokens };
  sendJson(res, 200, JSON.stringify({ object: 'list', data, model, usage }));
}

function normaliseInputs(input: unknown): Array<string | number[]> | undefined {
  if (typeof input === 'string') return [input];
  if (!Array.isArray(input) || input.length === 0) return undefined;
  if (input.every((x) => typeof x === 'number')) return [input as number[]]; // one token array
  if (input.every((x) => typeof x === 'string' || (Array.isArray(x) && x.every((t) => typeof t === 'number')))) {
    return input as Array<string | number[]>;
  }
  return undefined;
}

/**
 * Deterministic unit vector with useful geometry: each word (lower-cased letters/digits run, or
 * each token id) adds 16 pseudo-random ±1 features seeded by its hash, so cosine similarity
 * tracks word overlap. Near-duplicate prompts are therefore close, unrelated ones far apart,
 * which is what semantic-cache tests need. Text without words gets a dense vector seeded by the
 * whole text. Values are float32-rounded so float and base64 answers are identical.
 */
function embed(input: string | number[], dims: number): Float32Array {
  const acc = new Float64Array(dims);
  let features = 0;
  const addFeature = (seed: number) => {
    const rng = mulberry32(seed);
    for (let k = 0; k < 16; k++) acc[(rng() * dims) | 0] += rng() < 0.5 ? -1 : 1;
    features++;
  };
  if (typeof input === 'string') {
    for (const m of input.toLowerCase().matchAll(/[\p{L}\p{N}]+/gu)) addFeature(fnv1a(m[0]));
  } else {
    for (const t of input) addFeature(Math.imul(t | 0, 0x9e3779b1) ^ 0x5bd1e995);
  }
  let norm = 0;
  for (let i = 0; i < dims; i++) norm += acc[i] * acc[i];
  if (features === 0 || norm === 0) {
    const rng = mulberry32(fnv1a(typeof input === 'string' ? input : input.join(',')));
    for (let i = 0; i < dims; i++) acc[i] = rng() * 2 - 1;
    norm = 0;
    for (let i = 0; i < dims; i++) norm += acc[i] * acc[i];
  }
  const scale = 1 / Math.sqrt(norm || 1);
  const out = new Float32Array(dims);
  for (let i = 0; i < dims; i++) out[i] = acc[i] * scale;
  return out;
}

/** base64 of little-endian float32, the format OpenAI returns for encoding_format 'base64'. */
function toBase64(vector: Float32Array): string {
  const buf = Buffer.allocUnsafe(vector.length * 4);
  for (let i = 0; i < vector.length; i++) buf.writeFloatLE(vector[i], i * 4);
  return buf.toString('base64');
}
