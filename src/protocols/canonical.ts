// The canonical form every client protocol is translated into and every upstream adapter
// is translated from: OpenAI chat completions, the lingua franca of LLM APIs. Requests are a
// chat completions body, answers a `chat.completion`, streams a sequence of
// `chat.completion.chunk`s. These types describe what Tollgate reads and writes; upstream
// data is untrusted and is read defensively wherever it enters (providers/, protocols/).

export type Role = 'system' | 'developer' | 'user' | 'assistant' | 'tool';

export interface TextPart {
  type: 'text';
  text: string;
}
export interface ImagePart {
  type: 'image_url';
  image_url: { url: string; detail?: 'auto' | 'low' | 'high' };
}
export type ContentPart = TextPart | ImagePart;

export interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

export interface ChatMessage {
  role: Role;
  content?: string | ContentPart[] | null;
  name?: string;
  tool_calls?: ToolCall[];
  tool_call_id?: string;
  refusal?: string | null;
}

export interface FunctionTool {
  type: 'function';
  function: { name: string; description?: string; parameters?: Record<string, unknown>; strict?: boolean };
}

export type ToolChoice = 'auto' | 'none' | 'required' | { type: 'function'; function: { name: string } };

export type ResponseFormat =
  | { type: 'text' }
  | { type: 'json_object' }
  | { type: 'json_schema'; json_schema: { name: string; schema?: Record<string, unknown>; strict?: boolean | null; description?: string } };

export interface ChatRequest {
  model: string;
  messages: ChatMessage[];
  tools?: FunctionTool[];
  tool_choice?: ToolChoice;
  parallel_tool_calls?: boolean;
  response_format?: ResponseFormat;
  max_completion_tokens?: number;
  max_tokens?: number;
  temperature?: number;
  top_p?: number;
  stop?: string | string[] | null;
  stream?: boolean;
  stream_options?: { include_usage?: boolean } | null;
  n?: number;
  seed?: number;
  user?: string;
  metadata?: Record<string, string>;
  reasoning_effort?: string;
  [other: string]: unknown;
}

export type FinishReason = 'stop' | 'length' | 'tool_calls' | 'content_filter' | 'function_call';

/**
 * Finish reasons OpenAI-compatible providers send beyond OpenAI's, as OpenAI's: Zhipu's content
 * filter (`sensitive`), answers cut short by the provider (Zhipu's `network_error` and
 * `model_context_window_exceeded`, DeepSeek's `insufficient_system_resource`). Read as `stop`
 * (unknown to the cascade's checks), a cut or filtered answer was accepted and cached.
 */
const PROVIDER_FINISH_REASONS: Readonly<Record<string, FinishReason>> = {
  sensitive: 'content_filter',
  network_error: 'length',
  model_context_window_exceeded: 'length',
  insufficient_system_resource: 'length',
};

/** A provider's own finish reason (each of them a filter or a cut, never a whole answer). */
export function isProviderEnding(reason: unknown): boolean {
  return typeof reason === 'string' && Object.hasOwn(PROVIDER_FINISH_REASONS, reason);
}

/** Rewrites a choice's provider-specific finish reason (in place) as OpenAI's. */
export function canonicalFinishReason(choice: { finish_reason?: unknown } | null | undefined): void {
  const reason = choice?.finish_reason;
  if (typeof reason === 'string' && Object.hasOwn(PROVIDER_FINISH_REASONS, reason)) choice!.finish_reason = PROVIDER_FINISH_REASONS[reason];
}

/** OpenAI's usage object. `cache_write_tokens` is ours: prompt tokens written to a provider's cache. */
export interface ChatUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details?: { cached_tokens?: number; cache_write_tokens?: number } | null;
  completion_tokens_details?: { reasoning_tokens?: number } | null;
}

export interface Choice {
  index: number;
  message: { role: string; content: string | null; refusal?: string | null; tool_calls?: ToolCall[] };
  finish_reason: FinishReason | string | null;
  logprobs?: unknown;
}

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: Choice[];
  usage?: ChatUsage | null;
  system_fingerprint?: string | null;
}

export interface ToolCallDelta {
  index: number;
  id?: string;
  type?: 'function';
  function?: { name?: string; arguments?: string };
}

export interface ChunkChoice {
  index: number;
  delta: { role?: string; content?: string | null; refusal?: string | null; tool_calls?: ToolCallDelta[] };
  finish_reason: FinishReason | string | null;
  logprobs?: unknown;
}

export interface ChatChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  choices: ChunkChoice[];
  usage?: ChatUsage | null;
  system_fingerprint?: string | null;
}
