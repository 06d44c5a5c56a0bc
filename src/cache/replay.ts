// Cached answers are stored as one chat.completion object, whatever form the original took,
// and replayed in the form the new request asks for: JSON, or SSE when `stream: true`.
import { sseEvent } from '../gateway/sse.js';

interface ToolCall {
  index?: number;
  id?: string;
  type?: string;
  function: { name: string; arguments: string };
}

interface Choice {
  index: number;
  message: { role: string; content: string | null; refusal?: string | null; tool_calls?: ToolCall[] };
  finish_reason: string | null;
  logprobs?: unknown;
}

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: Choice[];
  usage?: unknown;
  system_fingerprint?: string | null;
}

/** Rebuilds the complete answer from a stream's chunks, for storing. */
export class StreamAssembler {
  private readonly choices = new Map<number, Choice>();
  private head: { id: string; created: number; model: string; system_fingerprint?: string | null } | null = null;
  private usage: unknown = undefined;

  add(chunk: any): void {
    if (!chunk || typeof chunk !== 'object') return;
    this.head ??= { id: String(chunk.id ?? ''), created: Number(chunk.created ?? 0), model: String(chunk.model ?? ''), system_fingerprint: chunk.system_fingerprint };
    if (chunk.usage) this.usage = chunk.usage;
    for (const c of Array.isArray(chunk.choices) ? chunk.choices : []) {
      const index = typeof c?.index === 'number' ? c.index : 0;
      let choice = this.choices.get(index);
      if (!choice) this.choices.set(index, (choice = { index, message: { role: 'assistant', content: null }, finish_reason: null }));
      const delta = c.delta ?? {};
      if (typeof delta.role === 'string') choice.message.role = delta.role;
      if (typeof delta.content === 'string') choice.message.content = (choice.message.content ?? '') + delta.content;
      if (typeof delta.refusal === 'string') choice.message.refusal = (choice.message.refusal ?? '') + delta.refusal;
      for (const tc of Array.isArray(delta.tool_calls) ? delta.tool_calls : []) {
        const calls = (choice.message.tool_calls ??= []);
        const at = typeof tc.index === 'number' ? tc.index : calls.length;
        const call = (calls[at] ??= { id: '', type: 'function', function: { name: '', arguments: '' } });
        if (tc.id) call.id = tc.id;
        if (tc.type) call.type = tc.type;
        if (tc.function?.name) call.function.name += tc.function.name;
        if (typeof tc.function?.arguments === 'string') call.function.arguments += tc.function.arguments;
      }
      if (c.finish_reason) choice.finish_reason = c.finish_reason;
    }
  }

  /** The completion, or null when the stream said nothing usable. */
  completion(): ChatCompletion | null {
    if (!this.head || this.choices.size === 0) return null;
    return {
      id: this.head.id,
      object: 'chat.completion',
      created: this.head.created,
      model: this.head.model,
      choices: [...this.choices.values()].sort((a, b) => a.index - b.index),
      ...(this.usage ? { usage: this.usage } : {}),
      ...(this.head.system_fingerprint !== undefined ? { system_fingerprint: this.head.system_fingerprint } : {}),
    };
  }
}

export function callsTools(completion: ChatCompletion): boolean {
  return completion.choices.some((c) => (c.message.tool_calls?.length ?? 0) > 0 || c.finish_reason === 'tool_calls' || c.finish_reason === 'function_call');
}

/** The stored answer as a fresh JSON response (new id and time; same content and usage). */
export function replayJson(stored: Record<string, unknown>, id: string): Record<string, unknown> {
  if (stored.object !== 'chat.completion') return stored; // embeddings: returned as stored
  return { ...stored, id, created: Math.floor(Date.now() / 1000) };
}

/**
 * The stored answer as an SSE stream, shaped like a provider's: a role chunk, content in
 * word-sized chunks, tool-call deltas, a final chunk with finish_reason, the usage chunk when
 * asked for. The caller writes [DONE].
 */
export function replaySse(completion: ChatCompletion, id: string, includeUsage: boolean): string[] {
  const created = Math.floor(Date.now() / 1000);
  const base = { id, object: 'chat.completion.chunk', created, model: completion.model, system_fingerprint: completion.system_fingerprint ?? null };
  const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) => sseEvent(null, { ...base, choices, ...extra });
  const events: string[] = [];
  for (const c of completion.choices) {
    const { index } = c;
    events.push(chunk([{ index, delta: { role: c.message.role, content: '' }, logprobs: null, finish_reason: null }]));
    for (const piece of wordChunks(c.message.content ?? '')) {
      events.push(chunk([{ index, delta: { content: piece }, logprobs: null, finish_reason: null }]));
    }
    if (c.message.refusal) events.push(chunk([{ index, delta: { refusal: c.message.refusal }, logprobs: null, finish_reason: null }]));
    (c.message.tool_calls ?? []).forEach((call, at) => {
      events.push(
        chunk([{ index, delta: { tool_calls: [{ index: at, id: call.id, type: call.type ?? 'function', function: call.function }] }, logprobs: null, finish_reason: null }]),
      );
    });
    events.push(chunk([{ index, delta: {}, logprobs: null, finish_reason: c.finish_reason ?? 'stop' }]));
  }
  if (includeUsage && completion.usage) events.push(chunk([], { usage: completion.usage }));
  return events;
}

/** Word-sized pieces (each with its following whitespace), like a tokenizer's stream. */
function wordChunks(text: string): string[] {
  return text.match(/\s*\S+\s*/g) ?? (text ? [text] : []);
}
