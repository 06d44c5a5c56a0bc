// Responses API answers from an upstream that speaks it natively, read back into the canonical
// form: a `response` object as a chat.completion, and its typed events as
// chat.completion.chunks (for the receipt's tally, the cache and acceptance checks). The
// client gets the upstream's own JSON and events (relay.ts); this is only what Tollgate reads
// from them. Upstream data is untrusted: every field is read defensively.
import type { ChatChunk, ChatCompletion, ChatUsage, FinishReason, ToolCall } from '../canonical.js';

type Json = Record<string, any>;

/** Responses usage (input/output tokens and their details) in the canonical shape. */
export function canonicalUsage(u: unknown): ChatUsage | null {
  if (!u || typeof u !== 'object') return null;
  const usage = u as Json;
  if (typeof usage.input_tokens !== 'number') return null;
  const count = (v: unknown) => (typeof v === 'number' && v >= 0 ? v : 0);
  const prompt = count(usage.input_tokens);
  const completion = count(usage.output_tokens);
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: typeof usage.total_tokens === 'number' ? usage.total_tokens : prompt + completion,
    prompt_tokens_details: { cached_tokens: count(usage.input_tokens_details?.cached_tokens) },
    completion_tokens_details: { reasoning_tokens: count(usage.output_tokens_details?.reasoning_tokens) },
  };
}

/** How a response ended, as a finish reason. */
export function finishReasonOf(response: Json, calledFunctions: boolean): FinishReason {
  if (response.status === 'incomplete') {
    const reason = response.incomplete_details?.reason;
    if (reason === 'max_output_tokens') return 'length';
    if (reason === 'content_filter') return 'content_filter';
  }
  return calledFunctions ? 'tool_calls' : 'stop';
}

/**
 * A complete `response` object as canonical: the message items' text and refusals, function
 * calls as tool calls. Built-in tool items (web_search_call, …) and reasoning have no
 * canonical place: their effect is in the text. Throws a SyntaxError when it is not a response.
 */
export function responseToCompletion(json: unknown): ChatCompletion {
  const r = json as Json | null;
  if (!r || typeof r !== 'object' || !Array.isArray(r.output)) throw new SyntaxError('upstream answer is not a response');
  let text = '';
  let refusal = '';
  const calls: ToolCall[] = [];
  for (const item of r.output as Json[]) {
    if (item?.type === 'message' && Array.isArray(item.content)) {
      for (const part of item.content) {
        if (part?.type === 'output_text' && typeof part.text === 'string') text += part.text;
        else if (part?.type === 'refusal' && typeof part.refusal === 'string') refusal += part.refusal;
      }
    } else if (item?.type === 'function_call') {
      calls.push({
        id: String(item.call_id ?? ''),
        type: 'function',
        function: { name: String(item.name ?? ''), arguments: typeof item.arguments === 'string' ? item.arguments : '' },
      });
    }
  }
  const usage = canonicalUsage(r.usage);
  return {
    id: String(r.id ?? ''),
    object: 'chat.completion',
    created: typeof r.created_at === 'number' ? r.created_at : Math.floor(Date.now() / 1000),
    model: String(r.model ?? ''),
    choices: [
      {
        index: 0,
        message: {
          role: 'assistant',
          content: text || (calls.length || refusal ? null : ''),
          ...(refusal ? { refusal } : {}),
          ...(calls.length ? { tool_calls: calls } : {}),
        },
        finish_reason: finishReasonOf(r, calls.length > 0),
        logprobs: null,
      },
    ],
    ...(usage ? { usage } : {}),
  };
}

/** The events that end a response: the whole response comes with them. */
export const FINAL_EVENTS = new Set(['response.completed', 'response.incomplete']);

/**
 * One Responses stream's events, each read into canonical chunks: text and refusal deltas,
 * function calls (added → arguments deltas), and at the end a finish chunk and a usage chunk
 * from response.completed / response.incomplete. `error` and response.failed are the
 * upstream's errors.
 */
export class ResponsesEventReader {
  /** The stream reached response.completed or response.incomplete. */
  done = false;
  /** The upstream's error (an `error` event, or response.failed's error). */
  error: unknown = null;
  private reasoningText = '';
  private reasoningSummary = '';
  private head: Omit<ChatChunk, 'choices' | 'usage'> = { id: '', object: 'chat.completion.chunk', created: Math.floor(Date.now() / 1000), model: '' };
  /** Output index of a function_call item → tool-call index. */
  private readonly calls = new Map<number, number>();
  private roleSent = false;

  /**
   * The reasoning streamed so far (StreamTally.reasoningText): its text, or its summary (a lower
   * bound) when only that came; not both, which are the same thinking twice.
   */
  get reasoning(): string {
    return this.reasoningText.length >= this.reasoningSummary.length ? this.reasoningText : this.reasoningSummary;
  }

  read(data: unknown): ChatChunk[] {
    const e = data as Json | null;
    if (!e || typeof e !== 'object') return [];
    switch (e.type) {
      case 'response.created': {
        const r = e.response ?? {};
        this.head = { ...this.head, id: String(r.id ?? ''), model: String(r.model ?? '') };
        return [];
      }
      case 'response.output_text.delta':
        return typeof e.delta === 'string' && e.delta ? [this.chunk({ content: e.delta })] : [];
      case 'response.refusal.delta':
        return typeof e.delta === 'string' && e.delta ? [this.chunk({ refusal: e.delta })] : [];
      case 'response.reasoning_text.delta':
        if (typeof e.delta === 'string') this.reasoningText += e.delta;
        return [];
      case 'response.reasoning_summary_text.delta':
        if (typeof e.delta === 'string') this.reasoningSummary += e.delta;
        return [];
      case 'response.output_item.added': {
        const item = e.item;
        if (item?.type !== 'function_call') return [];
        const index = this.calls.size;
        this.calls.set(Number(e.output_index), index);
        const args = typeof item.arguments === 'string' ? item.arguments : '';
        return [
          this.chunk({
            tool_calls: [{ index, id: String(item.call_id ?? ''), type: 'function', function: { name: String(item.name ?? ''), arguments: args } }],
          }),
        ];
      }
      case 'response.function_call_arguments.delta': {
        const index = this.calls.get(Number(e.output_index));
        if (index === undefined || typeof e.delta !== 'string' || !e.delta) return [];
        return [this.chunk({ tool_calls: [{ index, function: { arguments: e.delta } }] })];
      }
      case 'response.completed':
      case 'response.incomplete': {
        this.done = true;
        const r = (e.response ?? {}) as Json;
        const finish: ChatChunk = { ...this.head, choices: [{ index: 0, delta: {}, finish_reason: finishReasonOf(r, this.calls.size > 0), logprobs: null }] };
        const usage = canonicalUsage(r.usage);
        return usage ? [finish, { ...this.head, choices: [], usage }] : [finish];
      }
      case 'response.failed':
        this.error = e.response?.error ?? { message: 'the upstream response failed' };
        return [];
      case 'error':
        this.error = { code: e.code ?? null, message: e.message ?? 'upstream stream error' };
        return [];
      default:
        return [];
    }
  }

  private chunk(delta: ChatChunk['choices'][number]['delta']): ChatChunk {
    // The first content carries the assistant's role, as a chat stream's first chunk does.
    const role = this.roleSent ? {} : { role: 'assistant' };
    this.roleSent = true;
    return { ...this.head, choices: [{ index: 0, delta: { ...role, ...delta }, finish_reason: null, logprobs: null }] };
  }
}
