// Token usage and cost. Usage comes from the upstream's `usage`; when it is missing (a
// provider that omits it, a stream that broke) it is estimated with a BPE tokenizer
// (o200k, gpt-tokenizer) and the receipt says `usage_estimated`.

import type { ChatUsage } from '../protocols/canonical.js';
import type { ParsedRequest } from '../protocols/protocol.js';
import { MAX_ABS_USD, roundUsd } from '../receipts/receipt.js';
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
  counter ??= import('gpt-tokenizer').then((m) => (text: string) => countBounded(m.countTokens, text));
  return counter;
}

/**
 * The longest run the tokenizer is given as one piece. BPE merges a piece in time that grows
 * with its square (gpt-tokenizer 3.4 and 4.0 alike: 32 KB of one letter took a second, 256 KB a
 * minute, and a prompt of 4 MB would have held the event loop for hours), so longer runs of
 * letters (CJK text has no spaces), of punctuation or of whitespace (the tokenizer's pieces) are
 * counted in slices of this length: within a token or so a slice of the exact count (545 vs 550
 * tokens for 1,000 random letters).
 */
const MAX_PIECE = 64;
const LONG_RUN = new RegExp(`[\\p{L}\\p{M}]{${MAX_PIECE + 1},}|[^\\s\\p{L}\\p{M}\\p{N}]{${MAX_PIECE + 1},}|\\s{${MAX_PIECE + 1},}`, 'gu');

function countBounded(count: CountTokens, text: string): number {
  if (!mayHaveLongRun(text)) return count(text);
  let tokens = 0;
  let last = 0;
  for (const match of text.matchAll(LONG_RUN)) {
    tokens += count(text.slice(last, match.index));
    const run = match[0];
    for (let i = 0; i < run.length; i += MAX_PIECE) tokens += count(run.slice(i, i + MAX_PIECE));
    last = match.index + run.length;
  }
  return tokens + count(text.slice(last));
}

/**
 * Whether a run of letters, of punctuation or of whitespace may be longer than MAX_PIECE: a
 * pass over the characters (~4 µs a KB, the count ~25, the regular expression ~20). A non-ASCII
 * character may be any of them, so it counts for all three. Most prompts have no such run and
 * are counted as they are.
 */
function mayHaveLongRun(text: string): boolean {
  if (text.length <= MAX_PIECE) return false;
  let letters = 0;
  let others = 0;
  let spaces = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 128) {
      letters++;
      others++;
      spaces++;
    } else if ((c >= 97 && c <= 122) || (c >= 65 && c <= 90)) {
      letters++;
      others = spaces = 0;
    } else if (c <= 32) {
      spaces++;
      letters = others = 0;
    } else if (c >= 48 && c <= 57) {
      letters = others = spaces = 0; // digits are pieces of three at most
    } else {
      others++;
      letters = spaces = 0;
    }
    if (letters > MAX_PIECE || others > MAX_PIECE || spaces > MAX_PIECE) return true;
  }
  return false;
}

/**
 * The tokens a request may use: its prompt (estimated) and the completion tokens it allows
 * (the largest of max_completion_tokens, max_tokens and max_output_tokens: which one an
 * upstream obeys depends on the protocol and the provider, so a small one beside a large one
 * must not decide; or `defaultMaxTokens`) times n. Embeddings have no completion.
 */
export async function tokenCeilingOf(parsed: Pick<ParsedRequest, 'body' | 'chat'>, defaultMaxTokens: number): Promise<{ prompt: number; completion: number }> {
  const { body } = parsed;
  const prompt = await estimatePromptTokens(body);
  const positive = (v: unknown) => (typeof v === 'number' && v > 0 ? v : 0);
  const limit = Math.max(positive(body.max_completion_tokens), positive(body.max_tokens), positive(body.max_output_tokens));
  const perChoice = parsed.chat ? limit || defaultMaxTokens : 0;
  return { prompt, completion: perChoice * (positive(body.n) || 1) };
}

/**
 * The most a request can cost on a route: its token ceiling (tokenCeilingOf), the prompt at
 * the dearer of the input and cache-write prices (a provider may write the prompt to its
 * cache), at the dearest target's prices (failover may land anywhere), or at every target's
 * prices added up for a cascade, which may pay each step. Unpriced targets count as 0.
 */
export async function maxCostOf(
  targets: ReadonlyArray<{ price: PriceInput | null }>,
  parsed: Pick<ParsedRequest, 'body' | 'chat'>,
  defaultMaxTokens: number,
  paysEveryTarget = false,
): Promise<number> {
  const { prompt, completion } = await tokenCeilingOf(parsed, defaultMaxTokens);
  let max = 0;
  for (const { price } of targets) {
    if (!price) continue;
    const inputPrice = Math.max(price.inputPerMTokUsd, price.cacheWritePerMTokUsd ?? 0);
    const cost = (prompt * inputPrice + completion * price.outputPerMTokUsd) / 1e6;
    max = paysEveryTarget ? max + cost : Math.max(max, cost);
  }
  return max;
}

// What a request's non-text parts count for, as providers bill them, taking the worst case
// where it depends on what Tollgate does not look at (an image's size, a document's pages):
// an image is at most ~1,600 tokens (Anthropic scales it to ≤ 1.15 megapixels, ~750 pixels a
// token; OpenAI's high detail is ≤ 1,445: 85 + 170 for each of ≤ 8 tiles), 85 at low detail.
// Documents are counted from their size: about 3,000 tokens a PDF page (its text plus the page
// as an image) of ~30 KB, so one token for every 10 bytes; a plain-text document by its text; a
// file named only by id or URL counts as FILE_BY_REFERENCE_TOKENS. Audio is billed by duration
// (~10 tokens a second): one token for every 1,000 bytes is above that for compressed audio
// (16 KB/s) and well above for WAV (32 KB/s).
const IMAGE_TOKENS = 1_600;
const LOW_DETAIL_IMAGE_TOKENS = 85;
const FILE_BYTES_PER_TOKEN = 10;
const AUDIO_BYTES_PER_TOKEN = 1_000;
const FILE_BY_REFERENCE_TOKENS = 10_000;
const IMAGE_TYPES = new Set(['image_url', 'image', 'input_image']);
const FILE_TYPES = new Set(['file', 'document', 'input_file']);

/**
 * Prompt tokens of a request in any client protocol's shape (chat completions, Responses,
 * Messages, embeddings): its text with a BPE tokenizer, its images and files as above, and
 * OpenAI's chat overhead (~3 tokens a message and 3 for the reply priming).
 */
export function estimatePromptTokens(body: Record<string, unknown>): Promise<number> {
  let estimate = promptEstimates.get(body);
  if (!estimate) promptEstimates.set(body, (estimate = countPromptTokens(body)));
  return estimate;
}

/** One estimate a request body, however many stages ask for it (TPM, budgets, a usage estimate). */
const promptEstimates = new WeakMap<Record<string, unknown>, Promise<number>>();

async function countPromptTokens(body: Record<string, unknown>): Promise<number> {
  const count = await tokenCounter();
  const messages = Array.isArray(body.messages) ? body.messages : [];
  let tokens = 3 + 3 * messages.length;
  for (const m of messages) tokens += contentTokens(m, count);
  for (const field of ['system', 'instructions', 'input'] as const) tokens += contentTokens(body[field], count);
  // Billed as input too: tool and function definitions, and output schemas (chat
  // response_format, Responses text.format, Messages output_config.format and the beta output_format).
  for (const field of ['tools', 'functions', 'response_format', 'text', 'output_config', 'output_format'] as const) {
    const value = body[field];
    if (value && typeof value === 'object') tokens += count(JSON.stringify(value));
  }
  return tokens;
}

/** Tokens of one message, part, item or list of them (token-id arrays count one a number). */
function contentTokens(value: unknown, count: CountTokens): number {
  if (typeof value === 'string') return count(value);
  if (typeof value === 'number') return 1;
  if (Array.isArray(value)) {
    let tokens = 0;
    for (const item of value) tokens += contentTokens(item, count);
    return tokens;
  }
  if (!value || typeof value !== 'object') return 0;
  const part = value as Record<string, unknown>;
  if (IMAGE_TYPES.has(part.type as string)) return isLowDetail(part) ? LOW_DETAIL_IMAGE_TOKENS : IMAGE_TOKENS;
  if (part.type === 'input_audio') return Math.ceil((JSON.stringify(part).length * 3) / 4 / AUDIO_BYTES_PER_TOKEN);
  if (FILE_TYPES.has(part.type as string)) {
    const source = part.source as { type?: unknown; data?: unknown } | undefined;
    if (source?.type === 'text' && typeof source.data === 'string') return count(source.data);
    const size = JSON.stringify(part).length;
    return size < 1_000 ? FILE_BY_REFERENCE_TOKENS : Math.ceil((size * 3) / 4 / FILE_BYTES_PER_TOKEN);
  }
  let tokens = 0;
  // text parts, tool calls and results in each protocol's spelling; nested content (tool results).
  for (const field of ['text', 'arguments', 'output', 'content'] as const) tokens += contentTokens(part[field], count);
  if (part.tool_calls) tokens += count(JSON.stringify(part.tool_calls));
  if (part.type === 'tool_use' && part.input) tokens += count(JSON.stringify(part.input));
  return tokens;
}

function isLowDetail(part: Record<string, unknown>): boolean {
  const image = part.image_url as { detail?: unknown } | undefined;
  return (image && typeof image === 'object' ? image.detail : part.detail) === 'low';
}

export async function estimateCompletionTokens(text: string): Promise<number> {
  if (!text) return 0;
  return (await tokenCounter())(text);
}

/**
 * More tokens than any model reads or writes in one request: an upstream reporting more (or a
 * fraction, or a negative prompt) is broken or hostile, and its figures would not fit a receipt
 * (UInt32 counts, summed over a cascade's steps), which would then refuse to be written.
 */
const MAX_REPORTED_TOKENS = 100_000_000;
const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= MAX_REPORTED_TOKENS;

/**
 * Reads a canonical (OpenAI) `usage` object; null (so estimated) when absent or malformed: a
 * count that is not a whole number of tokens in range makes all of it unreadable. A negative
 * detail (cache, reasoning) reads as 0, as providers that send -1 for "none" mean.
 */
export function readUsage(usage: unknown): Omit<Usage, 'estimated'> | null {
  if (!usage || typeof usage !== 'object') return null;
  const u = usage as Record<string, unknown>;
  const prompt = u.prompt_tokens;
  if (!isCount(prompt)) return null;
  let malformed = false;
  const count = (v: unknown, negativeIsNone = true): number => {
    if (v === undefined || v === null || (negativeIsNone && typeof v === 'number' && v < 0)) return 0;
    if (isCount(v)) return v;
    malformed = true;
    return 0;
  };
  const input = u.prompt_tokens_details as { cached_tokens?: unknown; cache_write_tokens?: unknown } | null | undefined;
  const output = u.completion_tokens_details as { reasoning_tokens?: unknown } | null | undefined;
  const read = {
    promptTokens: prompt,
    completionTokens: count(u.completion_tokens, false), // -1 output tokens is not "none"
    // DeepSeek reports cache reads only in its own top-level field.
    cachedTokens: count(input?.cached_tokens ?? u.prompt_cache_hit_tokens),
    cacheWriteTokens: count(input?.cache_write_tokens),
    reasoningTokens: count(output?.reasoning_tokens),
  };
  return malformed ? null : read;
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

/** Tokens and what they cost, together (one call's, or a sum of calls'). */
export interface Billed {
  usage: Usage;
  cost: number | null;
}

/** The sum of calls billed together (a cascade's steps, calls that answered nothing). */
export function billedTotal(parts: readonly Billed[]): Billed {
  const usage: Usage = { promptTokens: 0, completionTokens: 0, cachedTokens: 0, cacheWriteTokens: 0, reasoningTokens: 0, estimated: false };
  let cost: number | null = 0;
  for (const p of parts) {
    usage.promptTokens += p.usage.promptTokens;
    usage.completionTokens += p.usage.completionTokens;
    usage.cachedTokens += p.usage.cachedTokens;
    usage.cacheWriteTokens += p.usage.cacheWriteTokens;
    usage.reasoningTokens += p.usage.reasoningTokens;
    usage.estimated ||= p.usage.estimated;
    // An unpriced part makes the total unknown: never a fake sum.
    cost = cost === null || p.cost === null ? null : cost + p.cost;
  }
  return { usage, cost: cost === null ? null : receiptCost(cost) };
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
  return receiptCost(usd);
}

/**
 * A cost no receipt can hold (prices stored before setPrice bounded them, figures at the bound
 * of what an upstream may report, summed over a cascade) is recorded as unknown: the receipt
 * refused it, and the request was then answered with no receipt at all.
 */
function receiptCost(usd: number): number | null {
  return Math.abs(usd) < MAX_ABS_USD ? roundUsd(usd) : null;
}
