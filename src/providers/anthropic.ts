// Anthropic's Messages API as an upstream ({baseUrl}/v1/messages, `x-api-key`,
// `anthropic-version`). A Messages client's request passes through as sent (model replaced);
// chat and Responses clients' requests are translated from the canonical form, and the
// answers, streams and usage (DESIGN §6: cache reads and writes counted in the prompt) read
// back into it (src/protocols/messages/decode.ts).
import { badRequest, fromUpstreamClientError } from '../gateway/errors.js';
import type { ChatMessage, ChatRequest, ContentPart } from '../protocols/canonical.js';
import { MessagesDecoder, messageToCompletion } from '../protocols/messages/decode.js';
import { toolUseBlock } from '../protocols/messages/render.js';
import type { Wire } from '../protocols/protocol.js';
import type { UpstreamAdapter, UpstreamRequest } from './adapter.js';

const PATH = '/v1/messages';

/**
 * The Messages API requires max_tokens; the canonical form does not. 4096 is within every
 * Claude model's output limit, so a request without a limit is never refused for it.
 */
export const DEFAULT_MAX_TOKENS = 4096;

/** Asked for by `response_format: json_object`, which Anthropic has no mode for. */
const JSON_INSTRUCTION = 'Respond with a single JSON object and nothing else.';

export const anthropic: UpstreamAdapter = {
  wires: new Set<Wire>(['messages']),

  passthrough(_wire, body, target): UpstreamRequest {
    const upstream: Record<string, unknown> = { ...body, model: target.upstreamModel };
    // Attribution keys (feature, task_id, …) are Tollgate's; Anthropic's metadata knows only user_id.
    const metadata = body.metadata as { user_id?: unknown } | null | undefined;
    if (metadata && typeof metadata === 'object') {
      if (typeof metadata.user_id === 'string') upstream.metadata = { user_id: metadata.user_id };
      else delete upstream.metadata;
    }
    return { path: PATH, body: JSON.stringify(upstream) };
  },

  request(chat, target, stream): UpstreamRequest {
    return { path: PATH, body: JSON.stringify(toMessagesRequest(chat, target.upstreamModel, stream)) };
  },

  answer: messageToCompletion,

  decoder: () => new MessagesDecoder(),

  // Anthropic's error body {"type":"error","error":{"type","message"}} has the fields read there.
  error: (status, body) => fromUpstreamClientError(status, body),
};

type Block = Record<string, unknown>;
interface Turn {
  role: 'user' | 'assistant';
  content: Block[];
}

/**
 * A canonical request as a Messages request. System messages (wherever they are) become
 * `system`; tool results become tool_result blocks in a user turn; consecutive messages of one
 * role merge into one turn, as the Messages API wants. What has no Messages equivalent (n > 1,
 * audio or file parts, the legacy `function` role) is a 400 naming the field.
 */
export function toMessagesRequest(chat: ChatRequest, model: string, stream: boolean): Record<string, unknown> {
  if (typeof chat.n === 'number' && chat.n > 1) throw unsupported('n > 1 (several choices)', 'n');
  const system: string[] = [];
  const messages: Turn[] = [];
  const add = (role: Turn['role'], blocks: Block[]) => {
    if (blocks.length === 0) return;
    const last = messages[messages.length - 1];
    if (last?.role === role) last.content.push(...blocks);
    else messages.push({ role, content: blocks });
  };
  chat.messages.forEach((m, i) => {
    switch (m.role) {
      case 'system':
      case 'developer':
        system.push(textOf(m.content));
        break;
      case 'assistant':
        add('assistant', assistantBlocks(m, i));
        break;
      case 'tool':
        add('user', [{ type: 'tool_result', tool_use_id: m.tool_call_id ?? '', content: textOf(m.content) }]);
        break;
      case 'user':
        add('user', userBlocks(m.content, `messages[${i}].content`));
        break;
      default:
        throw unsupported(`the '${String(m.role).slice(0, 32)}' role`, `messages[${i}].role`);
    }
  });
  // System messages alone (OpenAI answers them): Anthropic wants a message, so they are the user's turn.
  const instructions = system.join('\n\n');
  if (messages.length === 0 && instructions) {
    messages.push({ role: 'user', content: [{ type: 'text', text: instructions }] });
    system.length = 0;
  }
  if (chat.response_format?.type === 'json_object') system.push(JSON_INSTRUCTION);

  const body: Record<string, unknown> = {
    model,
    max_tokens: chat.max_completion_tokens ?? chat.max_tokens ?? DEFAULT_MAX_TOKENS,
    messages,
  };
  if (system.length) body.system = system.join('\n\n');
  if (chat.tools?.length) {
    body.tools = chat.tools.map((t, i) => {
      // Custom (free-form) tools have no JSON schema for Anthropic's input_schema.
      if (t.type !== 'function' || !t.function) throw unsupported(`a '${String(t.type).slice(0, 32)}' tool`, `tools[${i}]`);
      return {
        name: t.function.name,
        ...(t.function.description ? { description: t.function.description } : {}),
        input_schema: t.function.parameters ?? { type: 'object', properties: {} },
      };
    });
    const choice = toolChoice(chat);
    if (choice) body.tool_choice = choice;
  }
  const stop = typeof chat.stop === 'string' ? [chat.stop] : chat.stop;
  if (stop?.length) body.stop_sequences = stop;
  // OpenAI's temperature runs 0–2, Anthropic's 0–1: above 1 is sent as 1 (refused otherwise).
  // Recent Claude models refuse temperature and top_p together: the temperature is kept.
  if (chat.temperature != null) body.temperature = Math.min(chat.temperature, 1);
  else if (chat.top_p != null) body.top_p = chat.top_p;
  if (typeof chat.user === 'string' && chat.user) body.metadata = { user_id: chat.user };
  const format = chat.response_format?.type === 'json_schema' ? chat.response_format.json_schema.schema : undefined;
  const effort = EFFORT[chat.reasoning_effort ?? ''];
  if (format || effort) body.output_config = { ...(format ? { format: { type: 'json_schema', schema: format } } : {}), ...(effort ? { effort } : {}) };
  if (stream) body.stream = true;
  return body;
}

const EFFORT: Record<string, string> = { minimal: 'low', low: 'low', medium: 'medium', high: 'high', xhigh: 'xhigh' };

function toolChoice(chat: ChatRequest): Record<string, unknown> | undefined {
  const c = chat.tool_choice;
  const parallel = chat.parallel_tool_calls === false ? { disable_parallel_tool_use: true } : {};
  if (c === 'none') return { type: 'none' };
  if (c === 'required') return { type: 'any', ...parallel };
  if (c && typeof c === 'object') {
    if (c.type === 'function' && c.function?.name) return { type: 'tool', name: c.function.name, ...parallel };
    throw unsupported(`a tool_choice of type '${String(c.type).slice(0, 32)}'`, 'tool_choice');
  }
  return chat.parallel_tool_calls === false ? { type: 'auto', ...parallel } : undefined;
}

function assistantBlocks(m: ChatMessage, i: number): Block[] {
  const blocks: Block[] = [];
  const text = textOf(m.content);
  if (text) blocks.push({ type: 'text', text });
  for (const [j, call] of (m.tool_calls ?? []).entries()) {
    // A replayed call may leave its type out: it is a function call unless it says otherwise.
    if ((call.type ?? 'function') !== 'function' || !call.function)
      throw unsupported(`a '${String(call.type).slice(0, 32)}' tool call`, `messages[${i}].tool_calls[${j}]`);
    blocks.push(toolUseBlock(call));
  }
  return blocks;
}

/** Empty text is left out: Anthropic refuses an empty text block (400) where OpenAI takes it. */
function userBlocks(content: ChatMessage['content'], at: string): Block[] {
  if (typeof content === 'string') return content ? [{ type: 'text', text: content }] : [];
  return (content ?? []).flatMap((part, j) => (part.type === 'text' && !part.text ? [] : [userBlock(part, `${at}[${j}]`)]));
}

function userBlock(part: ContentPart, at: string): Block {
  if (part.type === 'text') return { type: 'text', text: part.text };
  if (part.type !== 'image_url' || typeof part.image_url?.url !== 'string')
    throw unsupported(`content parts of type '${String(part.type).slice(0, 64)}'`, `${at}.type`);
  const url = part.image_url.url;
  const data = /^data:([^;,]+);base64,(.*)$/s.exec(url);
  return { type: 'image', source: data ? { type: 'base64', media_type: data[1], data: data[2] } : { type: 'url', url } };
}

function textOf(content: ChatMessage['content']): string {
  if (typeof content === 'string') return content;
  return (content ?? []).map((p) => (p.type === 'text' ? p.text : '')).join('');
}

function unsupported(what: string, param: string) {
  return badRequest(`Anthropic upstreams do not take ${what}.`, param, 'unsupported_value');
}
