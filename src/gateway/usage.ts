// Token usage and cost. Usage comes from the upstream's `usage`; when it is missing (a
// provider that omits it, a stream that broke) it is estimated with a BPE tokenizer
// (o200k, gpt-tokenizer) and the receipt says `usage_estimated`.

import type { ChatUsage } from '../protocols/canonical.js';
import { roundUsd } from '../receipts/receipt.js';
import type { PriceInput } from '../routing/catalog.js';

/**
 * Token usage in one meaning whatever the upstream (DESIGN §6): prompt = all input tokens,
 * cache reads and writes included; cached = cache reads; cacheWrite = cache writes;
 * completion = all output tokens, reasoning included; reasoning = the reasoning part.
 */
export interface Usage {
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
  cacheWriteTokens: number;
  reasoningTokens: number;
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
 * dearest target's prices (failover may land anywhere), or at every target's prices added up
 * for a cascade, which may pay each step. Unpriced targets count as 0.
 */
export async function maxCostOf(
  targets: ReadonlyArray<{ price: PriceInput | null }>,
  body: Record<string, unknown>,
  defaultMaxTokens: number,
  paysEveryTarget = false,
): Promise<number> {
  const prompt = Array.isArray(body.messages) ? await estimatePromptTokens(body) : Math.ceil(JSON.stringify(body.input ?? '').length / 2);
  const positive = (v: unknown) => (typeof v === 'number' && v > 0 ? v : undefined);
  const perChoice = Array.isArray(body.messages) ? (positive(body.max_completion_tokens) ?? positive(body.max_tokens) ?? defaultMaxTokens) : 0;
  const completion = perChoice * (positive(body.n) ?? 1);
  let max = 0;
  for (const { price } of targets) {
    if (!price) continue;
    const cost = (prompt * price.inputPerMTokUsd + completion * price.outputPerMTokUsd) / 1e6;
    max = paysEveryTarget ? max + cost : Math.max(max, cost);
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

/** Reads a canonical (OpenAI) `usage` object; null when absent or malformed. */
export function readUsage(usage: unknown): Omit<Usage, 'estimated'> | null {
  if (!usage || typeof usage !== 'object') return null;
  const u = usage as Record<string, unknown>;
  const prompt = u.prompt_tokens;
  if (typeof prompt !== 'number') return null;
  const count = (v: unknown) => (typeof v === 'number' && v >= 0 ? v : 0);
  const input = u.prompt_tokens_details as { cached_tokens?: unknown; cache_write_tokens?: unknown } | null | undefined;
  const output = u.completion_tokens_details as { reasoning_tokens?: unknown } | null | undefined;
  return {
    promptTokens: prompt,
    completionTokens: count(u.completion_tokens),
    cachedTokens: count(input?.cached_tokens),
    cacheWriteTokens: count(input?.cache_write_tokens),
    reasoningTokens: count(output?.reasoning_tokens),
  };
}

/** Normalised usage back in the canonical shape (what a protocol's closing events report). */
export function toChatUsage(usage: Usage): ChatUsage {
  return {
    prompt_tokens: usage.promptTokens,
    completion_tokens: usage.completionTokens,
    total_tokens: usage.promptTokens + usage.completionTokens,
    prompt_tokens_details: { cached_tokens: usage.cachedTokens, ...(usage.cacheWriteTokens ? { cache_write_tokens: usage.cacheWriteTokens } : {}) },
    completion_tokens_details: { reasoning_tokens: usage.reasoningTokens },
  };
}

/**
 * Cost in USD, or null when the model has no price (unpriced is never free): uncached input
 * at the input price, cache reads at the cached-input price, cache writes at the cache-write
 * price (each falling back to the input price), output at the output price.
 */
export function costOf(usage: Usage, price: PriceInput | null): number | null {
  if (!price) return null;
  const cached = Math.min(usage.cachedTokens, usage.promptTokens);
  const written = Math.min(usage.cacheWriteTokens, usage.promptTokens - cached);
  const cachedRate = price.cachedInputPerMTokUsd ?? price.inputPerMTokUsd;
  const writeRate = price.cacheWritePerMTokUsd ?? price.inputPerMTokUsd;
  const usd =
    ((usage.promptTokens - cached - written) * price.inputPerMTokUsd +
      cached * cachedRate +
      written * writeRate +
      usage.completionTokens * price.outputPerMTokUsd) /
    1e6;
  return roundUsd(usd);
}
