// Every provider that speaks OpenAI's chat completions (OpenRouter, ARK, OpenAI, DeepSeek,
// Qwen, Zhipu, any compatible base URL, the simulator). Chat completions and embeddings from
// clients pass through byte for byte apart from the model; other protocols are translated.
// A provider whose preset serves the Responses API too (OpenAI) gets the variant that also
// passes Responses requests through (`openAiWithResponses`).
import { upstreamMetadata } from '../gateway/attribution.js';
import { badRequest, fromUpstreamClientError } from '../gateway/errors.js';
import { type ChatCompletion, type ChatRequest, canonicalFinishReason } from '../protocols/canonical.js';
import { ChatDecoder } from '../protocols/chat.js';
import type { Wire } from '../protocols/protocol.js';
import { responseToCompletion } from '../protocols/responses/decode.js';
import type { Target } from '../routing/catalog.js';
import type { UpstreamAdapter, UpstreamRequest } from './adapter.js';

const PATHS: Partial<Record<Wire, string>> = { chat: '/chat/completions', embeddings: '/embeddings', responses: '/responses' };

function passthrough(wire: Wire, body: Record<string, unknown>, target: Target, stream: boolean): UpstreamRequest {
  if (wire === 'embeddings' && !target.provider.preset.embeddings) {
    throw badRequest(`The provider '${target.provider.name}' does not serve embeddings.`, 'model', 'unsupported_value');
  }
  // Tollgate always asks a chat stream for its usage (receipts bill from it); the relay hides
  // the usage chunk from a client that did not ask. Responses streams always end with it.
  const upstreamBody: Record<string, unknown> =
    stream && wire === 'chat'
      ? { ...body, model: target.upstreamModel, stream_options: { ...(body.stream_options as object | undefined), include_usage: true } }
      : { ...body, model: target.upstreamModel };
  if (body.metadata !== undefined) upstreamBody.metadata = metadataFor(wire, body.metadata, body.store);
  if (wire === 'chat') {
    refuseUntakeableFormat(body.response_format, target);
    if (target.provider.preset.onlyMaxTokens) moveToMaxTokens(upstreamBody);
  }
  return { path: PATHS[wire]!, body: JSON.stringify(upstreamBody) };
}

/** A response format the provider refuses: the request is not this target's to take (presets.ts). */
function refuseUntakeableFormat(format: unknown, target: Target): void {
  if (target.provider.preset.jsonSchema || (format as { type?: unknown } | null)?.type !== 'json_schema') return;
  throw badRequest(
    `The provider '${target.provider.name}' does not take response_format 'json_schema' (only 'json_object').`,
    'response_format',
    'unsupported_value',
  );
}

/**
 * What of a request's metadata an upstream of `wire` takes: chat only with `store: true` (OpenAI
 * refuses it otherwise; without it, metadata is the client's word to Tollgate), Responses
 * always, embeddings never (no such field); Tollgate's attribution keys never.
 */
function metadataFor(wire: Wire, metadata: unknown, store: unknown): Record<string, unknown> | undefined {
  if (wire === 'embeddings' || (wire === 'chat' && store !== true)) return undefined;
  return upstreamMetadata(metadata);
}

/** The output limit in `max_tokens`, the field older compatible APIs read (presets.ts). */
function moveToMaxTokens(body: { max_tokens?: unknown; max_completion_tokens?: unknown }): void {
  if (body.max_completion_tokens === undefined) return;
  body.max_tokens ??= body.max_completion_tokens;
  delete body.max_completion_tokens;
}

function request(chat: ChatRequest, target: Target, stream: boolean): UpstreamRequest {
  refuseUntakeableFormat(chat.response_format, target);
  const body: ChatRequest = { ...chat, model: target.upstreamModel };
  if (chat.metadata !== undefined) body.metadata = metadataFor('chat', chat.metadata, chat.store) as ChatRequest['metadata'];
  if (target.provider.preset.maxTokensField === 'max_tokens') moveToMaxTokens(body);
  if (stream) {
    body.stream = true;
    body.stream_options = { include_usage: true };
  } else {
    // A streamed request answered in one piece (a cascade step): OpenAI refuses
    // stream_options without stream (400).
    delete body.stream;
    delete body.stream_options;
  }
  return { path: '/chat/completions', body: JSON.stringify(body) };
}

function answer(json: unknown, passedThrough?: Wire): ChatCompletion {
  if (passedThrough === 'responses') return responseToCompletion(json);
  const completion = json as ChatCompletion;
  if (!completion || typeof completion !== 'object' || !Array.isArray(completion.choices)) throw new SyntaxError('upstream answer has no choices');
  for (const choice of completion.choices) {
    const message = (choice as { message?: unknown } | null)?.message as Record<string, unknown> | undefined;
    if (!message || typeof message !== 'object') throw new SyntaxError('upstream answer has a choice without a message');
    // Some compatible servers answer the content as a list of parts: read as its text (and refusal).
    if (Array.isArray(message.content)) Object.assign(message, fromParts(message.content));
    else if (message.content != null && typeof message.content !== 'string') throw new SyntaxError('upstream answer has a message content that is not text');
    const calls = message.tool_calls;
    if (calls != null && !(Array.isArray(calls) && calls.every(isWellFormedCall))) throw new SyntaxError('upstream answer has a malformed tool call');
    canonicalFinishReason(choice);
  }
  return completion;
}

/** A function call names its function; other kinds (OpenAI's custom tools) carry their own shape. */
function isWellFormedCall(call: { type?: unknown; function?: { name?: unknown } } | null): boolean {
  return !!call && typeof call === 'object' && (call.type !== 'function' || typeof call.function?.name === 'string');
}

/** A content given as parts: the text parts joined, and a refusal part as the refusal. */
function fromParts(parts: unknown[]): { content: string; refusal?: string } {
  let content = '';
  let refusal: string | undefined;
  for (const part of parts as Array<{ type?: unknown; text?: unknown; refusal?: unknown } | null>) {
    if (typeof part?.text === 'string') content += part.text;
    else if (part?.type === 'refusal' && typeof part.refusal === 'string') refusal = (refusal ?? '') + part.refusal;
  }
  return refusal === undefined ? { content } : { content, refusal };
}

export const openAiCompatible: UpstreamAdapter = {
  wires: new Set<Wire>(['chat', 'embeddings']),
  passthrough,
  request,
  answer,
  decoder: () => new ChatDecoder(),
  error: (status, body) => fromUpstreamClientError(status, body),
};

/** An OpenAI-compatible provider that also serves POST /responses (its preset says so). */
export const openAiWithResponses: UpstreamAdapter = { ...openAiCompatible, wires: new Set<Wire>(['chat', 'embeddings', 'responses']) };
