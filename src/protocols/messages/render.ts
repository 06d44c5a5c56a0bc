// Canonical answers as Anthropic `message` objects (JSON answers, and the blocks a stream
// opens).
import type { ChatCompletion, ToolCall } from '../canonical.js';
import { messagesUsage, stopReasonOf } from './wire.js';

export type ContentBlock = { type: 'text'; text: string } | { type: 'tool_use'; id: string; name: string; input: Record<string, unknown> };

/** A tool call's arguments as the `input` object of a tool_use block ({} when they are not an object, e.g. cut by max_tokens). */
export function toolInput(args: string): Record<string, unknown> {
  try {
    const input = JSON.parse(args || '{}');
    return input && typeof input === 'object' && !Array.isArray(input) ? input : {};
  } catch {
    return {};
  }
}

export function toolUseBlock(call: ToolCall): ContentBlock {
  return { type: 'tool_use', id: call.id, name: call.function.name, input: toolInput(call.function.arguments) };
}

/** A complete answer (its first choice: Messages has no `n`) as the JSON a non-streaming request gets. */
export function renderMessage(answer: ChatCompletion, id: string, requestedModel: string) {
  const choice = answer.choices[0];
  const content: ContentBlock[] = [];
  const text = (choice?.message.content ?? '') + (choice?.message.refusal ?? '');
  if (text) content.push({ type: 'text', text });
  for (const call of choice?.message.tool_calls ?? []) content.push(toolUseBlock(call));
  return {
    id,
    type: 'message' as const,
    role: 'assistant' as const,
    model: answer.model || requestedModel,
    content,
    stop_reason: stopReasonOf(choice?.finish_reason),
    stop_sequence: null,
    usage: messagesUsage(answer.usage),
  };
}
