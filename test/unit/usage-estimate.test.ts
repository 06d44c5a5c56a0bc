// The prompt estimate budgets reserve on (and receipts fall back to when an upstream omits
// usage), in each client protocol's own shape: text through the tokenizer, images and
// documents at what providers bill for them, the completion limit each protocol spells.
// And the usage upstreams report, in their own spellings.
import { describe, expect, it } from 'vitest';
import { usageOf } from '../../src/gateway/attempt.js';
import { costOf, estimateCompletionTokens, estimatePromptTokens, maxCostOf, readUsage } from '../../src/gateway/usage.js';

const TEXT = 'Describe what you see, in one short paragraph.';
const PNG = `data:image/png;base64,${'A'.repeat(40_000)}`;
const PDF = 'J'.repeat(400_000); // base64 of a ~300 KB document
const PRICE = [{ price: { inputPerMTokUsd: 1e6, outputPerMTokUsd: 0 } }] as any; // $1 a prompt token

async function extra(body: Record<string, unknown>, textOnly: Record<string, unknown>): Promise<number> {
  return (await estimatePromptTokens(body)) - (await estimatePromptTokens(textOnly));
}

describe('prompt estimate', () => {
  it('counts an image at most providers bill for one, whatever the protocol spells it', async () => {
    const chat = (parts: unknown[]) => ({ messages: [{ role: 'user', content: [{ type: 'text', text: TEXT }, ...parts] }] });
    const messages = (parts: unknown[]) => ({ max_tokens: 100, messages: [{ role: 'user', content: [{ type: 'text', text: TEXT }, ...parts] }] });
    const responses = (parts: unknown[]) => ({ input: [{ role: 'user', content: [{ type: 'input_text', text: TEXT }, ...parts] }] });

    expect(await extra(chat([{ type: 'image_url', image_url: { url: PNG } }]), chat([]))).toBe(1_600);
    expect(await extra(chat([{ type: 'image_url', image_url: { url: PNG, detail: 'low' } }]), chat([]))).toBe(85);
    const anthropicImage = { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'A'.repeat(40_000) } };
    expect(await extra(messages([anthropicImage]), messages([]))).toBe(1_600);
    expect(await extra(responses([{ type: 'input_image', image_url: PNG, detail: 'low' }]), responses([]))).toBe(85);
    // The text itself is counted in each shape, not skipped.
    expect(await estimatePromptTokens(responses([]))).toBeGreaterThan(10);
  });

  it('counts a document by its size, and one named only by id as a fixed large share', async () => {
    const doc = { type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: PDF } };
    const withDoc = { messages: [{ role: 'user', content: [doc, { type: 'text', text: TEXT }] }] };
    const textOnly = { messages: [{ role: 'user', content: [{ type: 'text', text: TEXT }] }] };
    const docTokens = await extra(withDoc, textOnly);
    expect(docTokens).toBeGreaterThan(29_000); // ~300 KB at 10 bytes a token
    expect(docTokens).toBeLessThan(31_000);
    const byId = { input: [{ role: 'user', content: [{ type: 'input_file', file_id: 'file-abc' }] }] };
    expect(await estimatePromptTokens(byId)).toBeGreaterThanOrEqual(10_000);
    // A plain-text document counts its text; audio is billed by duration, not near its bytes.
    const text = { type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'word '.repeat(3_000) } };
    expect(await extra({ messages: [{ role: 'user', content: [text] }] }, { messages: [{ role: 'user', content: [] }] })).toBeGreaterThanOrEqual(3_000);
    const minuteOfMp3 = { type: 'input_audio', input_audio: { format: 'mp3', data: 'A'.repeat(1_280_000) } }; // ~960 KB
    const audio = await extra({ messages: [{ role: 'user', content: [minuteOfMp3] }] }, { messages: [{ role: 'user', content: [] }] });
    expect(audio).toBeGreaterThan(600); // ~10 tokens a second
    expect(audio).toBeLessThan(2_000);
  });

  it('counts system prompts, tool calls and tool results in each shape', async () => {
    const long = 'word '.repeat(200);
    const base = { messages: [{ role: 'user', content: 'hi' }] };
    expect(await extra({ ...base, system: long }, base)).toBeGreaterThanOrEqual(200);
    expect(await extra({ ...base, system: [{ type: 'text', text: long }] }, base)).toBeGreaterThanOrEqual(200);
    expect(await extra({ ...base, instructions: long }, base)).toBeGreaterThanOrEqual(200);
    const toolResult = { role: 'user', content: [{ type: 'tool_result', tool_use_id: 't1', content: [{ type: 'text', text: long }] }] };
    expect(await extra({ messages: [...base.messages, toolResult] }, base)).toBeGreaterThanOrEqual(200);
    const call = { type: 'function_call', call_id: 'c1', name: 'f', arguments: JSON.stringify({ q: long }) };
    const output = { type: 'function_call_output', call_id: 'c1', output: long };
    expect(await extra({ input: ['hi', call, output] }, { input: ['hi'] })).toBeGreaterThanOrEqual(400);
  });
});

describe('most a request can cost', () => {
  it("reserves a multimodal request's images, and each protocol's completion limit", async () => {
    const body = {
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: TEXT },
            { type: 'image_url', image_url: { url: PNG } },
          ],
        },
      ],
    };
    const textOnly = { messages: [{ role: 'user', content: [{ type: 'text', text: TEXT }] }] };
    const usd = async (b: Record<string, unknown>) => maxCostOf(PRICE, { body: b, chat: b as any }, 0);
    expect((await usd(body)) - (await usd(textOnly))).toBe(1_600);

    const output = [{ price: { inputPerMTokUsd: 0, outputPerMTokUsd: 1e6 } }] as any; // $1 an output token
    const responses = { input: 'hi', max_output_tokens: 300 };
    expect(await maxCostOf(output, { body: responses, chat: {} as any }, 4096)).toBe(300);
    // Embeddings have no completion; token-id inputs count one token a number.
    const embeddings = { input: [[1, 2, 3, 4, 5]] };
    expect(await maxCostOf(output, { body: embeddings, chat: null }, 4096)).toBe(0);
    expect(await estimatePromptTokens(embeddings)).toBe(3 + 5);
  });
});

describe('what a client cannot reserve around', () => {
  const output = [{ price: { inputPerMTokUsd: 0, outputPerMTokUsd: 1e6 } }] as any; // $1 an output token
  it('the largest completion limit counts, not the first one spelled', async () => {
    for (const body of [
      { messages: [{ role: 'user', content: 'hi' }], max_tokens: 64_000, max_completion_tokens: 1 },
      { input: 'hi', max_output_tokens: 64_000, max_tokens: 1 },
    ]) {
      expect(await maxCostOf(output, { body, chat: {} as any }, 4096)).toBe(64_000);
    }
  });

  it('output schemas and legacy functions are input; a prompt the provider may cache is priced at the cache write', async () => {
    const schema = {
      type: 'object',
      properties: Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`field_${i}`, { type: 'string', description: TEXT }])),
    };
    const plain = { messages: [{ role: 'user', content: 'hi' }] };
    for (const extra of [
      { response_format: { type: 'json_schema', json_schema: { name: 's', schema } } },
      { functions: [{ name: 'f', parameters: schema }] },
      { text: { format: { type: 'json_schema', name: 's', schema } } },
      { output_format: { type: 'json_schema', schema } },
      { output_config: { format: { type: 'json_schema', schema } } },
    ]) {
      expect((await estimatePromptTokens({ ...plain, ...extra })) - (await estimatePromptTokens(plain))).toBeGreaterThan(500);
    }
    const prompt = await estimatePromptTokens(plain);
    const input = [{ price: { inputPerMTokUsd: 1e6, outputPerMTokUsd: 0, cacheWritePerMTokUsd: 1.25e6 } }] as any;
    expect(await maxCostOf(input, { body: plain, chat: {} as any }, 0)).toBeCloseTo(prompt * 1.25, 6);
  });
});

describe('reported usage', () => {
  it("reads DeepSeek's cache hits (its own top-level field) and bills them at the cached price", () => {
    const usage = readUsage({ prompt_tokens: 10_000, prompt_cache_hit_tokens: 9_000, prompt_cache_miss_tokens: 1_000, completion_tokens: 100 });
    expect(usage?.cachedTokens).toBe(9_000);
    const price = { version: 1, inputPerMTokUsd: 0.27, cachedInputPerMTokUsd: 0.07, outputPerMTokUsd: 1.1 } as any;
    expect(costOf({ ...usage!, estimated: false }, price)).toBeCloseTo((1_000 * 0.27 + 9_000 * 0.07 + 100 * 1.1) / 1e6, 12);
    // OpenAI's nested field wins where both are present.
    expect(readUsage({ prompt_tokens: 10, prompt_tokens_details: { cached_tokens: 4 }, prompt_cache_hit_tokens: 9 })?.cachedTokens).toBe(4);
  });
});

describe('usage estimated from what an answer generated', () => {
  it('counts its reasoning as output, as providers bill it, beside a prompt reported or estimated', async () => {
    const parsed = { body: { messages: [{ role: 'user', content: TEXT }] } } as any;
    const reasoning = 'First I weigh the question, then I check each option against the facts. '.repeat(20);
    const thought = await estimateCompletionTokens(reasoning);
    const answer = await estimateCompletionTokens('Yes.');
    expect(thought).toBeGreaterThan(200);
    const estimated = await usageOf(null, parsed, () => ({ text: 'Yes.', reasoning }));
    expect(estimated).toMatchObject({ completionTokens: answer + thought, reasoningTokens: thought, estimated: true });
    expect(estimated.promptTokens).toBe(await estimatePromptTokens(parsed.body));
    const prompt = { promptTokens: 42, completionTokens: 0, cachedTokens: 7, cacheWriteTokens: 0, reasoningTokens: 0 };
    expect(await usageOf(null, parsed, () => ({ text: 'Yes.', reasoning }), prompt)).toMatchObject({
      promptTokens: 42,
      cachedTokens: 7,
      completionTokens: answer + thought,
      reasoningTokens: thought,
    });
  });
});

describe('the tokenizer on long runs', () => {
  it('counts a run of letters without a space in slices: linear (a 4 MiB one held the event loop for hours), within a token a slice', async () => {
    const { countTokens } = await import('gpt-tokenizer');
    // Without the slices this one call would not return before the test's timeout.
    expect(await estimateCompletionTokens('a'.repeat(4 << 20))).toBe((4 << 20) / 8);
    // Punctuation, whitespace and newlines are pieces too, and punctuation mixing ASCII and not.
    for (const run of ['!', ' ', '\n', '!¡']) expect(await estimateCompletionTokens(run.repeat(1 << 19))).toBeGreaterThan(0);
    const letters = Array.from({ length: 1_000 }, (_, i) => 'abcdefghijklmnopqrstuvwxyz'[(i * 7919 + (i >> 3) * 31) % 26]).join('');
    const sliced = await estimateCompletionTokens(letters);
    expect(Math.abs(sliced - countTokens(letters))).toBeLessThanOrEqual(1_000 / 64);
    // Text with spaces, and CJK shorter than a slice, are counted as they are.
    const prose = 'The quick brown fox jumps over the lazy dog, twice: 12345. '.repeat(50);
    expect(await estimateCompletionTokens(prose)).toBe(countTokens(prose));
    expect(await estimateCompletionTokens('你好，世界。')).toBe(countTokens('你好，世界。'));
  });
});
