// Canonical answers as Responses API objects: the `response` object (JSON answers, the
// final streaming event, stored responses) and its output items.
import type { ChatCompletion, ChatUsage } from '../canonical.js';
import type { ResponsesBody } from './request.js';

export type ResponseStatus = 'completed' | 'incomplete' | 'failed' | 'in_progress';

export interface OutputText {
  type: 'output_text';
  text: string;
  annotations: unknown[];
  logprobs: unknown[];
}
export interface OutputRefusal {
  type: 'refusal';
  refusal: string;
}
export interface MessageItem {
  type: 'message';
  id: string;
  status: 'in_progress' | 'completed' | 'incomplete';
  role: 'assistant';
  content: Array<OutputText | OutputRefusal>;
}
export interface FunctionCallItem {
  type: 'function_call';
  id: string;
  call_id: string;
  name: string;
  arguments: string;
  status: 'in_progress' | 'completed' | 'incomplete';
}
export type OutputItem = MessageItem | FunctionCallItem;

export interface ResponseShell {
  id: string;
  created: number;
  model: string;
  body: ResponsesBody;
}

/** The ids of a response's items derive from its own: stable, unique, nothing to remember. */
export const messageItemId = (responseId: string, index: number) => `msg_${responseId.slice(5)}${index ? `_${index}` : ''}`;
export const functionCallItemId = (responseId: string, index: number) => `fc_${responseId.slice(5)}_${index}`;

/** How a finish reason ends a response. */
export function statusOf(finishReason: string | null | undefined): { status: 'completed' | 'incomplete'; incomplete: { reason: string } | null } {
  if (finishReason === 'length') return { status: 'incomplete', incomplete: { reason: 'max_output_tokens' } };
  if (finishReason === 'content_filter') return { status: 'incomplete', incomplete: { reason: 'content_filter' } };
  return { status: 'completed', incomplete: null };
}

/** The output items of a complete answer (the first choice: Responses has no `n`). */
export function outputItems(answer: ChatCompletion, responseId: string): OutputItem[] {
  const choice = answer.choices[0];
  if (!choice) return [];
  const itemStatus = statusOf(choice.finish_reason).status;
  const items: OutputItem[] = [];
  const content: Array<OutputText | OutputRefusal> = [];
  if (choice.message.content) content.push({ type: 'output_text', text: choice.message.content, annotations: [], logprobs: [] });
  if (choice.message.refusal) content.push({ type: 'refusal', refusal: choice.message.refusal });
  if (content.length) items.push({ type: 'message', id: messageItemId(responseId, 0), status: itemStatus, role: 'assistant', content });
  (choice.message.tool_calls ?? []).forEach((call, i) => {
    items.push({
      type: 'function_call',
      id: functionCallItemId(responseId, i),
      call_id: call.id,
      name: call.function.name,
      arguments: call.function.arguments,
      status: 'completed',
    });
  });
  return items;
}

export function responseUsage(usage: ChatUsage | null | undefined) {
  if (!usage) return null;
  return {
    input_tokens: usage.prompt_tokens,
    input_tokens_details: { cached_tokens: usage.prompt_tokens_details?.cached_tokens ?? 0 },
    output_tokens: usage.completion_tokens,
    output_tokens_details: { reasoning_tokens: usage.completion_tokens_details?.reasoning_tokens ?? 0 },
    total_tokens: usage.total_tokens ?? usage.prompt_tokens + usage.completion_tokens,
  };
}

/** The `response` object, echoing the request's settings as OpenAI does. */
export function responseObject(
  shell: ResponseShell,
  state: {
    status: ResponseStatus;
    output: OutputItem[];
    usage: ChatUsage | null;
    incomplete?: { reason: string } | null;
    error?: { code: string; message: string } | null;
  },
) {
  const { body } = shell;
  return {
    id: shell.id,
    object: 'response' as const,
    created_at: shell.created,
    status: state.status,
    background: false,
    error: state.error ?? null,
    incomplete_details: state.incomplete ?? null,
    instructions: body.instructions ?? null,
    max_output_tokens: body.max_output_tokens ?? null,
    metadata: body.metadata ?? {},
    model: shell.model,
    output: state.output,
    parallel_tool_calls: body.parallel_tool_calls ?? true,
    previous_response_id: body.previous_response_id ?? null,
    reasoning: { effort: body.reasoning?.effort ?? null, summary: null },
    store: body.store !== false,
    temperature: body.temperature ?? 1,
    text: { format: body.text?.format ?? { type: 'text' } },
    tool_choice: body.tool_choice ?? 'auto',
    tools: body.tools ?? [],
    top_p: body.top_p ?? 1,
    truncation: body.truncation ?? 'disabled',
    usage: responseUsage(state.usage),
    user: body.user ?? null,
  };
}

export type ResponseObject = ReturnType<typeof responseObject>;

/** A complete answer as the JSON a non-streaming Responses request gets. */
export function renderResponse(answer: ChatCompletion, shell: ResponseShell): ResponseObject {
  const { status, incomplete } = statusOf(answer.choices[0]?.finish_reason);
  return responseObject(shell, { status, incomplete, output: outputItems(answer, shell.id), usage: answer.usage ?? null });
}
