// What the router knows of a request, whichever protocol it came in: the facts a rule's CEL
// reads (DESIGN §5) and what the prompt classifier reads, both from the canonical form.
import type { IncomingHttpHeaders } from 'node:http';
import type { ChatMessage, ChatRequest } from '../protocols/canonical.js';
import type { Endpoint } from '../protocols/protocol.js';
import type { ClassifierInput } from './classifier.js';
import { NowFacts, RequestFacts } from './rules.js';

/** One request as the router sees it (built by the pipeline, or by explainRoute from a body). */
export interface DecisionRequest {
  endpoint: Endpoint;
  /** As the client sent it. */
  model: string;
  chat: ChatRequest | null;
  stream: boolean;
  feature: string | null;
  taskId: string | null;
  taskType: string | null;
  endUser: string | null;
  teamId: string;
  team: string;
  apiKeyId: string;
  apiKeyName: string;
  requestId: string;
  headers: IncomingHttpHeaders;
  metadata: Record<string, unknown>;
}

/** Never visible to rules: credentials, and what would let a rule fingerprint one. */
const HIDDEN_HEADERS = new Set(['authorization', 'x-api-key', 'proxy-authorization', 'cookie', 'set-cookie']);

export function requestFacts(r: DecisionRequest, withPromptTokens: boolean): RequestFacts {
  const headers = new Map<string, string>();
  for (const [name, value] of Object.entries(r.headers)) {
    if (value === undefined || HIDDEN_HEADERS.has(name)) continue;
    headers.set(name, Array.isArray(value) ? value.join(', ') : value);
  }
  const metadata = new Map<string, string>();
  for (const [k, v] of Object.entries(r.metadata)) {
    if (v !== undefined && v !== null) metadata.set(k, typeof v === 'string' ? v : JSON.stringify(v));
  }
  const chat = r.chat;
  return new RequestFacts(
    r.model,
    r.endpoint,
    r.feature ?? '',
    r.taskId ?? '',
    r.taskType ?? '',
    r.team,
    r.teamId,
    r.apiKeyName,
    r.endUser ?? '',
    headers,
    metadata,
    BigInt(withPromptTokens && chat ? estimatePromptTokens(chat) : 0),
    BigInt(chat?.messages.length ?? 0),
    (chat?.tools?.length ?? 0) > 0,
    chat ? hasImages(chat.messages) : false,
    r.stream,
    jsonModeOf(chat),
    BigInt(maxTokensOf(chat)),
  );
}

export function nowFacts(now: Date): NowFacts {
  return new NowFacts(BigInt(now.getUTCHours()), BigInt(now.getUTCDay()));
}

export function classifierInput(chat: ChatRequest | null): ClassifierInput {
  const messages = (chat?.messages ?? []).map((m) => ({
    role: m.role === 'developer' ? ('system' as const) : m.role,
    text: textOf(m.content),
  }));
  return {
    messages,
    hasTools: (chat?.tools?.length ?? 0) > 0,
    hasImages: chat ? hasImages(chat.messages) : false,
    jsonMode: jsonModeOf(chat),
    maxTokens: maxTokensOf(chat),
  };
}

/**
 * Prompt tokens, estimated without a tokenizer (a rule's threshold does not need exact
 * counts, and tokenizing a long prompt costs milliseconds): Latin text runs about four
 * characters a token, CJK and other scripts about one and a half; three tokens of overhead
 * per message.
 */
export function estimatePromptTokens(chat: ChatRequest): number {
  let ascii = 0;
  let other = 0;
  const count = (text: string) => {
    for (let i = 0; i < text.length; i++) {
      if (text.charCodeAt(i) < 0x80) ascii++;
      else other++;
    }
  };
  for (const m of chat.messages) {
    count(textOf(m.content));
    for (const call of m.tool_calls ?? []) count(call.function.arguments);
  }
  if (chat.tools?.length) count(JSON.stringify(chat.tools));
  return Math.ceil(ascii / 4 + other / 1.5) + 3 * chat.messages.length;
}

function textOf(content: ChatMessage['content']): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  let text = '';
  for (const part of content) if (part && part.type === 'text' && typeof part.text === 'string') text += part.text;
  return text;
}

function hasImages(messages: ChatMessage[]): boolean {
  return messages.some((m) => Array.isArray(m.content) && m.content.some((p) => p?.type === 'image_url'));
}

function jsonModeOf(chat: ChatRequest | null): 'none' | 'json_object' | 'json_schema' {
  const type = chat?.response_format?.type;
  return type === 'json_object' || type === 'json_schema' ? type : 'none';
}

function maxTokensOf(chat: ChatRequest | null): number {
  const v = chat?.max_completion_tokens ?? chat?.max_tokens;
  return typeof v === 'number' && v > 0 ? Math.floor(v) : 0;
}
