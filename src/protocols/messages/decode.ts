// Anthropic Messages answers read back into the canonical form: a `message` object as a
// chat.completion, and the event stream as chat.completion.chunks (for clients of another
// protocol, for the receipt's tally and for the cache). Upstream data is untrusted: every
// field is read defensively.
import type { ChatChunk, ChatCompletion, ChatUsage, ChunkChoice, ToolCall } from '../canonical.js';
import { eventData, NOT_JSON_ERROR, SseFramer } from '../sse.js';
import type { ChunkDecoder } from '../transcode.js';
import { canonicalUsage, finishReasonOf, type MessagesUsage } from './wire.js';

/** A complete Messages answer as canonical. Throws a SyntaxError when it is not one. */
export function messageToCompletion(json: unknown): ChatCompletion {
  const m = json as Record<string, any> | null;
  if (!m || typeof m !== 'object' || !Array.isArray(m.content)) throw new SyntaxError('upstream answer is not a message');
  let text = '';
  const calls: ToolCall[] = [];
  for (const block of m.content) {
    if (block?.type === 'text' && typeof block.text === 'string') text += block.text;
    else if (block?.type === 'tool_use') {
      calls.push({ id: String(block.id ?? ''), type: 'function', function: { name: String(block.name ?? ''), arguments: JSON.stringify(block.input ?? {}) } });
    }
    // thinking blocks and server tools' blocks have no canonical place
  }
  return {
    id: String(m.id ?? ''),
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model: String(m.model ?? ''),
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content: text || (calls.length ? null : ''), ...(calls.length ? { tool_calls: calls } : {}) },
        finish_reason: finishReasonOf(m.stop_reason),
        logprobs: null,
      },
    ],
    ...(m.usage && typeof m.usage === 'object' ? { usage: canonicalUsage(m.usage) } : {}),
  };
}

/**
 * One Messages stream's events, each read into canonical chunks. The assistant's role chunk
 * waits for the first content block, so an error event right after message_start (Anthropic
 * answers overload that way) still comes before anything a client would see.
 */
export class MessagesEventReader {
  done = false;
  private head: Omit<ChatChunk, 'choices' | 'usage'> = { id: '', object: 'chat.completion.chunk', created: Math.floor(Date.now() / 1000), model: '' };
  private usage: MessagesUsage = {};
  private sawUsage = false;
  /** The prompt's usage from message_start (its output_tokens is a placeholder). */
  promptUsage: ChatUsage | null = null;
  /** The thinking streamed so far (StreamTally.reasoningText): no canonical chunk carries it. */
  reasoning = '';
  private roleSent = false;
  /** Content block index → tool-call index. */
  private readonly tools = new Map<number, number>();
  /** Tool-call blocks whose arguments are still empty. */
  private readonly argumentless = new Set<number>();

  /** The canonical chunks of one event's data (an `event:` line only repeats data's `type`). */
  read(data: any): ChatChunk[] {
    switch (data?.type) {
      case 'message_start': {
        const m = data.message ?? {};
        this.head = { ...this.head, id: String(m.id ?? ''), model: String(m.model ?? '') };
        this.addUsage(m.usage);
        // Only a prompt the upstream counted: one that reports its input only at the end (some
        // Anthropic-compatible servers) would otherwise bill a cut stream's prompt as 0.
        const prompt = canonicalUsage({ ...this.usage, output_tokens: 0 });
        if (prompt.prompt_tokens > 0) this.promptUsage = prompt;
        return [];
      }
      case 'content_block_start': {
        const block = data.content_block ?? {};
        if (block.type === 'text') return block.text ? this.delta({ content: block.text }) : this.delta({});
        if (block.type !== 'tool_use') return [];
        const index = this.tools.size;
        this.tools.set(data.index, index);
        // Deferred tool calls may come with their whole input at once.
        const input = block.input && typeof block.input === 'object' && Object.keys(block.input).length ? JSON.stringify(block.input) : '';
        if (!input) this.argumentless.add(data.index);
        return this.delta({
          tool_calls: [{ index, id: String(block.id ?? ''), type: 'function', function: { name: String(block.name ?? ''), arguments: input } }],
        });
      }
      case 'content_block_delta': {
        const d = data.delta ?? {};
        if (d.type === 'text_delta' && typeof d.text === 'string') return this.delta({ content: d.text });
        if (d.type === 'thinking_delta' && typeof d.thinking === 'string') this.reasoning += d.thinking;
        const tool = this.tools.get(data.index);
        if (d.type === 'input_json_delta' && tool !== undefined && typeof d.partial_json === 'string') {
          if (d.partial_json) this.argumentless.delete(data.index);
          return this.delta({ tool_calls: [{ index: tool, function: { arguments: d.partial_json } }] });
        }
        return []; // thinking, signatures, citations
      }
      case 'message_delta': {
        this.addUsage(data.usage);
        const chunks = this.delta({}, finishReasonOf(data.delta?.stop_reason));
        if (this.sawUsage) chunks.push({ ...this.head, choices: [], usage: canonicalUsage(this.usage) });
        return chunks;
      }
      case 'message_stop':
        this.done = true;
        return [];
      case 'error':
        return [{ ...this.head, error: data.error ?? { type: 'api_error', message: 'upstream stream error' } } as unknown as ChatChunk];
      case 'content_block_stop': {
        // A tool called without arguments streams `input: {}` and an empty partial_json: its
        // arguments are `{}`, as the answer in one piece says, never "" (which JSON.parse refuses).
        const tool = this.tools.get(data.index);
        if (tool === undefined || !this.argumentless.delete(data.index)) return [];
        return this.delta({ tool_calls: [{ index: tool, function: { arguments: '{}' } }] });
      }
      default:
        return []; // ping, events added later
    }
  }

  /** Usage counters are cumulative totals: later values replace earlier ones. */
  private addUsage(u: unknown): void {
    if (!u || typeof u !== 'object') return;
    this.sawUsage = true;
    for (const [k, v] of Object.entries(u)) if (v !== null && v !== undefined) (this.usage as Record<string, unknown>)[k] = v;
  }

  private delta(delta: ChunkChoice['delta'], finish: ChunkChoice['finish_reason'] = null): ChatChunk[] {
    const chunks: ChatChunk[] = [];
    if (!this.roleSent) {
      this.roleSent = true;
      chunks.push({ ...this.head, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null, logprobs: null }] });
    }
    if (finish || Object.keys(delta).length) chunks.push({ ...this.head, choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }] });
    return chunks;
  }
}

/** An Anthropic upstream's stream as canonical chunks (the adapter's decoder). */
export class MessagesDecoder implements ChunkDecoder {
  private readonly framer = new SseFramer();
  private readonly reader = new MessagesEventReader();

  get done(): boolean {
    return this.reader.done;
  }

  get promptUsage(): ChatUsage | null {
    return this.reader.promptUsage;
  }

  get reasoning(): string {
    return this.reader.reasoning;
  }

  push(text: string): ChatChunk[] {
    return this.decode(this.framer.push(text));
  }

  end(): ChatChunk[] {
    const rest = this.framer.rest();
    return rest === null ? [] : this.decode([rest]);
  }

  private decode(events: string[]): ChatChunk[] {
    const chunks: ChatChunk[] = [];
    for (const event of events) {
      const data = parseData(event);
      if (data !== undefined) chunks.push(...this.reader.read(data));
    }
    return chunks;
  }
}

/** An event's JSON data; undefined for comments and keep-alives; data not JSON reads as an error event. */
export function parseData(event: string): unknown {
  const data = eventData(event);
  if (data === null) return undefined;
  try {
    return JSON.parse(data);
  } catch {
    return NOT_JSON_EVENT;
  }
}

const NOT_JSON_EVENT = { type: 'error', error: NOT_JSON_ERROR };
