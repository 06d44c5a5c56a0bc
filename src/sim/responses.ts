// The simulator's Responses wire: POST /responses as OpenAI's Responses API answers it, JSON
// and typed SSE events (response.created, response.in_progress, output_item.added /
// content_part.added / output_text.delta … / output_item.done, response.completed or
// response.incomplete; every event with a sequence_number, no [DONE]), with OpenAI's error
// bodies. Same behaviour controls as the chat wire (openai.ts), in the same order: latencyMs →
// hang 'before-headers' → status → answer; breakAfterChunks counts deltas. One answer per
// request: a message, a refusal, or one function call. A `web_search` tool (any
// `web_search…` type) is "run" when no function is called: the output is a web_search_call
// item, then the message. The simulator stores nothing, so a previous_response_id is a 404,
// as OpenAI answers an id it does not know.
import type http from 'node:http';
import { type AnswerRequest, type ChoicePlan, planChoices, positiveInt, scanPrompt } from './answer.js';
import type { BehaviourBook, SimBehaviour } from './behaviour.js';
import { Exchange, sendJson, sendPaced, startEventStream } from './http.js';
import { sendBehaviourError, sendError } from './openai.js';

type Json = Record<string, any>;

export async function responses(res: http.ServerResponse, body: any, book: BehaviourBook, ids: { n: number }): Promise<void> {
  const model = body.model;
  if (typeof model !== 'string' || model.length === 0)
    return sendError(res, 400, "Missing required parameter: 'model'.", 'invalid_request_error', 'model', 'missing_required_parameter');
  const input = body.input;
  if (typeof input !== 'string' && !Array.isArray(input))
    return sendError(res, 400, "Missing required parameter: 'input'.", 'invalid_request_error', 'input', 'missing_required_parameter');
  if (typeof body.previous_response_id === 'string') {
    return sendError(
      res,
      404,
      `Previous response with id '${body.previous_response_id.slice(0, 128)}' not found.`,
      'invalid_request_error',
      'previous_response_id',
      'previous_response_not_found',
    );
  }

  const b = book.resolve(model);
  const stream = body.stream === true;
  const ex = b.latencyMs || b.ttftMs || b.tokensPerSecond || b.hang || b.dripMs || stream ? new Exchange(res) : undefined;
  if (ex && b.latencyMs && !(await ex.sleep(b.latencyMs))) return;
  if (b.hang === 'before-headers') return;
  if (b.status !== undefined && b.status >= 400) return sendBehaviourError(res, b.status, b, model);

  const prompt = scanPrompt(messagesOf(body), body.tools);
  const request = answerRequest(body);
  const plan = planChoices(request, b, prompt, 1, ids, 'call_sim')[0];
  const searches =
    !plan.tool &&
    request.toolChoice !== 'none' &&
    Array.isArray(body.tools) &&
    body.tools.some((t: any) => typeof t?.type === 'string' && t.type.startsWith('web_search'));
  const n = (++ids.n).toString(36);
  // Cache reads come on top of the prompt's estimate, reasoning on top of the answer's tokens (as on the chat wire).
  const cached = b.cacheReadTokens ?? 0;
  const reasoning = b.reasoningTokens ?? 0;
  const usage = b.omitUsage
    ? null
    : {
        input_tokens: prompt.tokens + cached,
        input_tokens_details: { cached_tokens: cached },
        output_tokens: plan.pieces.length + reasoning,
        output_tokens_details: { reasoning_tokens: reasoning },
        total_tokens: prompt.tokens + cached + plan.pieces.length + reasoning,
      };
  const shell = {
    id: `resp_sim${n}`,
    object: 'response',
    created_at: Math.floor(Date.now() / 1000),
    model,
    instructions: body.instructions ?? null,
    max_output_tokens: body.max_output_tokens ?? null,
    metadata: body.metadata ?? {},
    parallel_tool_calls: body.parallel_tool_calls ?? true,
    previous_response_id: null,
    store: body.store !== false,
    temperature: body.temperature ?? 1,
    text: { format: body.text?.format ?? { type: 'text' } },
    tool_choice: body.tool_choice ?? 'auto',
    tools: body.tools ?? [],
    top_p: body.top_p ?? 1,
    truncation: 'disabled',
    user: body.user ?? null,
  };
  const search = searches
    ? { type: 'web_search_call', id: `ws_sim${n}`, status: 'completed', action: { type: 'search', query: prompt.lastUserText ?? '' } }
    : null;
  const item = outputItem(plan, n);
  const final = (output: Json[]) => ({
    ...shell,
    status: plan.finish === 'length' || plan.finish === 'content_filter' ? 'incomplete' : 'completed',
    error: null,
    incomplete_details: plan.finish === 'length' ? { reason: 'max_output_tokens' } : plan.finish === 'content_filter' ? { reason: 'content_filter' } : null,
    output,
    usage,
  });

  if (stream) return streamResponse(ex!, b, plan, shell, search, item, final);

  if (ex) {
    const generation = b.tokensPerSecond ? (plan.pieces.length * 1000) / b.tokensPerSecond : 0;
    if (!(await ex.sleep((b.ttftMs ?? 0) + generation))) return;
  }
  const json = JSON.stringify(final(search ? [search, item] : [item]));
  if (b.hang === 'after-headers' || b.hang === 'after-first-chunk') {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) });
    if (b.hang === 'after-first-chunk') res.write(json.slice(0, Math.ceil(json.length / 2)));
    else res.flushHeaders();
    return;
  }
  sendJson(res, 200, json);
}

/** The conversation as chat-like messages, for the prompt scan (tokens and the answer's seed). */
function messagesOf(body: any): any[] {
  const messages: any[] = [];
  if (typeof body.instructions === 'string') messages.push({ role: 'system', content: body.instructions });
  if (typeof body.input === 'string') return [...messages, { role: 'user', content: body.input }];
  for (const item of body.input as any[]) {
    const type = item?.type ?? 'message';
    if (type === 'message') messages.push({ role: item.role, content: item.content });
    else if (type === 'function_call') messages.push({ role: 'assistant', tool_calls: [{ function: { arguments: item.arguments } }] });
    else if (type === 'function_call_output') messages.push({ role: 'tool', content: typeof item.output === 'string' ? item.output : '' });
  }
  return messages;
}

/** What shapes the answer, from a Responses body: function tools (built-in ones are run apart). */
function answerRequest(body: any): AnswerRequest {
  const tools = Array.isArray(body.tools)
    ? body.tools.filter((t: any) => t?.type === 'function' && typeof t.name === 'string').map((t: any) => ({ name: t.name, parameters: t.parameters }))
    : [];
  const choice = body.tool_choice;
  const format = body.text?.format;
  return {
    maxTokens: positiveInt(body.max_output_tokens),
    tools,
    toolChoice: choice === 'none' || choice === 'required' ? choice : choice?.type === 'function' ? { name: choice.name } : 'auto',
    format:
      format?.type === 'json_schema' ? { type: 'json_schema', schema: format.schema } : format?.type === 'json_object' ? { type: 'json_object' } : undefined,
    stop: [],
  };
}

function outputItem(plan: ChoicePlan, n: string): Json {
  const text = plan.pieces.join('');
  if (plan.tool) return { type: 'function_call', id: `fc_sim${n}`, call_id: plan.tool.id, name: plan.tool.name, arguments: text, status: 'completed' };
  const status = plan.finish === 'length' || plan.finish === 'content_filter' ? 'incomplete' : 'completed';
  const content = plan.refusal ? [{ type: 'refusal', refusal: text }] : [{ type: 'output_text', text, annotations: [], logprobs: [] }];
  return { type: 'message', id: `msg_sim${n}`, status, role: 'assistant', content };
}

/**
 * The Responses event sequence, each event its own res.write: response.created and
 * response.in_progress → (web search: its item and progress events) → the item's added events
 * and first delta → the remaining deltas (paced like the chat wire) → the done events →
 * response.completed (or response.incomplete) with the whole response and its usage.
 */
async function streamResponse(
  ex: Exchange,
  b: SimBehaviour,
  plan: ChoicePlan,
  shell: Json,
  search: Json | null,
  item: Json,
  final: (output: Json[]) => Json,
): Promise<void> {
  const res = ex.res;
  let seq = 0;
  const event = (type: string, data: Json) => res.write(`event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: seq++, ...data })}\n\n`);
  startEventStream(res);
  if (b.hang === 'after-headers') return;
  if (b.ttftMs && !(await ex.sleep(b.ttftMs))) return;

  const pending = { ...shell, status: 'in_progress', error: null, incomplete_details: null, output: [], usage: null };
  event('response.created', { response: pending });
  event('response.in_progress', { response: pending });
  const output: Json[] = [];
  if (search) {
    const where = { output_index: 0, item_id: search.id };
    event('response.output_item.added', { output_index: 0, item: { ...search, status: 'in_progress' } });
    event('response.web_search_call.in_progress', where);
    event('response.web_search_call.searching', where);
    event('response.web_search_call.completed', where);
    event('response.output_item.done', { output_index: 0, item: search });
    output.push(search);
  }
  const at = { item_id: item.id, output_index: output.length };
  const call = item.type === 'function_call';
  const refusal = !call && item.content[0].type === 'refusal';
  const emptyPart = refusal ? { type: 'refusal', refusal: '' } : { type: 'output_text', text: '', annotations: [], logprobs: [] };
  event('response.output_item.added', {
    output_index: at.output_index,
    item: call ? { ...item, arguments: '', status: 'in_progress' } : { ...item, status: 'in_progress', content: [] },
  });
  if (!call) event('response.content_part.added', { ...at, content_index: 0, part: emptyPart });
  const delta = (piece: string) =>
    call
      ? event('response.function_call_arguments.delta', { ...at, delta: piece })
      : event(refusal ? 'response.refusal.delta' : 'response.output_text.delta', {
          ...at,
          content_index: 0,
          delta: piece,
          ...(refusal ? {} : { logprobs: [] }),
        });

  if (!(await sendPaced(ex, b, plan.pieces, delta))) return;
  const text = plan.pieces.join('');
  if (call) event('response.function_call_arguments.done', { ...at, name: item.name, arguments: text });
  else {
    event(refusal ? 'response.refusal.done' : 'response.output_text.done', {
      ...at,
      content_index: 0,
      ...(refusal ? { refusal: text } : { text, logprobs: [] }),
    });
    event('response.content_part.done', { ...at, content_index: 0, part: item.content[0] });
  }
  event('response.output_item.done', { output_index: at.output_index, item });
  output.push(item);
  const response = final(output);
  res.end(`event: response.${response.status}\ndata: ${JSON.stringify({ type: `response.${response.status}`, sequence_number: seq++, response })}\n\n`);
}
