// Token usage and cost. Usage comes from the upstream's `usage`; when it is missing (a
// provider that omits it, a stream that broke) it is estimated with a BPE tokenizer
// (o200k, gpt-tokenizer) and the receipt says `usage_estimated`.
import type { PriceInput } from '../routing/catalog.js';
import { roundUsd } from '../receipts/receipt.js';

export interface Usage {
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
  estimated: boolean;
}

type CountTokens = (text: string) => number;
let counter: Promise<CountTokens> | null = null;

/** The tokenizer's tables are large: loaded on first need, not at start. */
function tokenCounter(): Promise<CountTokens> {
  counter ??= import('gpt-tokenizer').then((m) => (text: string) => m.countTokens(text));
  return counter;
}

/**
 * The most a request can cost on a route: prompt tokens (estimated) plus the completion
 * tokens it allows (max_completion_tokens, max_tokens, or `defaultMaxTokens`) times n, at the
 * dearest target's prices (failover may land anywhere). Unpriced targets count as 0.
 */
export async function maxCostOf(targets: ReadonlyArray<{ price: PriceInput | null }>, body: Record<string, unknown>, defaultMaxTokens: number): Promise<number> {
  const prompt = Array.isArray(body.messages) ? await estimatePromptTokens(body) : Math.ceil(JSON.stringify(body.input ?? '').length / 2);
  const positive = (v: unknown) => (typeof v === 'number' && v > 0 ? v : undefined);
  const perChoice = Array.isArray(body.messages) ? (positive(body.max_completion_tokens) ?? positive(body.max_tokens) ?? defaultMaxTokens) : 0;
  const completion = perChoice * (positive(body.n) ?? 1);
  let max = 0;
  for (const { price } of targets) {
    if (price) max = Math.max(max, (prompt * price.inputPerMTokUsd + completion * price.outputPerMTokUsd) / 1e6);
  }
  return max;
}

/** OpenAI's chat format adds ~3 tokens per message and 3 for the reply priming. */
export async function estimatePromptTokens(body: Record<string, unknown>): Promise<number> {
  const count = await tokenCounter();
  const messages = Array.isArray(body.messages) ? body.messages : [];
  let tokens = 3;
  for (const m of messages) {
    tokens += 3;
    const content = (m as { content?: unknown })?.content;
    if (typeof content === 'string') tokens += count(content);
    else if (Array.isArray(content)) {
      for (const part of content) {
        const text = (part as { text?: unknown })?.text;
        if (typeof text === 'string') tokens += count(text);
      }
    }
    const toolCalls = (m as { tool_calls?: unknown })?.tool_calls;
    if (toolCalls) tokens += count(JSON.stringify(toolCalls));
  }
  if (body.tools) tokens += count(JSON.stringify(body.tools));
  if (typeof body.input === 'string') tokens += count(body.input);
  else if (Array.isArray(body.input)) for (const s of body.input) if (typeof s === 'string') tokens += count(s);
  return tokens;
}

export async function estimateCompletionTokens(text: string): Promise<number> {
  if (!text) return 0;
  return (await tokenCounter())(text);
}

/** Reads an OpenAI `usage` object; null when absent or malformed. */
export function readUsage(usage: unknown): Omit<Usage, 'estimated'> | null {
  if (!usage || typeof usage !== 'object') return null;
  const u = usage as Record<string, unknown>;
  const prompt = u.prompt_tokens;
  if (typeof prompt !== 'number') return null;
  const completion = typeof u.completion_tokens === 'number' ? u.completion_tokens : 0;
  const details = u.prompt_tokens_details as { cached_tokens?: unknown } | undefined;
  const cached = typeof details?.cached_tokens === 'number' ? details.cached_tokens : 0;
  return { promptTokens: prompt, completionTokens: completion, cachedTokens: cached };
}

/** Cost in USD, or null when the model has no price (unpriced is never free). */
export function costOf(usage: Usage, price: PriceInput | null): number | null {
  if (!price) return null;
  const cached = Math.min(usage.cachedTokens, usage.promptTokens);
  const cachedRate = price.cachedInputPerMTokUsd ?? price.inputPerMTokUsd;
  const usd =
    ((usage.promptTokens - cached) * price.inputPerMTokUsd + cached * cachedRate + usage.completionTokens * price.outputPerMTokUsd) / 1e6;
  return roundUsd(usd);
}
