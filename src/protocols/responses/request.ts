// A Responses API request (POST /v1/responses) validated and translated into the canonical
// chat completions form. What has no chat equivalent either needs a native Responses upstream
// (built-in tools, files, computer and MCP items, …: the request then goes only to one, and a
// route without one answers 400 naming the field) or is refused with a 400 naming the field;
// never silently dropped, except what only concerns delivery or bookkeeping.
import { z } from 'zod';
import { badRequest } from '../../gateway/errors.js';
import { check } from '../../gateway/validate.js';
import type { ChatMessage, ChatRequest, ContentPart, FunctionTool, ResponseFormat, ToolChoice } from '../canonical.js';
import type { ParsedRequest } from '../protocol.js';

const metadata = z.record(z.string(), z.string().max(512));

const ResponsesRequest = z.looseObject({
  model: z.string().min(1).max(256),
  input: z.union([z.string(), z.array(z.looseObject({})).max(4096)]),
  instructions: z.string().nullish(),
  tools: z
    .array(z.looseObject({ type: z.string().min(1) }))
    .max(512)
    .nullish(),
  tool_choice: z.union([z.enum(['auto', 'none', 'required']), z.looseObject({ type: z.string() })]).nullish(),
  parallel_tool_calls: z.boolean().nullish(),
  text: z
    .looseObject({
      format: z
        .looseObject({
          type: z.enum(['text', 'json_object', 'json_schema']),
          name: z.string().min(1).max(64).optional(),
          schema: z.record(z.string(), z.unknown()).optional(),
          strict: z.boolean().nullish(),
          description: z.string().optional(),
        })
        .optional(),
    })
    .nullish(),
  max_output_tokens: z.number().int().min(1).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  reasoning: z.looseObject({ effort: z.enum(['none', 'minimal', 'low', 'medium', 'high', 'xhigh']).nullish() }).nullish(),
  metadata: metadata.nullish(),
  user: z.string().max(512).nullish(),
  stream: z.boolean().nullish(),
  store: z.boolean().nullish(),
  previous_response_id: z.string().min(1).max(128).nullish(),
  background: z.boolean().nullish(),
  truncation: z.enum(['auto', 'disabled']).nullish(),
});

export type ResponsesBody = z.infer<typeof ResponsesRequest>;

/** What the translation to chat reads (or what never changes the answer); the rest is `untranslated`. */
export const TRANSLATED = {
  read: new Set([
    'model',
    'input',
    'instructions',
    'tools',
    'tool_choice',
    'parallel_tool_calls',
    'max_output_tokens',
    'temperature',
    'top_p',
    'user',
    'stream',
    'stream_options',
    'metadata',
    'store',
    'previous_response_id',
    'service_tier',
    'prompt_cache_key',
    'safety_identifier',
  ]),
  inside: { text: ['format'], reasoning: ['effort'] },
};

/** An input item as stored for `previous_response_id` (input and output items alike). */
export type Item = Record<string, unknown>;

export type NativeOnly = NonNullable<ParsedRequest['nativeOnly']>;
/**
 * Records that `what` (at `param`) needs an upstream that speaks the Responses API natively:
 * the translation leaves it out, and the request goes only to such an upstream.
 */
export type Native = (what: string, param: string) => void;

export interface TranslatedRequest {
  body: ResponsesBody;
  /** The canonical request; when `nativeOnly`, without what only a native upstream takes (it is never sent). */
  chat: ChatRequest;
  /** This request's own input, as items (a string input is one user message). */
  items: Item[];
  /** The first thing found that only an upstream speaking Responses natively can take. */
  nativeOnly?: NativeOnly;
}

/** Fields that would change the answer and that no upstream can be given here. */
const UNSUPPORTED: Record<string, string> = {
  // The upstream would hold part of the conversation, which Tollgate keeps (previous_response_id).
  conversation: "'conversation' objects are not supported; use previous_response_id.",
};

/** Fields with no chat equivalent that a native upstream takes as sent. */
const NATIVE_FIELDS: Record<string, string> = {
  prompt: 'a stored prompt template',
  context_management: "'context_management'",
};

/** Item types with no chat equivalent that a native upstream takes as sent. */
const NATIVE_ITEMS = new Set([
  'item_reference',
  'computer_call',
  'computer_call_output',
  'local_shell_call',
  'local_shell_call_output',
  'shell_call',
  'shell_call_output',
  'apply_patch_call',
  'apply_patch_call_output',
  'mcp_list_tools',
  'mcp_call',
  'mcp_approval_request',
  'mcp_approval_response',
  'custom_tool_call',
  'custom_tool_call_output',
]);

/** A collector of native-only findings: the first one is the one reported. */
export function nativeOnlyCollector(): { native: Native; found: () => NativeOnly | undefined } {
  let first: NativeOnly | undefined;
  return {
    native: (what, param) => void (first ??= { reason: `${what} needs an upstream that speaks the Responses API natively`, param }),
    found: () => first,
  };
}

export function parseResponsesRequest(raw: Record<string, unknown>): TranslatedRequest {
  const body = check(ResponsesRequest, raw);
  for (const [field, why] of Object.entries(UNSUPPORTED)) {
    if (raw[field] !== undefined && raw[field] !== null) throw badRequest(why, field, 'unsupported_parameter');
  }
  const { native, found } = nativeOnlyCollector();
  if (body.background)
    throw badRequest('Background responses are not supported: send the request without background, or stream it.', 'background', 'unsupported_parameter');
  const format = body.text?.format;
  if (format?.type === 'json_schema' && (!format.name || !format.schema)) {
    throw badRequest(
      "text.format of type 'json_schema' needs a 'name' and a 'schema'.",
      format.name ? 'text.format.schema' : 'text.format.name',
      'missing_required_parameter',
    );
  }

  const items: Item[] = typeof body.input === 'string' ? [{ type: 'message', role: 'user', content: body.input }] : (body.input as Item[]);
  const tools: FunctionTool[] = [];
  (body.tools ?? []).forEach((tool, i) => {
    if (tool.type !== 'function') {
      native(`the built-in tool '${tool.type.slice(0, 64)}'`, 'tools');
      return;
    }
    if (typeof tool.name !== 'string' || !tool.name) throw badRequest('A function tool needs a name.', `tools[${i}].name`, 'missing_required_parameter');
    const parameters = tool.parameters;
    if (parameters !== undefined && parameters !== null && (typeof parameters !== 'object' || Array.isArray(parameters))) {
      throw badRequest('Function parameters must be a JSON Schema object.', `tools[${i}].parameters`, 'invalid_value');
    }
    tools.push({
      type: 'function',
      function: {
        name: tool.name,
        ...(typeof tool.description === 'string' ? { description: tool.description } : {}),
        ...(parameters ? { parameters: parameters as Record<string, unknown> } : {}),
        ...(typeof tool.strict === 'boolean' ? { strict: tool.strict } : {}),
      },
    });
  });

  const chat: ChatRequest = {
    model: body.model,
    messages: [...(body.instructions ? [{ role: 'system' as const, content: body.instructions }] : []), ...itemsToMessages(items, 'input', native)],
  };
  for (const [field, what] of Object.entries(NATIVE_FIELDS)) if (raw[field] != null) native(what, field);
  if (tools.length) chat.tools = tools;
  const toolChoice = translateToolChoice(body.tool_choice, native);
  if (toolChoice !== undefined) chat.tool_choice = toolChoice;
  if (typeof body.parallel_tool_calls === 'boolean' && tools.length) chat.parallel_tool_calls = body.parallel_tool_calls;
  const responseFormat = translateFormat(format);
  if (responseFormat) chat.response_format = responseFormat;
  if (body.max_output_tokens != null) chat.max_completion_tokens = body.max_output_tokens;
  if (body.temperature != null) chat.temperature = body.temperature;
  if (body.top_p != null) chat.top_p = body.top_p;
  if (body.reasoning?.effort) chat.reasoning_effort = body.reasoning.effort;
  if (body.user) chat.user = body.user;
  if (body.stream) chat.stream = true;
  return { body, chat, items, nativeOnly: found() };
}

/**
 * Responses items as chat messages. `where` names the field for errors (`input`, or the
 * stored conversation a previous_response_id pointed at); what only a native upstream takes
 * is left out and reported to `native`.
 */
export function itemsToMessages(items: readonly Item[], where: string, native: Native): ChatMessage[] {
  const messages: ChatMessage[] = [];
  items.forEach((item, i) => {
    const at = `${where}[${i}]`;
    const type = item.type ?? 'message';
    switch (type) {
      case 'message': {
        const role = item.role;
        if (role !== 'user' && role !== 'assistant' && role !== 'system' && role !== 'developer') {
          throw badRequest(`Invalid value for '${at}.role': expected user, assistant, system or developer.`, `${at}.role`, 'invalid_value');
        }
        const content = messageContent(item.content, `${at}.content`, role === 'assistant', native);
        // Most OpenAI-compatible upstreams know `system` but not `developer`.
        messages.push({ role: role === 'developer' ? 'system' : role, content });
        return;
      }
      case 'function_call': {
        const callId = requiredString(item.call_id, `${at}.call_id`);
        const name = requiredString(item.name, `${at}.name`);
        const args = typeof item.arguments === 'string' ? item.arguments : requiredString(undefined, `${at}.arguments`);
        const call = { id: callId, type: 'function' as const, function: { name, arguments: args } };
        // Consecutive calls (and the text just before them) are one assistant turn in chat.
        const last = messages[messages.length - 1];
        if (last?.role === 'assistant') (last.tool_calls ??= []).push(call);
        else messages.push({ role: 'assistant', content: null, tool_calls: [call] });
        return;
      }
      case 'function_call_output': {
        const callId = requiredString(item.call_id, `${at}.call_id`);
        messages.push({ role: 'tool', tool_call_id: callId, content: outputText(item.output, `${at}.output`, native) });
        return;
      }
      case 'reasoning':
        return; // a reasoning model's own notes: no chat upstream takes them back
      case 'web_search_call':
      case 'file_search_call':
      case 'code_interpreter_call':
      case 'image_generation_call':
        // A built-in tool a native upstream ran in an earlier turn: what it found is in the
        // message after it, which is what a chat upstream gets.
        return;
      default:
        if (typeof type === 'string' && NATIVE_ITEMS.has(type)) {
          native(`an input item of type '${type}'`, `${at}.type`);
          return;
        }
        throw badRequest(
          `Input items of type '${String(type).slice(0, 64)}' are not supported (supported: message, function_call, function_call_output, reasoning, and built-in tool calls from earlier turns).`,
          `${at}.type`,
          'unsupported_value',
        );
    }
  });
  return messages;
}

function messageContent(content: unknown, at: string, assistant: boolean, native: Native): string | ContentPart[] {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) throw badRequest(`Invalid value for '${at}': expected a string or an array of content parts.`, at, 'invalid_value');
  const parts = content.map((part, i) => contentPart(part, `${at}[${i}]`, native)).filter((p): p is ContentPart => p !== null);
  // Assistant history as one string: many upstreams accept only strings from the assistant.
  if (assistant || parts.every((p) => p.type === 'text')) return parts.map((p) => (p.type === 'text' ? p.text : '')).join('');
  return parts;
}

/** A content part as canonical; null for what only a native upstream takes (reported to `native`). */
function contentPart(part: unknown, at: string, native: Native): ContentPart | null {
  const p = (part ?? {}) as Record<string, unknown>;
  switch (p.type) {
    case 'input_text':
    case 'output_text':
      return { type: 'text', text: requiredString(p.text, `${at}.text`) };
    case 'refusal':
      return { type: 'text', text: requiredString(p.refusal, `${at}.refusal`) };
    case 'input_image': {
      const url = typeof p.image_url === 'string' ? p.image_url : '';
      if (!url && typeof p.file_id === 'string') {
        native('an image given by file id', `${at}.image_url`);
        return null;
      }
      if (!url)
        throw badRequest(
          'Images must be given as image_url (a URL or a data: URL) or, for a native Responses upstream, a file_id.',
          `${at}.image_url`,
          'unsupported_value',
        );
      const detail = p.detail === 'low' || p.detail === 'high' ? p.detail : 'auto';
      return { type: 'image_url', image_url: { url, detail } };
    }
    case 'input_file':
      native("a file ('input_file')", `${at}.type`);
      return null;
    default:
      throw badRequest(
        `Content parts of type '${String(p.type).slice(0, 64)}' are not supported (supported: input_text, input_image, input_file, output_text, refusal).`,
        `${at}.type`,
        'unsupported_value',
      );
  }
}

/**
 * A function call's output as the text of a chat tool message. An image in it has no place
 * there (chat tool results are text): only a native upstream takes it, and it is not dropped
 * from what the cache keys on either.
 */
function outputText(output: unknown, at: string, native: Native): string {
  if (typeof output === 'string') return output;
  if (Array.isArray(output)) {
    return output
      .map((part, i) => {
        const translated = contentPart(part, `${at}[${i}]`, native);
        if (translated?.type === 'image_url') native("an image in a function call's output", `${at}[${i}].type`);
        return translated?.type === 'text' ? translated.text : '';
      })
      .join('');
  }
  throw badRequest(`Invalid value for '${at}': expected a string.`, at, 'invalid_value');
}

function requiredString(v: unknown, at: string): string {
  if (typeof v === 'string') return v;
  throw badRequest(`Missing required parameter: '${at}'.`, at, 'missing_required_parameter');
}

function translateToolChoice(choice: ResponsesBody['tool_choice'], native: Native): ToolChoice | undefined {
  if (choice === undefined || choice === null) return undefined;
  if (typeof choice === 'string') return choice;
  if (choice.type === 'function') {
    if (typeof choice.name !== 'string' || !choice.name)
      throw badRequest('tool_choice of type function needs a name.', 'tool_choice.name', 'missing_required_parameter');
    return { type: 'function', function: { name: choice.name } };
  }
  if (choice.type === 'allowed_tools') {
    native("tool_choice 'allowed_tools'", 'tool_choice');
    return undefined;
  }
  // A built-in tool forced by name: only a native Responses upstream can honour it.
  native(`the built-in tool '${choice.type.slice(0, 64)}'`, 'tool_choice');
  return undefined;
}

function translateFormat(format: NonNullable<ResponsesBody['text']>['format']): ResponseFormat | undefined {
  if (!format || format.type === 'text') return undefined;
  if (format.type === 'json_object') return { type: 'json_object' };
  return {
    type: 'json_schema',
    json_schema: {
      name: format.name!,
      schema: format.schema,
      ...(format.strict != null ? { strict: format.strict } : {}),
      ...(format.description ? { description: format.description } : {}),
    },
  };
}
