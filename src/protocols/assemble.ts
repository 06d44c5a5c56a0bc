// Canonical answers and canonical streams, each made from the other: a stream's chunks are
// assembled into the complete answer (for the cache, acceptance checks and stored
// responses), and a complete answer is replayed as chunks (cache hits on streamed requests).
import type { ChatChunk, ChatCompletion, ChatUsage, Choice } from './canonical.js';
import type { StreamTally } from './protocol.js';

/** Rebuilds the complete answer from a stream's chunks. */
export class StreamAssembler {
  private readonly choices = new Map<number, Choice>();
  private head: { id: string; created: number; model: string; system_fingerprint?: string | null } | null = null;
  private usage: ChatUsage | null = null;

  add(chunk: any): void {
    if (!chunk || typeof chunk !== 'object') return;
    this.head ??= {
      id: String(chunk.id ?? ''),
      created: Number(chunk.created ?? 0),
      model: String(chunk.model ?? ''),
      system_fingerprint: chunk.system_fingerprint,
    };
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
        // As the openai SDK reads it: a name sent again replaces, it is not appended.
        if (tc.function?.name) call.function.name = tc.function.name;
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

/**
 * A complete answer as a stream, shaped like a provider's: a role chunk, content in
 * word-sized chunks, tool-call deltas, a final chunk with finish_reason, then a usage-only
 * chunk (encoders drop it when the client did not ask for it).
 */
export function completionChunks(completion: ChatCompletion, id: string, created = Math.floor(Date.now() / 1000)): ChatChunk[] {
  const base = { id, object: 'chat.completion.chunk' as const, created, model: completion.model, system_fingerprint: completion.system_fingerprint ?? null };
  const chunks: ChatChunk[] = [];
  for (const c of completion.choices) {
    const { index } = c;
    chunks.push({ ...base, choices: [{ index, delta: { role: c.message.role, content: '' }, logprobs: null, finish_reason: null }] });
    for (const piece of wordChunks(c.message.content ?? '')) {
      chunks.push({ ...base, choices: [{ index, delta: { content: piece }, logprobs: null, finish_reason: null }] });
    }
    if (c.message.refusal) chunks.push({ ...base, choices: [{ index, delta: { refusal: c.message.refusal }, logprobs: null, finish_reason: null }] });
    (c.message.tool_calls ?? []).forEach((call, at) => {
      chunks.push({
        ...base,
        choices: [
          {
            index,
            delta: { tool_calls: [{ index: at, id: call.id, type: call.type ?? 'function', function: call.function }] },
            logprobs: null,
            finish_reason: null,
          },
        ],
      });
    });
    chunks.push({ ...base, choices: [{ index, delta: {}, logprobs: null, finish_reason: c.finish_reason ?? 'stop' }] });
  }
  if (completion.usage) chunks.push({ ...base, choices: [], usage: completion.usage });
  return chunks;
}

/** Word-sized pieces (each with its following whitespace), like a tokenizer's stream. */
function wordChunks(text: string): string[] {
  return text.match(/\s*\S+\s*/g) ?? (text ? [text] : []);
}

/** A delta that carries part of the answer (anything but a role and empty fields). */
function answerBegins(delta: any): boolean {
  if (!delta || typeof delta !== 'object') return false;
  for (const key in delta) {
    const value = delta[key];
    if (key !== 'role' && value != null && value !== '' && !(Array.isArray(value) && value.length === 0)) return true;
  }
  return false;
}

/** What a receipt needs from one canonical chunk: usage, delivered text, upstream errors. */
export function tallyChunk(tally: StreamTally, chunk: any): void {
  if (chunk?.error) tally.upstreamError = chunk.error;
  if (chunk?.usage) tally.usage = chunk.usage;
  const choices = chunk?.choices;
  if (!Array.isArray(choices)) return;
  for (const c of choices) {
    const delta = c?.delta;
    if (!tally.answering) tally.answering = c?.finish_reason != null || answerBegins(delta);
    if (typeof delta?.content === 'string' && delta.content) {
      tally.deliveredText += delta.content;
      tally.contentChunks++;
    }
    if (Array.isArray(delta?.tool_calls)) {
      for (const tc of delta.tool_calls) {
        const args = tc?.function?.arguments;
        if (typeof args === 'string') tally.deliveredText += args;
      }
    }
    // DeepSeek and Qwen stream `reasoning_content`, OpenRouter `reasoning`.
    const reasoning = delta?.reasoning_content ?? delta?.reasoning;
    if (typeof reasoning === 'string') tally.reasoningText += reasoning;
  }
}
