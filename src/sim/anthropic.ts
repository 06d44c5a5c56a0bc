// The simulator's Anthropic wire: POST /v1/messages as the Messages API answers it, JSON and
// SSE (message_start, ping, content_block_start / _delta / _stop, message_delta,
// message_stop), with Anthropic's error bodies. Same behaviour controls as the OpenAI wire
// (openai.ts), in the same order: latencyMs → hang 'before-headers' → status → answer. One
// answer per request (the Messages API has no `n`): a text block, or one tool_use block when
// a tool is called. Usage: input_tokens is the prompt's estimate; cacheReadTokens and
// cacheWriteTokens are reported as cache_read_input_tokens and cache_creation_input_tokens.
import type http from 'node:http';
import { type AnswerRequest, type ChoicePlan, planChoices, positiveInt, scanPrompt } from './answer.js';
import type { BehaviourBook, SimBehaviour } from './behaviour.js';
import { Exchange, sendJson, sendPaced, startEventStream } from './http.js';

/** Anthropic's error types by status (https://docs.anthropic.com/en/api/errors). */
const ERROR_TYPES: Record<number, string> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  402: 'billing_error',
  403: 'permission_error',
  404: 'not_found_error',
  413: 'request_too_large',
  429: 'rate_limit_error',
  500: 'api_error',
  504: 'timeout_error',
  529: 'overloaded_error',
};

export function sendAnthropicError(res: http.ServerResponse, status: number, message: string, extra?: Record<string, string>): void {
  const type = ERROR_TYPES[status] ?? (status >= 500 ? 'api_error' : 'invalid_request_error');
  sendJson(res, status, JSON.stringify({ type: 'error', error: { type, message } }), extra);
}

function sendBehaviourError(res: http.ServerResponse, status: number, b: SimBehaviour, model: string): void {
  const extra = b.retryAfterSeconds !== undefined ? { 'retry-after': String(b.retryAfterSeconds) } : undefined;
  const messages: Record<number, string> = {
    401: 'invalid x-api-key',
    404: `model: ${model}`,
    429: `This request would exceed the rate limit for ${model} (simulated).`,
    529: 'Overloaded',
  };
  sendAnthropicError(res, status, messages[status] ?? (status >= 500 ? 'Internal server error' : `Simulated error ${status}.`), extra);
}

export async function messages(res: http.ServerResponse, body: any, book: BehaviourBook, ids: { n: number }): Promise<void> {
  const model = body.model;
  if (typeof model !== 'string' || model.length === 0) return sendAnthropicError(res, 400, 'model: Field required');
  const maxTokens = positiveInt(body.max_tokens);
  if (maxTokens === undefined) return sendAnthropicError(res, 400, 'max_tokens: Field required');
  if (!Array.isArray(body.messages) || body.messages.length === 0) return sendAnthropicError(res, 400, 'messages: at least one message is required');

  const b = book.resolve(model);
  const stream = body.stream === true;
  const ex = b.latencyMs || b.ttftMs || b.tokensPerSecond || b.hang || b.dripMs || stream ? new Exchange(res) : undefined;
  if (ex && b.latencyMs && !(await ex.sleep(b.latencyMs))) return;
  if (b.hang === 'before-headers') return;
  if (b.status !== undefined && b.status >= 400) return sendBehaviourError(res, b.status, b, model);

  const prompt = scanPrompt(body.messages, body.tools, body.system);
  const plan = planChoices(answerRequest(body, maxTokens), b, prompt, 1, ids, 'toolu_sim')[0];
  const id = `msg_sim${(++ids.n).toString(36)}`;
  const usage = b.omitUsage
    ? null
    : {
        input_tokens: prompt.tokens,
        cache_creation_input_tokens: b.cacheWriteTokens ?? 0,
        cache_read_input_tokens: b.cacheReadTokens ?? 0,
        output_tokens: plan.pieces.length,
      };

  if (stream) return streamMessage(ex!, b, plan, id, model, usage);

  if (ex) {
    const generation = b.tokensPerSecond ? (plan.pieces.length * 1000) / b.tokensPerSecond : 0;
    if (!(await ex.sleep((b.ttftMs ?? 0) + generation))) return;
  }
  const text = plan.pieces.join('');
  const content = plan.tool ? [{ type: 'tool_use', id: plan.tool.id, name: plan.tool.name, input: parseObject(text) }] : [{ type: 'text', text }];
  const json = JSON.stringify({
    id,
    type: 'message',
    role: 'assistant',
    model,
    content,
    stop_reason: stopReason(plan),
    stop_sequence: plan.stopSequence ?? null,
    ...(usage ? { usage } : {}),
  });
  if (b.hang === 'after-headers' || b.hang === 'after-first-chunk') {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) });
    if (b.hang === 'after-first-chunk') res.write(json.slice(0, Math.ceil(json.length / 2)));
    else res.flushHeaders();
    return;
  }
  sendJson(res, 200, json);
}

/** What shapes the answer, from a Messages body: custom tools only (server tools never run here). */
function answerRequest(body: any, maxTokens: number): AnswerRequest {
  const tools = Array.isArray(body.tools)
    ? body.tools
        .filter((t: any) => typeof t?.name === 'string' && (t.type === undefined || t.type === 'custom'))
        .map((t: any) => ({ name: t.name, parameters: t.input_schema }))
    : [];
  const choice = body.tool_choice?.type;
  const format = body.output_config?.format;
  return {
    maxTokens,
    tools,
    toolChoice: choice === 'none' ? 'none' : choice === 'any' ? 'required' : choice === 'tool' ? { name: body.tool_choice.name } : 'auto',
    format: format?.type === 'json_schema' ? { type: 'json_schema', schema: format.schema } : undefined,
    stop: Array.isArray(body.stop_sequences) ? body.stop_sequences.filter((s: unknown) => typeof s === 'string') : [],
  };
}

function stopReason(plan: ChoicePlan): string {
  if (plan.finish === 'tool_calls') return 'tool_use';
  if (plan.finish === 'length') return 'max_tokens';
  if (plan.refusal || plan.finish === 'content_filter') return 'refusal';
  return plan.stopSequence === undefined ? 'end_turn' : 'stop_sequence';
}

function parseObject(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return {}; // arguments cut by max_tokens
  }
}

const event = (name: string, data: object) => `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;

/**
 * The Messages API's event sequence, each event its own res.write: message_start (with the
 * input usage) and ping → content_block_start and the first delta → the remaining deltas
 * (paced like the OpenAI wire) → content_block_stop, message_delta (stop reason, output
 * tokens), message_stop. breakAfterChunks counts deltas.
 */
async function streamMessage(
  ex: Exchange,
  b: SimBehaviour,
  plan: ChoicePlan,
  id: string,
  model: string,
  usage: { input_tokens: number; cache_creation_input_tokens: number; cache_read_input_tokens: number; output_tokens: number } | null,
): Promise<void> {
  const res = ex.res;
  startEventStream(res);
  if (b.hang === 'after-headers') return;
  const message = { id, type: 'message', role: 'assistant', model, content: [], stop_reason: null, stop_sequence: null };
  const start = () => {
    res.write(event('message_start', { type: 'message_start', message: usage ? { ...message, usage: { ...usage, output_tokens: 1 } } : message }));
    res.write(event('ping', { type: 'ping' }));
  };
  const every = b.processingEveryMs ?? 0;
  if (every > 0) {
    // As Anthropic does while a model is slow to begin: the message at once, then pings.
    start();
    for (let thinking = b.ttftMs ?? 0; thinking > 0; ) {
      const step = Math.min(every, thinking);
      if (!(await ex.sleep(step))) return;
      thinking -= step;
      if (thinking > 0) res.write(event('ping', { type: 'ping' }));
    }
  } else {
    if (b.ttftMs && !(await ex.sleep(b.ttftMs))) return;
    start();
  }
  const block = plan.tool ? { type: 'tool_use', id: plan.tool.id, name: plan.tool.name, input: {} } : { type: 'text', text: '' };
  res.write(event('content_block_start', { type: 'content_block_start', index: 0, content_block: block }));
  const delta = (piece: string) =>
    event('content_block_delta', {
      type: 'content_block_delta',
      index: 0,
      delta: plan.tool ? { type: 'input_json_delta', partial_json: piece } : { type: 'text_delta', text: piece },
    });

  if (!(await sendPaced(ex, b, plan.pieces, (piece) => res.write(delta(piece))))) return;
  res.write(event('content_block_stop', { type: 'content_block_stop', index: 0 }));
  res.write(
    event('message_delta', {
      type: 'message_delta',
      delta: { stop_reason: stopReason(plan), stop_sequence: plan.stopSequence ?? null },
      ...(usage ? { usage: { output_tokens: usage.output_tokens } } : {}),
    }),
  );
  res.end(event('message_stop', { type: 'message_stop' }));
}
