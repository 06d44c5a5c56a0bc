// An Anthropic Messages request (POST /v1/messages, and count_tokens) validated and
// translated into the canonical chat completions form. What an OpenAI-compatible upstream
// cannot do (extended thinking, top_k, server tools, documents, a prefilled answer, …) makes
// the request native-only: it then goes only to Anthropic upstreams, and a route without one
// answers 400 naming the field. Unknown block types are a 400 naming the block.
import { z } from 'zod';
import { badRequest } from '../../gateway/errors.js';
import { check } from '../../gateway/validate.js';
import type { ChatMessage, ChatRequest, ContentPart, FunctionTool, ToolCall, ToolChoice } from '../canonical.js';
import type { ParsedRequest } from '../protocol.js';

const block = z.looseObject({ type: z.string().min(1) });
const content = z.union([z.string(), z.array(block).max(100_000)]);

const fields = {
  model: z.string().min(1).max(256),
  max_tokens: z.number().int().min(1),
  messages: z
    .array(z.looseObject({ role: z.enum(['user', 'assistant', 'system']), content }))
    .min(1)
    .max(100_000),
  system: content.nullish(),
  stop_sequences: z.array(z.string()).max(1024).nullish(),
  temperature: z.number().min(0).max(1).nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  top_k: z.number().int().min(0).nullish(),
  stream: z.boolean().nullish(),
  metadata: z.looseObject({ user_id: z.string().max(512).nullish() }).nullish(),
  tools: z
    .array(
      z.looseObject({
        name: z.string().min(1).max(256),
        type: z.string().nullish(),
        description: z.string().nullish(),
        input_schema: z.record(z.string(), z.unknown()).nullish(),
      }),
    )
    .max(512)
    .nullish(),
  tool_choice: z
    .looseObject({
      type: z.enum(['auto', 'any', 'tool', 'none']),
      name: z.string().min(1).max(256).optional(),
      disable_parallel_tool_use: z.boolean().optional(),
    })
    .nullish(),
  thinking: z.looseObject({ type: z.string().min(1), budget_tokens: z.number().int().min(1).optional() }).nullish(),
  output_config: z
    .looseObject({
      effort: z.enum(['low', 'medium', 'high', 'xhigh', 'max']).nullish(),
      format: z.looseObject({ type: z.literal('json_schema'), schema: z.record(z.string(), z.unknown()) }).nullish(),
    })
    .nullish(),
};

const MessagesRequest = z.looseObject(fields);

/** What the translation to chat reads (or what never changes the answer); the rest is `untranslated`. */
export const TRANSLATED = {
  read: new Set([
    'model',
    'messages',
    'system',
    'max_tokens',
    'tools',
    'tool_choice',
    'stop_sequences',
    'temperature',
    'top_p',
    'metadata',
    'stream',
    'service_tier',
    // Enabled, it makes the request native-only (never cached); disabled, it is the default.
    'thinking',
  ]),
  inside: { output_config: ['format', 'effort'] },
};
/** count_tokens takes the same body without max_tokens. */
const CountTokensRequest = z.looseObject({ ...fields, max_tokens: fields.max_tokens.optional() });

export type MessagesBody = z.infer<typeof CountTokensRequest>;

/** Top-level fields only an Anthropic upstream can honour. */
const NATIVE_FIELDS: Record<string, string> = {
  top_k: 'top_k sampling',
  container: 'code-execution containers',
  mcp_servers: 'MCP servers',
  context_management: 'context management',
};

/** Blocks only an Anthropic upstream reads (server tools' calls and results end in `_tool_result`). */
const NATIVE_BLOCKS = new Set(['document', 'search_result', 'server_tool_use', 'mcp_tool_use', 'mcp_tool_result', 'container_upload']);
const SUPPORTED_BLOCKS = 'text, image, document, tool_use, tool_result, thinking, redacted_thinking';

type NativeOnly = NonNullable<ParsedRequest['nativeOnly']>;
/** Records that `what` (at `param`) needs an Anthropic upstream. */
type Native = (what: string, param: string) => void;

/** Validates and translates; `countOnly` (count_tokens) does not require max_tokens. */
export function parseMessagesRequest(raw: Record<string, unknown>, countOnly = false): { body: MessagesBody; chat: ChatRequest; nativeOnly?: NativeOnly } {
  const body = check(countOnly ? CountTokensRequest : MessagesRequest, raw);
  let nativeOnly: NativeOnly | undefined;
  // The first reason found is the one reported.
  const native: Native = (what, param) => void (nativeOnly ??= { reason: `${what} needs an upstream that speaks the Anthropic Messages API`, param });

  for (const [field, what] of Object.entries(NATIVE_FIELDS)) if (raw[field] != null) native(what, field);
  if (body.thinking && body.thinking.type !== 'disabled') native('extended thinking', 'thinking');

  const messages: ChatMessage[] = [];
  const system = body.system ? systemText(body.system, 'system') : '';
  if (system) messages.push({ role: 'system', content: system });
  body.messages.forEach((m, i) => {
    const at = `messages[${i}].content`;
    if (m.role === 'user') messages.push(...userTurn(m.content, at, native));
    else if (m.role === 'assistant') messages.push(assistantTurn(m.content, at, native));
    else messages.push({ role: 'system', content: systemText(m.content, at) });
  });
  if (body.messages.at(-1)!.role === 'assistant') native('continuing a prefilled assistant message', `messages[${body.messages.length - 1}]`);

  const chat: ChatRequest = { model: body.model, messages };
  if (body.max_tokens != null) chat.max_completion_tokens = body.max_tokens;
  const tools = translateTools(body.tools ?? [], native);
  if (tools.length) chat.tools = tools;
  const choice = body.tool_choice;
  if (choice) {
    if (choice.type === 'tool' && !choice.name) throw badRequest("tool_choice of type 'tool' needs a name.", 'tool_choice.name', 'missing_required_parameter');
    chat.tool_choice = TOOL_CHOICE[choice.type] ?? { type: 'function', function: { name: choice.name! } };
    if (choice.disable_parallel_tool_use && tools.length) chat.parallel_tool_calls = false;
  }
  if (body.stop_sequences?.length) chat.stop = body.stop_sequences;
  if (body.temperature != null) chat.temperature = body.temperature;
  if (body.top_p != null) chat.top_p = body.top_p;
  const format = body.output_config?.format;
  if (format) chat.response_format = { type: 'json_schema', json_schema: { name: 'output', schema: format.schema, strict: true } };
  const effort = body.output_config?.effort;
  if (effort) chat.reasoning_effort = effort === 'max' ? 'xhigh' : effort;
  if (body.metadata?.user_id) chat.user = body.metadata.user_id;
  if (body.stream) chat.stream = true;
  return { body, chat, nativeOnly };
}

const TOOL_CHOICE: Record<string, ToolChoice | undefined> = { auto: 'auto', any: 'required', none: 'none' };

/** The top-level `system`, or a system message's content (text blocks only). */
function systemText(system: string | Array<Record<string, unknown>>, at: string): string {
  if (typeof system === 'string') return system;
  return system
    .map((b, i) => {
      if (b.type !== 'text')
        throw badRequest(
          `System blocks of type '${String(b.type).slice(0, 64)}' are not supported (supported: text).`,
          `${at}[${i}].type`,
          'unsupported_value',
        );
      return textOf(b, `${at}[${i}]`);
    })
    .join('\n\n');
}

/**
 * A user turn: its tool results become `tool` messages (first, as Anthropic orders them), the
 * rest one user message.
 */
function userTurn(content: string | Array<Record<string, unknown>>, at: string, native: Native): ChatMessage[] {
  if (typeof content === 'string') return [{ role: 'user', content }];
  const results: ChatMessage[] = [];
  const parts: ContentPart[] = [];
  content.forEach((b, i) => {
    const here = `${at}[${i}]`;
    switch (b.type) {
      case 'text':
        parts.push({ type: 'text', text: textOf(b, here) });
        return;
      case 'image':
        parts.push(imagePart(b.source, `${here}.source`, native));
        return;
      case 'tool_result':
        results.push(toolResult(b, here, native));
        return;
      default:
        nonText(b.type, here, native, 'user');
    }
  });
  if (parts.length === 0 && results.length > 0) return results;
  // Text alone as one string: many upstreams accept only strings.
  const text = parts.every((p) => p.type === 'text') ? parts.map((p) => (p as { text: string }).text).join('') : null;
  return [...results, { role: 'user', content: text ?? parts }];
}

/** An assistant turn: text and tool calls; its thinking blocks are the model's own notes, which no chat upstream takes back. */
function assistantTurn(content: string | Array<Record<string, unknown>>, at: string, native: Native): ChatMessage {
  if (typeof content === 'string') return { role: 'assistant', content };
  let text = '';
  const calls: ToolCall[] = [];
  content.forEach((b, i) => {
    const here = `${at}[${i}]`;
    switch (b.type) {
      case 'text':
        text += textOf(b, here);
        return;
      case 'tool_use': {
        const input = b.input ?? {};
        if (typeof input !== 'object' || Array.isArray(input))
          throw badRequest(`Invalid value for '${here}.input': expected an object.`, `${here}.input`, 'invalid_value');
        calls.push({
          id: requiredString(b.id, `${here}.id`),
          type: 'function',
          function: { name: requiredString(b.name, `${here}.name`), arguments: JSON.stringify(input) },
        });
        return;
      }
      case 'thinking':
      case 'redacted_thinking':
        return;
      default:
        nonText(b.type, here, native, 'assistant');
    }
  });
  return calls.length ? { role: 'assistant', content: text || null, tool_calls: calls } : { role: 'assistant', content: text };
}

function toolResult(b: Record<string, unknown>, at: string, native: Native): ChatMessage {
  const id = requiredString(b.tool_use_id, `${at}.tool_use_id`);
  let text: string;
  if (b.content === undefined || b.content === null) text = '';
  else if (typeof b.content === 'string') text = b.content;
  else if (Array.isArray(b.content)) {
    text = b.content
      .map((part: Record<string, unknown>, i: number) => {
        const here = `${at}.content[${i}]`;
        if (part?.type === 'text') return textOf(part, here);
        if (part?.type === 'image' || part?.type === 'document' || part?.type === 'search_result')
          native(`a ${part.type} inside a tool result`, `${here}.type`);
        else
          throw badRequest(
            `Tool result content of type '${String(part?.type).slice(0, 64)}' is not supported (supported: text, image, document, search_result).`,
            `${here}.type`,
            'unsupported_value',
          );
        return '';
      })
      .join('');
  } else throw badRequest(`Invalid value for '${at}.content': expected a string or an array of blocks.`, `${at}.content`, 'invalid_value');
  // OpenAI's wire has no error flag on tool results: the model reads it in the text.
  return { role: 'tool', tool_call_id: id, content: b.is_error === true ? `Error: ${text}` : text };
}

function imagePart(source: unknown, at: string, native: Native): ContentPart {
  const s = (source ?? {}) as Record<string, unknown>;
  if (s.type === 'base64') {
    const mediaType = requiredString(s.media_type, `${at}.media_type`);
    return { type: 'image_url', image_url: { url: `data:${mediaType};base64,${requiredString(s.data, `${at}.data`)}` } };
  }
  if (s.type === 'url') return { type: 'image_url', image_url: { url: requiredString(s.url, `${at}.url`) } };
  if (s.type === 'file') {
    native('an image given by file id', `${at}.type`);
    return { type: 'text', text: '' };
  }
  throw badRequest(
    `Image sources of type '${String(s.type).slice(0, 64)}' are not supported (supported: base64, url, file).`,
    `${at}.type`,
    'unsupported_value',
  );
}

/** A block that is not text in a turn: native-only when Anthropic knows it, else a 400. */
function nonText(type: unknown, at: string, native: Native, role: 'user' | 'assistant'): void {
  const name = String(type).slice(0, 64);
  if (NATIVE_BLOCKS.has(name) || name.endsWith('_tool_result')) {
    native(`a '${name}' block`, `${at}.type`);
    return;
  }
  if (name === 'tool_use' || name === 'tool_result' || name === 'thinking' || name === 'redacted_thinking' || name === 'image') {
    throw badRequest(`A '${name}' block cannot appear in a ${role} message.`, `${at}.type`, 'invalid_value');
  }
  throw badRequest(`Content blocks of type '${name}' are not supported (supported: ${SUPPORTED_BLOCKS}).`, `${at}.type`, 'unsupported_value');
}

function translateTools(tools: NonNullable<MessagesBody['tools']>, native: Native): FunctionTool[] {
  const out: FunctionTool[] = [];
  for (const [i, tool] of tools.entries()) {
    if (tool.type && tool.type !== 'custom') {
      native(`the server tool '${tool.type.slice(0, 64)}'`, `tools[${i}].type`);
      continue;
    }
    if (!tool.input_schema)
      throw badRequest(`Missing required parameter: 'tools[${i}].input_schema'.`, `tools[${i}].input_schema`, 'missing_required_parameter');
    out.push({
      type: 'function',
      function: { name: tool.name, ...(tool.description ? { description: tool.description } : {}), parameters: tool.input_schema },
    });
  }
  return out;
}

function textOf(b: Record<string, unknown>, at: string): string {
  return requiredString(b.text, `${at}.text`);
}

function requiredString(v: unknown, at: string): string {
  if (typeof v === 'string') return v;
  if (v === undefined || v === null) throw badRequest(`Missing required parameter: '${at}'.`, at, 'missing_required_parameter');
  throw badRequest(`Invalid value for '${at}': expected a string.`, at, 'invalid_value');
}
