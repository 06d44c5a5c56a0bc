// List prices shipped with Tollgate, as published by each vendor around 2025-10-01.
//
// READ BEFORE RELYING ON THESE NUMBERS
//   - They are public list prices per million tokens as of the `asOf` date of each entry,
//     written down from the vendors' pricing pages named in `source`. They were NOT fetched
//     when this file was written (no network), and vendors change prices and release new
//     models often: check them against the source page, and set your own with `setPrice` (or
//     the declarative file) where they differ. Negotiated discounts, free tiers, batch and
//     off-peak prices are not modelled.
//   - Amounts are in the currency the vendor lists (`currency`); CNY prices are converted with
//     the snapshot's `usdRates` when imported, and the rate used is stored with the price.
//   - Several vendors price by tier (prompt length, reply length, thinking mode). A flat price
//     can only hold one tier: the entry uses the tier most chat traffic falls in and says
//     which in `note`.
//   - `cachedInputPerMTok` is null where the vendor's cache discount is not a plain per-token
//     price (or we do not know it well enough): cached tokens are then billed at the input
//     price, which overstates rather than understates the cost.
//   - `cacheWritePerMTok` is set where the vendor bills writing the prompt cache above the
//     input price (Anthropic: 1.25 × input for the default 5-minute cache; 1-hour cache writes
//     list 2 × input and are billed at the 5-minute price here, which understates them).
import type { PriceSnapshot, SnapshotEntry } from './snapshot.js';

const OPENAI = 'https://openai.com/api/pricing/';
const OPENROUTER = 'https://openrouter.ai/models';
const DEEPSEEK = 'https://api-docs.deepseek.com/quick_start/pricing';
const ARK = 'https://www.volcengine.com/product/ark';
const QWEN = 'https://help.aliyun.com/zh/model-studio/models';
const ZHIPU = 'https://bigmodel.cn/pricing';
const ANTHROPIC = 'https://docs.anthropic.com/en/docs/about-claude/pricing';
const AS_OF = '2025-10-01';

export const SNAPSHOT_2025_10: PriceSnapshot = {
  id: '2025-10',
  asOf: AS_OF,
  // USD per unit of currency. About 7.1 CNY per USD in October 2025; two digits is all the
  // precision this rate deserves (it moves more than that within a month).
  usdRates: { CNY: 0.14 },
  entries: [
    // --- OpenAI (USD) --------------------------------------------------------------------
    { kind: 'OPENAI', model: 'gpt-5', currency: 'USD', inputPerMTok: 1.25, outputPerMTok: 10, cachedInputPerMTok: 0.125, source: OPENAI, asOf: AS_OF },
    { kind: 'OPENAI', model: 'gpt-5-mini', currency: 'USD', inputPerMTok: 0.25, outputPerMTok: 2, cachedInputPerMTok: 0.025, source: OPENAI, asOf: AS_OF },
    { kind: 'OPENAI', model: 'gpt-5-nano', currency: 'USD', inputPerMTok: 0.05, outputPerMTok: 0.4, cachedInputPerMTok: 0.005, source: OPENAI, asOf: AS_OF },
    { kind: 'OPENAI', model: 'gpt-4.1', currency: 'USD', inputPerMTok: 2, outputPerMTok: 8, cachedInputPerMTok: 0.5, source: OPENAI, asOf: AS_OF },
    { kind: 'OPENAI', model: 'gpt-4.1-mini', currency: 'USD', inputPerMTok: 0.4, outputPerMTok: 1.6, cachedInputPerMTok: 0.1, source: OPENAI, asOf: AS_OF },
    { kind: 'OPENAI', model: 'gpt-4.1-nano', currency: 'USD', inputPerMTok: 0.1, outputPerMTok: 0.4, cachedInputPerMTok: 0.025, source: OPENAI, asOf: AS_OF },
    { kind: 'OPENAI', model: 'gpt-4o', currency: 'USD', inputPerMTok: 2.5, outputPerMTok: 10, cachedInputPerMTok: 1.25, source: OPENAI, asOf: AS_OF },
    { kind: 'OPENAI', model: 'gpt-4o-mini', currency: 'USD', inputPerMTok: 0.15, outputPerMTok: 0.6, cachedInputPerMTok: 0.075, source: OPENAI, asOf: AS_OF },
    { kind: 'OPENAI', model: 'o3', currency: 'USD', inputPerMTok: 2, outputPerMTok: 8, cachedInputPerMTok: 0.5, source: OPENAI, asOf: AS_OF },
    { kind: 'OPENAI', model: 'o4-mini', currency: 'USD', inputPerMTok: 1.1, outputPerMTok: 4.4, cachedInputPerMTok: 0.275, source: OPENAI, asOf: AS_OF },
    {
      kind: 'OPENAI',
      model: 'text-embedding-3-small',
      currency: 'USD',
      inputPerMTok: 0.02,
      outputPerMTok: 0,
      cachedInputPerMTok: null,
      source: OPENAI,
      asOf: AS_OF,
    },
    {
      kind: 'OPENAI',
      model: 'text-embedding-3-large',
      currency: 'USD',
      inputPerMTok: 0.13,
      outputPerMTok: 0,
      cachedInputPerMTok: null,
      source: OPENAI,
      asOf: AS_OF,
    },

    // --- OpenRouter (USD; passes the model vendor's price through) -----------------------
    {
      kind: 'OPENROUTER',
      model: 'openai/gpt-5',
      currency: 'USD',
      inputPerMTok: 1.25,
      outputPerMTok: 10,
      cachedInputPerMTok: 0.125,
      source: OPENROUTER,
      asOf: AS_OF,
    },
    {
      kind: 'OPENROUTER',
      model: 'openai/gpt-4.1',
      currency: 'USD',
      inputPerMTok: 2,
      outputPerMTok: 8,
      cachedInputPerMTok: 0.5,
      source: OPENROUTER,
      asOf: AS_OF,
    },
    {
      kind: 'OPENROUTER',
      model: 'openai/gpt-4.1-mini',
      currency: 'USD',
      inputPerMTok: 0.4,
      outputPerMTok: 1.6,
      cachedInputPerMTok: 0.1,
      source: OPENROUTER,
      asOf: AS_OF,
    },
    {
      kind: 'OPENROUTER',
      model: 'openai/gpt-4o',
      currency: 'USD',
      inputPerMTok: 2.5,
      outputPerMTok: 10,
      cachedInputPerMTok: 1.25,
      source: OPENROUTER,
      asOf: AS_OF,
    },
    {
      kind: 'OPENROUTER',
      model: 'openai/gpt-4o-mini',
      currency: 'USD',
      inputPerMTok: 0.15,
      outputPerMTok: 0.6,
      cachedInputPerMTok: 0.075,
      source: OPENROUTER,
      asOf: AS_OF,
    },
    {
      kind: 'OPENROUTER',
      model: 'anthropic/claude-sonnet-4',
      currency: 'USD',
      inputPerMTok: 3,
      outputPerMTok: 15,
      cachedInputPerMTok: 0.3,
      cacheWritePerMTok: 3.75,
      source: OPENROUTER,
      asOf: AS_OF,
      note: 'prompts up to 200k tokens; cache writes are billed only when the usage reports them',
    },
    {
      kind: 'OPENROUTER',
      model: 'anthropic/claude-3.5-haiku',
      currency: 'USD',
      inputPerMTok: 0.8,
      outputPerMTok: 4,
      cachedInputPerMTok: 0.08,
      cacheWritePerMTok: 1,
      source: OPENROUTER,
      asOf: AS_OF,
      note: 'cache writes are billed only when the usage reports them',
    },
    {
      kind: 'OPENROUTER',
      model: 'google/gemini-2.5-pro',
      currency: 'USD',
      inputPerMTok: 1.25,
      outputPerMTok: 10,
      cachedInputPerMTok: null,
      source: OPENROUTER,
      asOf: AS_OF,
      note: 'prompts up to 200k tokens (longer prompts are priced higher)',
    },
    {
      kind: 'OPENROUTER',
      model: 'google/gemini-2.5-flash',
      currency: 'USD',
      inputPerMTok: 0.3,
      outputPerMTok: 2.5,
      cachedInputPerMTok: null,
      source: OPENROUTER,
      asOf: AS_OF,
    },

    // --- Anthropic (USD), the Messages API's model ids and aliases ------------------------
    // Sonnet 4 and 4.5 list higher prices for prompts over 200k tokens (1M context beta).
    ...anthropic(
      ['claude-sonnet-4-5', 'claude-sonnet-4-5-20250929', 'claude-sonnet-4-20250514', 'claude-3-7-sonnet-20250219'],
      3,
      15,
      'prompts up to 200k tokens',
    ),
    ...anthropic(['claude-opus-4-1', 'claude-opus-4-1-20250805', 'claude-opus-4-20250514'], 15, 75),
    ...anthropic(['claude-3-5-haiku-latest', 'claude-3-5-haiku-20241022'], 0.8, 4),
    ...anthropic(['claude-3-haiku-20240307'], 0.25, 1.25),

    // --- DeepSeek (USD list; the CNY list is 2 / 3 / 0.2 CNY) -----------------------------
    // Prices of DeepSeek-V3.2-Exp, in effect from 2025-09-29; both endpoints serve it.
    {
      kind: 'DEEPSEEK',
      model: 'deepseek-chat',
      currency: 'USD',
      inputPerMTok: 0.28,
      outputPerMTok: 0.42,
      cachedInputPerMTok: 0.028,
      source: DEEPSEEK,
      asOf: AS_OF,
    },
    {
      kind: 'DEEPSEEK',
      model: 'deepseek-reasoner',
      currency: 'USD',
      inputPerMTok: 0.28,
      outputPerMTok: 0.42,
      cachedInputPerMTok: 0.028,
      source: DEEPSEEK,
      asOf: AS_OF,
    },

    // --- Volcengine ARK / Doubao (CNY) ------------------------------------------------------
    // Endpoint ids (ep-…) are per account and cannot be priced from a list: price them yourself.
    {
      kind: 'ARK',
      model: 'doubao-seed-1-6-250615',
      currency: 'CNY',
      inputPerMTok: 0.8,
      outputPerMTok: 8,
      cachedInputPerMTok: 0.16,
      source: ARK,
      asOf: AS_OF,
      note: 'tier: prompt up to 32k tokens, reply over 200 tokens (replies up to 200 tokens list 2 CNY); cache storage is billed by the hour, not modelled',
    },
    {
      kind: 'ARK',
      model: 'doubao-seed-1-6-flash-250615',
      currency: 'CNY',
      inputPerMTok: 0.15,
      outputPerMTok: 1.5,
      cachedInputPerMTok: 0.03,
      source: ARK,
      asOf: AS_OF,
      note: 'tier: prompt up to 32k tokens; cache storage is billed by the hour, not modelled',
    },
    {
      kind: 'ARK',
      model: 'doubao-1-5-pro-32k-250115',
      currency: 'CNY',
      inputPerMTok: 0.8,
      outputPerMTok: 2,
      cachedInputPerMTok: 0.16,
      source: ARK,
      asOf: AS_OF,
      note: 'cache storage is billed by the hour, not modelled',
    },
    {
      kind: 'ARK',
      model: 'doubao-1-5-lite-32k-250115',
      currency: 'CNY',
      inputPerMTok: 0.3,
      outputPerMTok: 0.6,
      cachedInputPerMTok: 0.06,
      source: ARK,
      asOf: AS_OF,
      note: 'cache storage is billed by the hour, not modelled',
    },

    // --- Qwen on Alibaba Cloud Model Studio / DashScope, China (Beijing) region (CNY) -------
    { kind: 'QWEN', model: 'qwen-max', currency: 'CNY', inputPerMTok: 2.4, outputPerMTok: 9.6, cachedInputPerMTok: null, source: QWEN, asOf: AS_OF },
    {
      kind: 'QWEN',
      model: 'qwen-plus',
      currency: 'CNY',
      inputPerMTok: 0.8,
      outputPerMTok: 2,
      cachedInputPerMTok: null,
      source: QWEN,
      asOf: AS_OF,
      note: 'non-thinking mode, prompt up to 128k tokens (thinking-mode output lists 8 CNY)',
    },
    {
      kind: 'QWEN',
      model: 'qwen-turbo',
      currency: 'CNY',
      inputPerMTok: 0.3,
      outputPerMTok: 0.6,
      cachedInputPerMTok: null,
      source: QWEN,
      asOf: AS_OF,
      note: 'non-thinking mode (thinking-mode output lists 3 CNY)',
    },
    { kind: 'QWEN', model: 'qwen-long', currency: 'CNY', inputPerMTok: 0.5, outputPerMTok: 2, cachedInputPerMTok: null, source: QWEN, asOf: AS_OF },

    // --- Zhipu GLM on open.bigmodel.cn (CNY) -------------------------------------------------
    {
      kind: 'ZHIPU',
      model: 'glm-4.5',
      currency: 'CNY',
      inputPerMTok: 3,
      outputPerMTok: 14,
      cachedInputPerMTok: null,
      source: ZHIPU,
      asOf: AS_OF,
      note: 'tier: prompt up to 32k tokens, reply over 200 tokens',
    },
    {
      kind: 'ZHIPU',
      model: 'glm-4.5-air',
      currency: 'CNY',
      inputPerMTok: 0.8,
      outputPerMTok: 6,
      cachedInputPerMTok: null,
      source: ZHIPU,
      asOf: AS_OF,
      note: 'tier: prompt up to 32k tokens, reply over 200 tokens',
    },
    { kind: 'ZHIPU', model: 'glm-4-plus', currency: 'CNY', inputPerMTok: 5, outputPerMTok: 5, cachedInputPerMTok: null, source: ZHIPU, asOf: AS_OF },
    { kind: 'ZHIPU', model: 'glm-4-air-250414', currency: 'CNY', inputPerMTok: 0.5, outputPerMTok: 0.5, cachedInputPerMTok: null, source: ZHIPU, asOf: AS_OF },
    {
      kind: 'ZHIPU',
      model: 'glm-4-flash-250414',
      currency: 'CNY',
      inputPerMTok: 0,
      outputPerMTok: 0,
      cachedInputPerMTok: null,
      source: ZHIPU,
      asOf: AS_OF,
      note: 'listed as free: a real price of 0, unlike an unpriced model',
    },
  ],
};

/** Anthropic's list: cache reads at 0.1 × input, (5-minute) cache writes at 1.25 × input. */
function anthropic(models: string[], input: number, output: number, note?: string): SnapshotEntry[] {
  return models.map((model) => ({
    kind: 'ANTHROPIC',
    model,
    currency: 'USD',
    inputPerMTok: input,
    outputPerMTok: output,
    cachedInputPerMTok: Number((input * 0.1).toFixed(4)),
    cacheWritePerMTok: Number((input * 1.25).toFixed(4)),
    source: ANTHROPIC,
    asOf: AS_OF,
    ...(note ? { note } : {}),
  }));
}
