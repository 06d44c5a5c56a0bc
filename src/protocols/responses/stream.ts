// Canonical chunks as the Responses API's typed stream: response.created / in_progress,
// then per output item `output_item.added`, its deltas and `…done` events, and finally
// response.completed (or response.incomplete) carrying the whole response with its usage;
// every event has a `sequence_number`. No `[DONE]`.
import type { GatewayError } from '../../gateway/errors.js';
import type { ChatChunk, ChatUsage } from '../canonical.js';
import type { StreamEncoder } from '../protocol.js';
import { sseEvent } from '../sse.js';
import {
  type FunctionCallItem,
  functionCallItemId,
  type MessageItem,
  messageItemId,
  type OutputItem,
  type ResponseObject,
  type ResponseShell,
  responseObject,
  statusOf,
} from './render.js';

interface OpenMessage {
  item: MessageItem;
  outputIndex: number;
  /** The content part being written, if any: its index in item.content. */
  part: number | null;
}

interface OpenCall {
  item: FunctionCallItem;
  outputIndex: number;
  done: boolean;
}

export class ResponsesEncoder implements StreamEncoder {
  private seq = 0;
  private started = false;
  private readonly output: OutputItem[] = [];
  private message: OpenMessage | null = null;
  private messages = 0;
  /** By the chunk's tool-call index. */
  private readonly calls = new Map<number, OpenCall>();
  private finishReason: string | null = null;

  constructor(
    private readonly shell: ResponseShell,
    /** Sees the final response object (stored for previous_response_id and GET). */
    private readonly onFinal: (response: ResponseObject) => void = () => undefined,
  ) {}

  push(chunk: ChatChunk): string {
    let out = '';
    if (!this.started) {
      this.started = true;
      if (chunk.model) this.shell.model = chunk.model;
      const response = this.snapshot('in_progress');
      out += this.event('response.created', { response });
      out += this.event('response.in_progress', { response });
    }
    const choice = Array.isArray(chunk.choices) ? chunk.choices.find((c) => (c?.index ?? 0) === 0) : undefined;
    if (!choice) return out;
    const delta = choice.delta ?? {};
    if (typeof delta.content === 'string' && delta.content) out += this.text('output_text', delta.content);
    if (typeof delta.refusal === 'string' && delta.refusal) out += this.text('refusal', delta.refusal);
    for (const tc of Array.isArray(delta.tool_calls) ? delta.tool_calls : []) out += this.toolCall(tc);
    if (choice.finish_reason) this.finishReason = choice.finish_reason;
    return out;
  }

  close(usage: ChatUsage | null): string {
    let out = this.opening();
    out += this.closeMessage();
    for (const call of this.calls.values()) out += this.closeCall(call);
    const { status, incomplete } = statusOf(this.finishReason);
    const response = this.snapshot(status, { usage, incomplete });
    this.onFinal(response);
    return out + this.event(status === 'completed' ? 'response.completed' : 'response.incomplete', { response });
  }

  /** A stream that broke before its first event (begun with keep-alives) still opens first: the SDKs expect response.created. */
  fail(error: GatewayError): string {
    const out = this.opening();
    const response = this.snapshot('failed', { error: { code: 'server_error', message: error.message } });
    return out + this.event('response.failed', { response });
  }

  /** response.created and in_progress, unless they went out already. */
  private opening(): string {
    return this.started ? '' : this.push({ id: '', object: 'chat.completion.chunk', created: 0, model: this.shell.model, choices: [] });
  }

  private text(kind: 'output_text' | 'refusal', delta: string): string {
    let out = '';
    if (!this.message) {
      const item: MessageItem = { type: 'message', id: messageItemId(this.shell.id, this.messages++), status: 'in_progress', role: 'assistant', content: [] };
      this.message = { item, outputIndex: this.output.length, part: null };
      this.output.push(item);
      out += this.event('response.output_item.added', { output_index: this.message.outputIndex, item: { ...item, content: [] } });
    }
    const m = this.message;
    const current = m.part === null ? null : m.item.content[m.part]!;
    if (current?.type !== kind) {
      out += this.closePart();
      m.part = m.item.content.length;
      const part = kind === 'output_text' ? { type: kind, text: '', annotations: [], logprobs: [] } : { type: kind, refusal: '' };
      m.item.content.push(part);
      out += this.event('response.content_part.added', { item_id: m.item.id, output_index: m.outputIndex, content_index: m.part, part: { ...part } });
    }
    const part = m.item.content[m.part!]!;
    if (part.type === 'output_text') {
      part.text += delta;
      return out + this.event('response.output_text.delta', { item_id: m.item.id, output_index: m.outputIndex, content_index: m.part, delta, logprobs: [] });
    }
    part.refusal += delta;
    return out + this.event('response.refusal.delta', { item_id: m.item.id, output_index: m.outputIndex, content_index: m.part, delta });
  }

  private toolCall(tc: NonNullable<ChatChunk['choices'][number]['delta']['tool_calls']>[number]): string {
    let out = '';
    const index = typeof tc.index === 'number' ? tc.index : this.calls.size;
    let call = this.calls.get(index);
    if (!call) {
      out += this.closeMessage();
      const item: FunctionCallItem = {
        type: 'function_call',
        id: functionCallItemId(this.shell.id, this.calls.size),
        call_id: tc.id ?? '',
        name: tc.function?.name ?? '',
        arguments: '',
        status: 'in_progress',
      };
      call = { item, outputIndex: this.output.length, done: false };
      this.calls.set(index, call);
      this.output.push(item);
      out += this.event('response.output_item.added', { output_index: call.outputIndex, item: { ...item } });
    } else {
      if (tc.id && !call.item.call_id) call.item.call_id = tc.id;
      if (tc.function?.name && call.item.name !== tc.function.name) call.item.name += tc.function.name;
    }
    const args = tc.function?.arguments;
    if (typeof args === 'string' && args) {
      call.item.arguments += args;
      out += this.event('response.function_call_arguments.delta', { item_id: call.item.id, output_index: call.outputIndex, delta: args });
    }
    return out;
  }

  private closePart(): string {
    const m = this.message;
    if (!m || m.part === null) return '';
    const part = m.item.content[m.part]!;
    const where = { item_id: m.item.id, output_index: m.outputIndex, content_index: m.part };
    const done =
      part.type === 'output_text'
        ? this.event('response.output_text.done', { ...where, text: part.text, logprobs: [] })
        : this.event('response.refusal.done', { ...where, refusal: part.refusal });
    m.part = null;
    return done + this.event('response.content_part.done', { ...where, part: { ...part } });
  }

  private closeMessage(): string {
    const m = this.message;
    if (!m) return '';
    const out = this.closePart();
    m.item.status = statusOf(this.finishReason).status;
    this.message = null;
    return out + this.event('response.output_item.done', { output_index: m.outputIndex, item: { ...m.item, content: m.item.content.map((p) => ({ ...p })) } });
  }

  private closeCall(call: OpenCall): string {
    if (call.done) return '';
    call.done = true;
    call.item.status = 'completed';
    const { item } = call;
    return (
      this.event('response.function_call_arguments.done', { item_id: item.id, output_index: call.outputIndex, name: item.name, arguments: item.arguments }) +
      this.event('response.output_item.done', { output_index: call.outputIndex, item: { ...item } })
    );
  }

  private snapshot(
    status: ResponseObject['status'],
    extra: { usage?: ChatUsage | null; incomplete?: { reason: string } | null; error?: { code: string; message: string } } = {},
  ) {
    return responseObject(this.shell, {
      status,
      output: status === 'in_progress' ? [] : this.output.map((item) => structuredClone(item)),
      usage: extra.usage ?? null,
      incomplete: extra.incomplete ?? null,
      error: extra.error ?? null,
    });
  }

  private event(type: string, fields: Record<string, unknown>): string {
    return sseEvent(type, { type, sequence_number: this.seq++, ...fields });
  }
}
