// The simulator's OpenAI wire: POST /chat/completions (JSON and SSE, exactly as OpenAI sends
// them), POST /embeddings, and OpenAI-shaped errors.
// Order of effects for one chat request: latencyMs → hang 'before-headers' → status (error
// body) → normal answer. A streamed answer then waits ttftMs, sends the role chunk and the
// first token chunk, then the remaining tokens (paced by tokensPerSecond and/or dripMs), then
// the finish chunk, the usage chunk (only if `stream_options.include_usage` and not omitUsage)
// and `data: [DONE]`. A JSON answer is sent in one piece after latencyMs + ttftMs + the time
// the tokens would take at tokensPerSecond (dripMs and breakAfterChunks only affect streams).
import type http from 'node:http';
import { type AnswerRequest, type ChoicePlan, fnv1a, mulberry32, planChoices, positiveInt, scanPrompt } from './answer.js';
import type { BehaviourBook, SimBehaviour } from './behaviour.js';
import { breakConnection, Exchange, sendJson, startEventStream } from './http.js';

export const SIM_EMBEDDING_DIMS = 256;

/** The SSE comment OpenRouter sends while it reaches the model (and then as a keep-alive). */
const PROCESSING = ': OPENROUTER PROCESSING\n\n';

// Errors

export function sendError(
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

export function internalError(res: http.ServerResponse, err: unknown): void {
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
/** What a server on http:// answers when it wants https:// (redirects are not followed upstream). */
function sendRedirect(res: http.ServerResponse, status: number): void {
  res.writeHead(status, { location: 'https://sim.invalid/v1/chat/completions', 'content-type': 'text/html' });
  res.end('<html><body>Moved</body></html>');
}

export function sendBehaviourError(res: http.ServerResponse, status: number, b: SimBehaviour, model: string): void {
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

// Chat completions

export async function chat(res: http.ServerResponse, body: any, book: BehaviourBook, ids: { n: number }): Promise<void> {
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

  const stream = body.stream === true;
  if (body.stream_options != null && !stream) {
    // OpenAI's own refusal, word for word: clients send stream_options only with stream.
    return sendError(res, 400, "The 'stream_options' parameter is only allowed when 'stream' is enabled.", 'invalid_request_error', 'stream_options', null);
  }
  if (body.metadata != null && body.store !== true) {
    // OpenAI's refusal too: chat metadata tags stored completions.
    return sendError(res, 400, "The 'metadata' parameter is only allowed when 'store' is enabled.", 'invalid_request_error', 'metadata', null);
  }
  const b = book.resolve(model);
  // Waits and hangs need the cancellable plumbing; the default path stays synchronous.
  const ex = b.latencyMs || b.ttftMs || b.tokensPerSecond || b.hang || b.dripMs || stream ? new Exchange(res) : undefined;

  if (ex && b.latencyMs && !(await ex.sleep(b.latencyMs))) return;
  if (b.hang === 'before-headers') return; // the client or close() ends it
  if (b.status !== undefined && b.status >= 400) return sendBehaviourError(res, b.status, b, model);
  if (b.status !== undefined && b.status >= 300) return sendRedirect(res, b.status);

  const prompt = scanPrompt(messages, body.tools);
  const plans = planChoices(answerRequest(body), b, prompt, n, ids, 'call_sim');
  let completionTokens = 0;
  for (const p of plans) completionTokens += p.pieces.length;
  const reported = b.omitUsage ? undefined : usageJson(prompt.tokens, completionTokens, b.cacheReadTokens ?? 0, b.reasoningTokens ?? 0);
  const usage = reported && b.usageOverride ? JSON.stringify({ ...JSON.parse(reported), ...b.usageOverride }) : reported;
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
      : p.refusal
        ? { role: 'assistant', content: null, refusal: p.pieces.join(''), annotations: [] }
        : { role: 'assistant', content: b.contentParts ? [{ type: 'text', text: p.pieces.join('') }] : p.pieces.join(''), refusal: null, annotations: [] },
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

/** What shapes the answer, from a chat completions body. */
function answerRequest(body: any): AnswerRequest {
  const tools = Array.isArray(body.tools)
    ? body.tools.filter((t: any) => typeof t?.function?.name === 'string').map((t: any) => ({ name: t.function.name, parameters: t.function.parameters }))
    : [];
  const choice = body.tool_choice;
  const format = body.response_format;
  return {
    maxTokens: positiveInt(body.max_completion_tokens) ?? positiveInt(body.max_tokens),
    tools,
    toolChoice: choice === 'none' || choice === 'required' ? choice : choice && typeof choice === 'object' ? { name: choice.function?.name } : 'auto',
    format:
      format?.type === 'json_schema'
        ? { type: 'json_schema', schema: format.json_schema?.schema }
        : format?.type === 'json_object'
          ? { type: 'json_object' }
          : undefined,
    stop: typeof body.stop === 'string' ? [body.stop] : Array.isArray(body.stop) ? body.stop.filter((s: unknown) => typeof s === 'string') : [],
  };
}

/** OpenAI's usage object; cache reads come on top of the prompt's estimate, reasoning on top of the answer's. */
function usageJson(promptTokens: number, answerTokens: number, cachedTokens: number, reasoningTokens: number): string {
  const prompt = promptTokens + cachedTokens;
  const completion = answerTokens + reasoningTokens;
  return (
    `{"prompt_tokens":${prompt},"completion_tokens":${completion},"total_tokens":${prompt + completion},` +
    `"prompt_tokens_details":{"cached_tokens":${cachedTokens},"audio_tokens":0},` +
    `"completion_tokens_details":{"reasoning_tokens":${reasoningTokens},"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}`
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
  startEventStream(res);
  if (b.hang === 'after-headers') return;
  if (b.processingComment) res.write(PROCESSING);
  // The model "thinks" for ttftMs; with processingEveryMs the comment comes again at each
  // interval meanwhile, as OpenRouter keeps a connection alive.
  const every = b.processingComment ? (b.processingEveryMs ?? 0) : 0;
  for (let thinking = b.ttftMs ?? 0; thinking > 0; ) {
    const step = every > 0 ? Math.min(every, thinking) : thinking;
    if (!(await ex.sleep(step))) return;
    thinking -= step;
    if (every > 0 && thinking > 0) res.write(PROCESSING);
  }

  // Everything up to the choice object is the same for every chunk of this response.
  const head = `data: {"id":"${id}","object":"chat.completion.chunk","created":${created},"model":${JSON.stringify(model)},"service_tier":"default","system_fingerprint":"fp_sim","choices":[`;
  const tail = includeUsage ? '],"usage":null}\n\n' : ']}\n\n';
  const chunk = (index: number, delta: string, finish: string) => `${head}{"index":${index},"delta":${delta},"logprobs":null,"finish_reason":${finish}}${tail}`;

  const drip = b.dripMs ?? 0;
  const gap = b.tokensPerSecond ? 1000 / b.tokensPerSecond : 0;
  const breakAfter = b.breakAfterChunks;
  let steps = 0;
  for (const p of plans) steps = Math.max(steps, p.pieces.length);
  let sent = 0; // token chunks written, over all choices
  let erred = false; // the error chunk went out (continueAfterError)
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
      if (b.errorAfterChunks !== undefined && sent >= b.errorAfterChunks && !erred) {
        const error = `data: {"error":{"object":"error","message":${JSON.stringify(b.errorMessage ?? 'generation failed (simulated)')},"type":"InternalServerError","param":null,"code":500}}\n\n`;
        erred = true;
        res.write(error);
        if (!b.continueAfterError) {
          res.end('data: [DONE]\n\n');
          return false;
        }
      }
      const piece = JSON.stringify(p.pieces[step]);
      res.write(
        chunk(
          i,
          p.tool ? `{"tool_calls":[{"index":0,"function":{"arguments":${piece}}}]}` : p.refusal ? `{"refusal":${piece}}` : `{"content":${piece}}`,
          'null',
        ),
      );
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
  if (!b.breakAfterDone && b.hang !== 'after-done') return void res.end('data: [DONE]\n\n');
  res.write('data: [DONE]\n\n');
  if (b.breakAfterDone) breakConnection(res); // 'after-done': the connection stays open
}

// Embeddings

export async function embeddings(res: http.ServerResponse, body: any, book: BehaviourBook): Promise<void> {
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
  if (b.status !== undefined && b.status >= 300) return sendRedirect(res, b.status);

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
