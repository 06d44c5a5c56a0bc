// Canonical chunks as the Messages API's event stream: message_start and a ping, then per
// content block content_block_start, its deltas (text_delta, input_json_delta) and
// content_block_stop, and finally message_delta (stop reason and usage) and message_stop.
// Usage is known only at the end of a translated stream, so message_start reports zeros and
// message_delta the whole usage (current SDKs take input tokens from either).
import type { GatewayError } from '../../gateway/errors.js';
import type { ChatChunk, ChatUsage, ToolCallDelta } from '../canonical.js';
import type { StreamEncoder } from '../protocol.js';
import { sseEvent } from '../sse.js';
import { messagesErrorBody, messagesUsage, stopReasonOf } from './wire.js';

const event = (type: string, fields: Record<string, unknown> = {}) => sseEvent(type, { type, ...fields });

export class MessagesEncoder implements StreamEncoder {
  private started = false;
  /** The open content block: its index, and which tool call it is (null: a text block). */
  private open: { index: number; tool: number | null } | null = null;
  private blocks = 0;
  /** Tool-call index → its block's index. */
  private readonly toolBlocks = new Map<number, number>();
  /**
   * Tool calls whose id or name has not come yet (an upstream may send them after the first
   * delta): a tool_use block names both at its start, and the SDK takes them from there only.
   * Opened once both are known, or when anything else has to be sent.
   */
  private readonly pendingCalls = new Map<number, { id: string; name: string; args: string }>();
  private finishReason: string | null = null;

  constructor(
    private readonly id: string,
    private model: string,
  ) {}

  push(chunk: ChatChunk): string {
    if (!Array.isArray(chunk.choices)) return ''; // an upstream error object: the pipeline decides
    let out = this.start(chunk.model);
    const choice = chunk.choices.find((c) => (c?.index ?? 0) === 0);
    if (!choice) return out;
    const delta = choice.delta ?? {};
    for (const text of [delta.content, delta.refusal]) if (typeof text === 'string' && text) out += this.text(text);
    for (const tc of Array.isArray(delta.tool_calls) ? delta.tool_calls : []) out += this.toolCall(tc);
    if (choice.finish_reason) this.finishReason = choice.finish_reason;
    return out;
  }

  close(usage: ChatUsage | null): string {
    return (
      this.start('') +
      this.openPendingCalls() +
      this.closeBlock() +
      event('message_delta', { delta: { stop_reason: stopReasonOf(this.finishReason), stop_sequence: null }, usage: messagesUsage(usage) }) +
      event('message_stop')
    );
  }

  fail(error: GatewayError): string {
    return sseEvent('error', messagesErrorBody(error));
  }

  private start(model: string | undefined): string {
    if (this.started) return '';
    this.started = true;
    if (model) this.model = model;
    const message = {
      id: this.id,
      type: 'message',
      role: 'assistant',
      model: this.model,
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: messagesUsage(null),
    };
    return event('message_start', { message }) + event('ping');
  }

  private text(text: string): string {
    let out = this.openPendingCalls();
    if (!this.open || this.open.tool !== null) out += this.openBlock(null, { type: 'text', text: '' });
    return out + event('content_block_delta', { index: this.open!.index, delta: { type: 'text_delta', text } });
  }

  private toolCall(tc: ToolCallDelta): string {
    const key = typeof tc.index === 'number' ? tc.index : this.toolBlocks.size + this.pendingCalls.size;
    const args = tc.function?.arguments;
    const index = this.toolBlocks.get(key);
    // A late delta for a call whose block is closed still goes to that block's index.
    if (index !== undefined) return typeof args === 'string' && args ? this.argumentsDelta(index, args) : '';
    let call = this.pendingCalls.get(key);
    if (!call) this.pendingCalls.set(key, (call = { id: '', name: '', args: '' }));
    call.id ||= tc.id ?? '';
    call.name ||= tc.function?.name ?? '';
    if (typeof args === 'string') call.args += args;
    return call.id && call.name ? this.openPendingCalls(key) : '';
  }

  /** Opens the pending tool calls that came before `upTo` (all of them without it), and it. */
  private openPendingCalls(upTo?: number): string {
    let out = '';
    for (const [key, call] of this.pendingCalls) {
      this.pendingCalls.delete(key);
      // One that never got an id still needs one the client can answer with.
      out += this.openBlock(key, { type: 'tool_use', id: call.id || `toolu_${this.id}_${key}`, name: call.name, input: {} });
      this.toolBlocks.set(key, this.open!.index);
      if (call.args) out += this.argumentsDelta(this.open!.index, call.args);
      if (key === upTo) break;
    }
    return out;
  }

  private argumentsDelta(index: number, json: string): string {
    return event('content_block_delta', { index, delta: { type: 'input_json_delta', partial_json: json } });
  }

  private openBlock(tool: number | null, block: Record<string, unknown>): string {
    const out = this.closeBlock();
    this.open = { index: this.blocks++, tool };
    return out + event('content_block_start', { index: this.open.index, content_block: block });
  }

  private closeBlock(): string {
    if (!this.open) return '';
    const { index } = this.open;
    this.open = null;
    return event('content_block_stop', { index });
  }
}
