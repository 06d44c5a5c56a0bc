// The Anthropic Messages wire's vocabulary, shared by the client codec (a Messages client of
// Tollgate) and the upstream adapter (Tollgate as a client of Anthropic): stop reasons, usage
// in both directions (DESIGN §6), and error types by status (DESIGN §4).
import type { GatewayError } from '../../gateway/errors.js';
import type { ChatUsage, FinishReason } from '../canonical.js';

export type StopReason = 'end_turn' | 'max_tokens' | 'stop_sequence' | 'tool_use' | 'pause_turn' | 'refusal' | 'model_context_window_exceeded';

/** Anthropic's usage object as it arrives (any field may be missing or null). */
export interface MessagesUsage {
  input_tokens?: number | null;
  output_tokens?: number | null;
  cache_creation_input_tokens?: number | null;
  cache_read_input_tokens?: number | null;
  output_tokens_details?: { thinking_tokens?: number | null } | null;
}

/**
 * A canonical finish reason as Anthropic's stop reason. `stop` is `end_turn`: whether a stop
 * sequence ended it is not known once an answer is canonical (OpenAI's wire does not say).
 */
export function stopReasonOf(finish: string | null | undefined): StopReason {
  switch (finish) {
    case 'length':
      return 'max_tokens';
    case 'tool_calls':
    case 'function_call':
      return 'tool_use';
    case 'content_filter':
      return 'refusal';
    default:
      return 'end_turn';
  }
}

export function finishReasonOf(stop: unknown): FinishReason {
  switch (stop) {
    case 'max_tokens':
    case 'model_context_window_exceeded':
      return 'length';
    case 'tool_use':
      return 'tool_calls';
    case 'refusal':
      return 'content_filter';
    default:
      return 'stop'; // end_turn, stop_sequence, pause_turn
  }
}

const count = (v: unknown) => (typeof v === 'number' && v >= 0 ? v : 0);

/**
 * Anthropic usage normalised (DESIGN §6): its `input_tokens` excludes the cache, so prompt =
 * input + cache reads + cache writes; cached = cache reads; cache_write_tokens = cache writes.
 */
export function canonicalUsage(u: MessagesUsage): ChatUsage {
  const read = count(u.cache_read_input_tokens);
  const written = count(u.cache_creation_input_tokens);
  const prompt = count(u.input_tokens) + read + written;
  const completion = count(u.output_tokens);
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
    prompt_tokens_details: { cached_tokens: read, ...(written ? { cache_write_tokens: written } : {}) },
    completion_tokens_details: { reasoning_tokens: count(u.output_tokens_details?.thinking_tokens) },
  };
}

/** Canonical usage the way Anthropic reports it (the normalisation reversed). */
export function messagesUsage(u: ChatUsage | null | undefined) {
  const read = count(u?.prompt_tokens_details?.cached_tokens);
  const written = count(u?.prompt_tokens_details?.cache_write_tokens);
  return {
    input_tokens: Math.max(0, count(u?.prompt_tokens) - read - written),
    cache_creation_input_tokens: written,
    cache_read_input_tokens: read,
    output_tokens: count(u?.completion_tokens),
  };
}

/** Anthropic's error types by status; other 4xx are invalid requests, other 5xx api errors. */
const ERROR_TYPES: Record<number, string> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  403: 'permission_error',
  404: 'not_found_error',
  413: 'request_too_large',
  429: 'rate_limit_error',
  529: 'overloaded_error',
};

export function errorTypeOf(status: number): string {
  return ERROR_TYPES[status] ?? (status >= 500 ? 'api_error' : 'invalid_request_error');
}

/**
 * Any error in Anthropic's shape. It has no `param`: the field at fault is named in the
 * message (`messages[0].content[1].type: …`, as Anthropic does) unless the message names it.
 */
export function messagesErrorBody(error: GatewayError) {
  const { param } = error;
  const message = param && !error.message.includes(`'${param}'`) ? `${param}: ${error.message}` : error.message;
  return { type: 'error' as const, error: { type: errorTypeOf(error.status), message } };
}
