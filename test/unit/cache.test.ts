// Cache building blocks without the proxy: the cacheability rule and keys, text analysis,
// vector indexes, replay, and the answer store (TTL on a controlled clock, eviction, log).
import { appendFile, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LocalEmbedder } from '../../src/cache/embedders.js';
import { asksForUnreplayable, canonicalQuestion, isSampled, planCache } from '../../src/cache/policy.js';
import { completionChunks, StreamAssembler } from '../../src/protocols/assemble.js';
import { ChatEncoder } from '../../src/protocols/chat.js';

/** The chat SSE events a cache replay writes (before [DONE]). */
const replaySse = (completion: Parameters<typeof completionChunks>[0], id: string, includeUsage: boolean) =>
  completionChunks(completion, id)
    .map((c) => new ChatEncoder(includeUsage).push(c))
    .filter(Boolean);

import { AnswerStore, type CachedAnswer } from '../../src/cache/store.js';
import { analyze, detailsAgree } from '../../src/cache/text.js';
import { DenseIndex, SparseIndex } from '../../src/cache/vector-index.js';
import { CacheStage } from '../../src/gateway/cache.js';
import { UpstreamClient } from '../../src/gateway/upstream.js';
import type { Route } from '../../src/routing/catalog.js';
import { TargetHealth } from '../../src/routing/health.js';

const route = (cache: Partial<Route['cache']> = {}): Route => ({
  name: 'r',
  strategy: 'PRIORITY',
  retries: 0,
  timeoutMs: null,
  cache: { mode: 'EXACT', ttlSeconds: null, similarityThreshold: null, embeddingModel: null, cacheSampled: false, cacheToolCalls: false, ...cache },
  targets: [],
  pinned: false,
  rules: [],
  rulesReadPromptTokens: false,
  accept: [],
});
const chat = (content: string, extra: Record<string, unknown> = {}) => ({ model: 'r', temperature: 0, messages: [{ role: 'user', content }], ...extra });

describe('cache policy', () => {
  it('treats requests as sampled unless temperature is 0 or a seed is given, and n ≤ 1', () => {
    expect(isSampled({})).toBe(true);
    expect(isSampled({ temperature: 1 })).toBe(true);
    expect(isSampled({ temperature: 0 })).toBe(false);
    expect(isSampled({ temperature: 0.8, seed: 7 })).toBe(false);
    expect(isSampled({ temperature: 0, n: 2 })).toBe(true);
    // A seed counts only where every target honours one (Anthropic has none).
    expect(isSampled({ temperature: 0.8, seed: 7 }, false)).toBe(true);
    const anthropic = { ...route(), targets: [{ provider: { kind: 'ANTHROPIC' } }] } as unknown as Route;
    expect(planCache('chat', 't', anthropic, { model: 'r', seed: 7, messages: [] }, undefined)).toBeNull();
    expect(planCache('chat', 't', route(), { model: 'r', seed: 7, messages: [] }, undefined)).not.toBeNull();
    // What a replay would lose is not cached: log probabilities, audio, Responses extras.
    for (const extra of [
      { logprobs: true },
      { logprobs: true, top_logprobs: 3 },
      { modalities: ['text', 'audio'] },
      { include: ['message.output_text.logprobs'] },
      { reasoning: { effort: 'low', summary: 'auto' } },
    ]) {
      expect(asksForUnreplayable(chat('a', extra))).toBe(true);
    }
    for (const extra of [{ logprobs: false }, { include: [] }, { reasoning: { effort: 'low' } }, { modalities: ['text'] }]) {
      expect(asksForUnreplayable(chat('a', extra))).toBe(false);
    }
    expect(planCache('chat', 't', route(), { model: 'r', messages: [] }, undefined)).toBeNull();
    expect(planCache('chat', 't', route({ cacheSampled: true }), { model: 'r', messages: [] }, undefined)).not.toBeNull();
    // Embeddings are deterministic: always cacheable.
    expect(planCache('embeddings', 't', route(), { model: 'r', input: 'x' }, undefined)).not.toBeNull();
  });

  it('keys ignore key order, bookkeeping fields and text-part arrays, but not anything that changes the answer', () => {
    const key = (body: Record<string, unknown>, team = 't') => planCache('chat', team, route(), body, undefined)!.exactKey;
    const base = key(chat('hello'));
    expect(key({ messages: [{ content: 'hello', role: 'user' }], temperature: 0, model: 'other-alias' })).toBe(base);
    expect(key(chat('hello', { user: 'u1', metadata: { a: 1 }, stream: true, stream_options: { include_usage: true } }))).toBe(base);
    expect(
      key({
        ...chat('x'),
        messages: [
          {
            role: 'user',
            content: [
              { type: 'text', text: 'hel' },
              { type: 'text', text: 'lo' },
            ],
          },
        ],
      }),
    ).toBe(base);
    expect(key(chat('hello'), 'other-team')).not.toBe(base);
    for (const change of [{ max_tokens: 5 }, { tools: [] }, { response_format: { type: 'json_object' } }, { top_p: 0.5 }, { seed: 1 }]) {
      expect(key(chat('hello', change)), JSON.stringify(change)).not.toBe(base);
    }
    expect(canonicalQuestion(chat('hello', { user: 'x' }))).not.toHaveProperty('user');
  });

  it('honours no-cache and no-store; other header values mean the default', () => {
    expect(planCache('chat', 't', route(), chat('a'), 'no-store')).toBeNull();
    expect(planCache('chat', 't', route(), chat('a'), 'no-cache')).toMatchObject({ lookup: false, store: true });
    // Repeated (Node joins them) or listed: the strictest directive counts, never the default.
    expect(planCache('chat', 't', route(), chat('a'), 'no-store, no-store')).toBeNull();
    expect(planCache('chat', 't', route(), chat('a'), 'no-cache, no-store')).toBeNull();
    expect(planCache('chat', 't', route(), chat('a'), 'No-Cache, no-cache')).toMatchObject({ lookup: false, store: true });
    expect(planCache('chat', 't', route(), chat('a'), 'default')).toMatchObject({ lookup: true, store: true });
    expect(planCache('chat', 't', route(), chat('a'), '"; DROP TABLE x; --')).toMatchObject({ lookup: true });
    expect(planCache('chat', 't', route({ mode: 'OFF' }), chat('a'), undefined)).toBeNull();
  });

  it('semantic plans separate the last user turn from its context', () => {
    const p1 = planCache('chat', 't', route({ mode: 'SEMANTIC' }), chat('What is 2+2?'), undefined)!;
    const p2 = planCache(
      'chat',
      't',
      route({ mode: 'SEMANTIC' }),
      {
        ...chat('x'),
        messages: [
          { role: 'system', content: 'Be brief' },
          { role: 'user', content: 'What is 2+2?' },
        ],
      },
      undefined,
    )!;
    expect(p1.semantic).toBe(true);
    expect(p1.lastUserText).toBe('What is 2+2?');
    expect(p1.context).not.toBe(p2.context);
    // The last turn is the assistant's: nothing to match semantically.
    const p3 = planCache('chat', 't', route({ mode: 'SEMANTIC' }), { ...chat('x'), messages: [{ role: 'assistant', content: 'hi' }] }, undefined)!;
    expect(p3.semantic).toBe(false);
  });
});

describe('text analysis', () => {
  const agree = (a: string, b: string) => detailsAgree(analyze(a), analyze(b));
  it('agrees across case, punctuation, filler and clause order', () => {
    expect(agree('What is the capital of France?', 'hey, what is the capital of france')).toBe(true);
    expect(agree('In Python, how do I reverse a list?', 'How do I reverse a list in Python?')).toBe(true);
    expect(agree('Give me five ideas', 'give me 5 ideas please')).toBe(true);
    expect(agree("Why isn't it working?", 'why is it not working')).toBe(true);
  });
  it('disagrees on numbers, negations, units, dates, names and roles', () => {
    expect(agree('What is 15% of 240?', 'What is 15% of 250?')).toBe(false);
    expect(agree('Is it safe?', 'Is it not safe?')).toBe(false);
    expect(agree('Convert 5 km to miles', 'Convert 5 miles to km')).toBe(false);
    expect(agree('Meeting on Monday', 'Meeting on Tuesday')).toBe(false);
    expect(agree('Who founded Microsoft?', 'Who founded Apple?')).toBe(false);
    expect(agree('Migrate from MySQL to PostgreSQL', 'Migrate from PostgreSQL to MySQL')).toBe(false);
    expect(agree('Convert 3pm Eastern to London time', 'Convert 3am Eastern to London time')).toBe(false);
    expect(agree('What is the difference between == and === in JS?', 'What is the difference between = and == in JS?')).toBe(false);
    // One-character operators and a number's sign change the answer too.
    expect(agree('What is 17*23?', 'What is 17+23?')).toBe(false);
    expect(agree('Is 5 < 3?', 'Is 5 > 3?')).toBe(false);
    expect(agree('what is -5 squared', 'what is 5 squared')).toBe(false);
    // …while a hyphen is not a sign, and the same sum asked twice agrees.
    expect(agree('sales in 2020-2021', 'sales in 2020-2021 please')).toBe(true);
    expect(agree('What is 17*23?', 'hey, what is 17 * 23')).toBe(true);
  });
  it('disagrees on what a question asks for (when, where, who, why, how) and on the past; "what" is a rewording', () => {
    expect(agree('When did Napoleon die?', 'Where did Napoleon die?')).toBe(false);
    expect(agree('How do I install numpy?', 'Why do I install numpy?')).toBe(false);
    expect(agree('Who is the CEO of Apple?', 'Who was the CEO of Apple?')).toBe(false);
    expect(agree('Why is the sky blue?', 'Can you explain why the sky is blue?')).toBe(true);
    expect(agree('What is the capital of Peru?', 'Tell me the capital of Peru')).toBe(true);
  });
  it('disagrees on whether the asker can or should, and on a choice against both; politeness is not either', () => {
    expect(agree('Can I take ibuprofen with coffee?', 'Should I take ibuprofen with coffee?')).toBe(false);
    expect(agree('Can I file my tax return online?', 'Must I file my tax return online?')).toBe(false);
    expect(agree('Should I learn Rust or Go?', 'Should I learn Rust and Go?')).toBe(false);
    expect(agree('Can I get a refund after 30 days?', 'Could I get a refund after 30 days?')).toBe(true);
    expect(agree('Can you explain how vaccines work?', 'Explain how vaccines work')).toBe(true);
    expect(agree('How do I install pandas?', 'How can I install pandas?')).toBe(true);
    expect(agree('What should I pack for Iceland?', 'What do I pack for Iceland?')).toBe(true);
  });
});

describe('vector indexes', () => {
  const embedder = new LocalEmbedder();
  it('the sparse index returns exact cosine top-k, with or without a threshold, and forgets removed entries', () => {
    const index = new SparseIndex();
    const texts = ['the quick brown fox', 'a quick brown dog', 'lazy dogs sleep all day', 'foxes are quick and brown'];
    for (const [i, t] of texts.entries()) index.add(i + 1, embedder.embedSync(t));
    const q = embedder.embedSync('quick brown fox');
    const all = index.search(q, 4, () => true);
    expect(all[0].label).toBe(1);
    for (const n of all) {
      const v = index.get(n.label)!;
      let dot = 0;
      for (let i = 0; i < q.ids.length; i++) {
        const j = v.ids.indexOf(q.ids[i]);
        if (j >= 0) dot += q.weights[i] * v.weights[j];
      }
      expect(n.similarity).toBeCloseTo(dot, 6);
    }
    // With a threshold, the same neighbours above it (prefix filtering is exact).
    expect(index.search(q, 4, () => true, 0.5)).toEqual(all.filter((n) => n.similarity >= 0.5));
    expect(index.search(q, 4, (l) => l !== 1)[0].label).not.toBe(1);
    index.remove(1);
    expect(index.search(q, 4, () => true).map((n) => n.label)).not.toContain(1);
    expect(index.size).toBe(3);
  });

  it('the sparse index stays exact past its initial arrays, through removals, slot reuse and compaction', () => {
    // 3,000 entries of ~20 features outgrow the first 1,024 slots, 32k postings and the feature
    // table; removing most of them then triggers compaction. Every search is checked against
    // brute force over the live vectors.
    const index = new SparseIndex();
    const live = new Map<number, ReturnType<typeof embedder.embedSync>>();
    const text = (i: number) => `topic ${i % 97} item ${i} about ${(i * 7) % 13} and ${(i * 11) % 31} with part ${i % 5} ${i * 3}`;
    const add = (label: number, t: string) => {
      live.set(label, embedder.embedSync(t));
      index.add(label, live.get(label)!);
    };
    for (let i = 1; i <= 3_000; i++) add(i, text(i));
    for (let i = 1; i <= 3_000; i++) {
      if (i % 4 === 0) continue;
      index.remove(i);
      live.delete(i);
    }
    for (let i = 3_001; i <= 3_400; i++) add(i, text(i));
    add(8, text(9)); // a live label again, with another vector
    expect(index.size).toBe(live.size);
    const cosine = (a: { ids: Uint32Array; weights: Float32Array }, b: { ids: Uint32Array; weights: Float32Array }) => {
      let sum = 0;
      for (let i = 0; i < a.ids.length; i++) {
        const j = b.ids.indexOf(a.ids[i]);
        if (j >= 0) sum += a.weights[i] * b.weights[j];
      }
      return sum;
    };
    for (const probe of [4, 8, 1_000, 2_996, 3_001, 3_399]) {
      const q = embedder.embedSync(text(probe === 8 ? 9 : probe));
      const expected = [...live].map(([label, v]) => ({ label, similarity: cosine(q, v) })).sort((a, b) => b.similarity - a.similarity);
      const found = index.search(q, 5, () => true, 0.3);
      expect(found[0].label).toBe(probe);
      expect(found.map((n) => n.similarity)).toEqual(
        expected
          .filter((n) => n.similarity >= 0.3)
          .slice(0, 5)
          .map((n) => expect.closeTo(n.similarity, 5)),
      );
      expect(Array.from(index.get(probe)!.ids)).toEqual(Array.from(live.get(probe)!.ids));
    }
    expect(index.get(1)).toBeUndefined();
  });

  it('the dense (HNSW) index finds the nearest vector, grows past its capacity and reuses deleted slots', () => {
    const index = new DenseIndex(4, 0); // straight into hnswlib
    const vec = (i: number) => Float32Array.from({ length: 16 }, (_, d) => Math.sin(i * 7 + d) + (d === i % 16 ? 3 : 0));
    for (let i = 1; i <= 40; i++) index.add(i, vec(i));
    expect(index.size).toBe(40);
    expect(index.search(vec(17), 3, () => true)[0]).toMatchObject({ label: 17 });
    expect(index.search(vec(17), 1, () => true)[0].similarity).toBeCloseTo(1, 5);
    for (let i = 1; i <= 30; i++) index.remove(i);
    for (let i = 41; i <= 60; i++) index.add(i, vec(i));
    expect(index.size).toBe(30);
    expect(index.search(vec(17), 5, () => true).map((n) => n.label)).not.toContain(17);
    expect(index.search(vec(55), 1, (l) => l !== 55)[0].label).not.toBe(55);
  });

  it('the dense index searches exactly while small, and finds the same once its vectors move into hnswlib', () => {
    const vec = (i: number) => Float32Array.from({ length: 32 }, (_, d) => Math.sin(i * 7 + d) + (d === i % 32 ? 3 : 0));
    const index = new DenseIndex(8, 20);
    for (let i = 1; i <= 20; i++) index.add(i, vec(i));
    const flat = index.search(vec(17), 3, () => true);
    expect(flat[0]).toMatchObject({ label: 17 });
    expect(flat[0].similarity).toBeCloseTo(1, 5);
    expect(index.search(vec(17), 3, (l) => l !== 17).map((n) => n.label)).not.toContain(17);
    index.remove(17);
    for (let i = 21; i <= 60; i++) index.add(i, vec(i)); // past the flat limit
    expect(index.size).toBe(59);
    expect(index.search(vec(17), 5, () => true).map((n) => n.label)).not.toContain(17);
    const moved = index.search(vec(12), 1, () => true)[0];
    expect(moved.label).toBe(12);
    expect(moved.similarity).toBeCloseTo(1, 5);
    expect(index.get(12)!.length).toBe(32);
  });
});

describe('stream assembly and replay', () => {
  it('rebuilds a completion from chunks and replays it chunk by chunk with the same text', () => {
    const assembler = new StreamAssembler();
    const base = { id: 'c1', object: 'chat.completion.chunk', created: 5, model: 'm' };
    assembler.add({ ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' } }] });
    for (const piece of ['Hello', ', ', 'wor', 'ld  ', '!']) assembler.add({ ...base, choices: [{ index: 0, delta: { content: piece } }] });
    assembler.add({ ...base, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] });
    assembler.add({ ...base, choices: [], usage: { prompt_tokens: 3, completion_tokens: 5, total_tokens: 8 } });
    const completion = assembler.completion()!;
    expect(completion.choices[0]).toMatchObject({ message: { role: 'assistant', content: 'Hello, world  !' }, finish_reason: 'stop' });
    const events = replaySse(completion, 'new-id', true);
    const chunks = events.map((e) => JSON.parse(e.slice('data: '.length)));
    expect(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('')).toBe('Hello, world  !');
    expect(chunks.every((c) => c.id === 'new-id' && c.object === 'chat.completion.chunk')).toBe(true);
    expect(chunks.at(-1).usage).toEqual({ prompt_tokens: 3, completion_tokens: 5, total_tokens: 8 });
    expect(replaySse(completion, 'x', false).some((e) => e.includes('"usage"'))).toBe(false);
  });

  it('assembles streamed tool calls', () => {
    const a = new StreamAssembler();
    const base = { id: 'c', created: 1, model: 'm' };
    a.add({
      ...base,
      choices: [
        { index: 0, delta: { role: 'assistant', tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'get', arguments: '{"ci' } }] } },
      ],
    });
    // Some servers send the name again with later pieces: read as the openai SDK does (replaced).
    a.add({
      ...base,
      choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { name: 'get', arguments: 'ty":"Oslo"}' } }] }, finish_reason: 'tool_calls' }],
    });
    expect(a.completion()!.choices[0].message.tool_calls).toEqual([
      { id: 'call_1', type: 'function', function: { name: 'get', arguments: '{"city":"Oslo"}' } },
    ]);
  });
});

describe('answer store', () => {
  let dir: string | null = null;
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
    dir = null;
  });
  const entry = (key: string, now: number, ttlMs = 60_000, extra: Partial<CachedAnswer> = {}): CachedAnswer => ({
    key,
    teamId: 't',
    createdAt: now,
    expiresAt: now + ttlMs,
    answer: JSON.stringify({ object: 'chat.completion', text: `answer ${key}`.padEnd(200, '.') }),
    costUsd: 0.5,
    provider: 'p',
    model: 'm',
    semantic: null,
    ...extra,
  });

  it('expires entries on a controlled clock', async () => {
    let now = 1_000_000;
    const store = await AnswerStore.open({ maxBytes: 1e6, maxEntryBytes: 1e5, now: () => now });
    await store.put(entry('a', now, 1_000), null);
    expect(await store.getExact('a')).not.toBeNull();
    now += 999;
    expect(await store.getExact('a')).not.toBeNull();
    now += 2;
    expect(await store.getExact('a')).toBeNull();
    expect(store.stats().expirations).toBe(1);
  });

  it("counts a provider's dense embeddings at their size, and its log does not compact on every put", async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'tollgate-cache-dense-'));
    const store = await AnswerStore.open({ maxBytes: 1_000_000, maxEntryBytes: 100_000, dir });
    const rss = process.memoryUsage().rss;
    const dense = (i: number) => Float32Array.from({ length: 1536 }, (_, d) => Math.sin(i * 7 + d));
    for (let i = 0; i < 600; i++) {
      // Each in a namespace of its own (a team each), as many teams' first answers would be.
      await store.put(entry(`d${i}`, Date.now(), 60_000, { teamId: `t${i}`, semantic: { namespace: `ns${i}`, context: 'c', text: `q${i}` } }), dense(i));
    }
    const stats = store.stats();
    expect(stats.bytes).toBeLessThanOrEqual(1_000_000);
    expect(stats.entries).toBeLessThan(200); // ~6.7 KB each: not the ~1,200 bytes counted before
    expect(stats.evictions).toBeGreaterThan(400);
    // A namespace's index starts small: 600 of them held ~13 MB, not 600 × 6 MB preallocated.
    expect(process.memoryUsage().rss - rss).toBeLessThan(300 * 1024 * 1024);
    // The log (vectors in base64, larger than their count) was compacted now and then, not on every put.
    await store.close();
    expect(store.stats().compactions).toBeGreaterThan(0);
    expect(store.stats().compactions).toBeLessThan(20);
  });

  it('stays under its byte limit by evicting the least recently used, semantic index included', async () => {
    const embedder = new LocalEmbedder();
    const store = await AnswerStore.open({ maxBytes: 10_000, maxEntryBytes: 5_000 });
    for (let i = 0; i < 50; i++) {
      const text = `question number ${i} about caching`;
      await store.put(entry(`k${i}`, Date.now(), 60_000, { semantic: { namespace: 'ns', context: 'c', text } }), embedder.embedSync(text));
      await store.getExact('k0'); // keep k0 recently used
    }
    const stats = store.stats();
    expect(stats.bytes).toBeLessThanOrEqual(10_000);
    expect(stats.evictions).toBeGreaterThan(0);
    expect(stats.semanticEntries).toBe(stats.entries);
    expect(await store.getExact('k0')).not.toBeNull();
    expect(await store.getExact('k1')).toBeNull();
    expect(store.findSimilar('ns', 'c', 'question number 1 about caching', embedder.embedSync('question number 1 about caching'), 0.9)).toBeNull();
    expect(store.findSimilar('ns', 'c', 'Question number 49 about caching?', embedder.embedSync('Question number 49 about caching?'), 0.9)?.entry.key).toBe(
      'k49',
    );
    // An answer larger than the per-entry limit is not kept at all.
    await store.put(entry('huge', Date.now(), 60_000, { answer: 'x'.repeat(6_000) }), null);
    expect(await store.getExact('huge')).toBeNull();
  });

  it('gives back long answers (held deflated) exactly, through exact and semantic hits and a reload', async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'tollgate-cache-unit-'));
    const embedder = new LocalEmbedder();
    const answer = JSON.stringify({ object: 'chat.completion', text: 'Grüße, 世界 — «answer» 🚀 '.repeat(40) });
    const first = await AnswerStore.open({ maxBytes: 1e6, maxEntryBytes: 1e5, dir });
    const text = 'How long does a PDF rotation take?';
    await first.put(entry('long', Date.now(), 600_000, { answer, semantic: { namespace: 'ns', context: 'c', text } }), embedder.embedSync(text));
    expect((await first.getExact('long'))?.answer).toBe(answer);
    const similar = first.findSimilar('ns', 'c', 'how long does a pdf rotation take', embedder.embedSync('how long does a pdf rotation take'), 0.9);
    expect(similar?.entry.answer).toBe(answer);
    expect(similar?.entry.semantic).toEqual({ namespace: 'ns', context: 'c', text });
    // The byte limit still counts the answer as given, not as packed.
    expect(first.stats().bytes).toBeGreaterThan(answer.length);
    await first.close();
    const second = await AnswerStore.open({ maxBytes: 1e6, maxEntryBytes: 1e5, dir });
    expect((await second.getExact('long'))?.answer).toBe(answer);
    await second.close();
  });

  it('an embedding of another length than its namespace’s (a model changed) is kept for exact lookups; it stopped the start when logged', async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'tollgate-cache-dims-'));
    const failures: string[] = [];
    const onError = (_err: unknown, what: string) => failures.push(what);
    const semantic = (text: string) => ({ semantic: { namespace: 'ns', context: 'c', text } });
    const first = await AnswerStore.open({ maxBytes: 1e6, maxEntryBytes: 1e5, dir, onError });
    await first.put(entry('four', Date.now(), 600_000, semantic('four')), Float32Array.from([1, 0, 0, 0]));
    await first.put(entry('eight', Date.now(), 600_000, semantic('eight')), Float32Array.from([1, 0, 0, 0, 0, 0, 0, 1]));
    expect(failures).toEqual(['semantic cache']);
    expect(await first.getExact('eight')).not.toBeNull();
    expect(first.stats().semanticEntries).toBe(1);
    await first.close();
    // The log holds both: the next start loads them (it threw here, and the gateway did not start).
    const second = await AnswerStore.open({ maxBytes: 1e6, maxEntryBytes: 1e5, dir, onError });
    expect(await second.getExact('four')).not.toBeNull();
    expect(await second.getExact('eight')).not.toBeNull();
    expect(second.stats().semanticEntries).toBe(1);
    await second.close();
  });

  it('a compaction writes the log a slice at a time, and keeps what is put while it runs', async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'tollgate-cache-compact-'));
    const store = await AnswerStore.open({ maxBytes: 1_000_000, maxEntryBytes: 100_000, dir });
    const big = (key: string) => entry(key, Date.now(), 600_000, { answer: JSON.stringify({ object: 'chat.completion', text: key.repeat(2_000) }) });
    const compacting = () => (store as unknown as { compacting: Promise<void> | null }).compacting;
    let i = 0;
    while (!compacting()) await store.put(big(`k${i++}`), null);
    // The event loop turns while it writes (it serialised the whole cache in one go before)…
    let turns = 0;
    let spinning = true;
    const spin = () => {
      turns++;
      if (spinning) setImmediate(spin);
    };
    setImmediate(spin);
    // …and what is put meanwhile is in the new log (it went only to the old one, replaced).
    await store.put(big('during'), null);
    await compacting();
    spinning = false;
    expect(turns).toBeGreaterThan(2);
    await store.close();
    const reopened = await AnswerStore.open({ maxBytes: 1_000_000, maxEntryBytes: 100_000, dir });
    expect(await reopened.getExact('during')).not.toBeNull();
    expect(await reopened.getExact(`k${i - 1}`)).not.toBeNull();
    await reopened.close();
  });

  it('keeps its log to this user (0600), and a compaction that fails is not retried at every put', async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'tollgate-cache-perm-'));
    // A log from before the rule, readable by all.
    await writeFile(path.join(dir, 'answers.jsonl'), '', { mode: 0o644 });
    await appendFile(path.join(dir, 'answers.jsonl'), `${JSON.stringify({ ...entry('old', Date.now()), vector: null })}\n`);
    // The rewrite's temporary file cannot be created (a directory is in its place).
    await mkdir(path.join(dir, 'answers.jsonl.tmp'));
    const failures: string[] = [];
    const store = await AnswerStore.open({ maxBytes: 5_000, maxEntryBytes: 2_000, dir, onError: (_err, what) => failures.push(what) });
    for (let i = 0; i < 400; i++) await store.put(entry(`p${i}`, Date.now()), null);
    await store.close();
    expect((await stat(path.join(dir, 'answers.jsonl'))).mode & 0o777).toBe(0o600);
    const compactions = failures.filter((w) => w === 'cache log compaction').length;
    expect(compactions).toBeGreaterThan(0);
    // ~100 KB written against a 10-KB threshold: every put past it tried again before.
    expect(compactions).toBeLessThan(10);
  });

  it('reloads live entries from its log, skips expired and torn lines, and compacts the log', async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'tollgate-cache-unit-'));
    let now = 5_000_000;
    const embedder = new LocalEmbedder();
    const first = await AnswerStore.open({ maxBytes: 20_000, maxEntryBytes: 5_000, dir, now: () => now });
    await first.put(entry('short', now, 1_000), null);
    await first.put(
      entry('long', now, 600_000, { semantic: { namespace: 'ns', context: 'c', text: 'How do I rotate a PDF?' } }),
      embedder.embedSync('How do I rotate a PDF?'),
    );
    await first.close();
    await readFile(path.join(dir, 'answers.jsonl'), 'utf8').then((s) => expect(s.split('\n').filter(Boolean)).toHaveLength(2));
    await appendFile(path.join(dir, 'answers.jsonl'), '{"key":"torn","teamId"');
    now += 5_000;
    const second = await AnswerStore.open({ maxBytes: 20_000, maxEntryBytes: 5_000, dir, now: () => now });
    expect(await second.getExact('short')).toBeNull();
    expect(await second.getExact('long')).not.toBeNull();
    expect(second.findSimilar('ns', 'c', 'how do i rotate a pdf', embedder.embedSync('how do i rotate a pdf'), 0.9)?.entry.key).toBe('long');
    // Writing far more than twice the limit triggers a rewrite down to the live entries.
    for (let i = 0; i < 400; i++) await second.put(entry(`bulk${i}`, now), null);
    await second.close();
    const size = (await stat(path.join(dir, 'answers.jsonl'))).size;
    expect(size).toBeLessThan(2 * 20_000 + 5_000);
  });
});

describe('the cache stage stores answers only', () => {
  it('a 200 whose body is an error object (embeddings or chat) is not stored', async () => {
    const answers = await AnswerStore.open({ maxBytes: 100_000, maxEntryBytes: 10_000 });
    const upstream = new UpstreamClient({ connectMs: 1_000, firstByteMs: 1_000, answerMs: 1_000, idleMs: 1_000, totalMs: 1_000 });
    const stage = new CacheStage(
      answers,
      () => ({}) as never,
      upstream,
      new TargetHealth({ failures: 5, cooldownMs: 30_000 }),
      () => undefined,
    );
    const receipt = { cost_usd: 0.01, prompt_tokens: 3, completion_tokens: 0, cached_tokens: 0, usage_estimated: false } as never;
    for (const [endpoint, answer] of [
      ['embeddings', { error: { message: 'overloaded' } }],
      ['chat', { object: 'chat.completion', error: { message: 'overloaded' } }],
      ['embeddings', { object: 'list', data: [{ embedding: [0.1] }] }],
      // A chat answer from a server that sends no `object` is still a chat answer.
      ['chat', { id: 'x', choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }] }],
    ] as const) {
      const plan = stage.plan(endpoint, 't', route(), { model: 'r', temperature: 0, input: endpoint, messages: [] }, undefined)!;
      await stage.store({ plan, namespace: null, vector: null }, answer, receipt, 'p', 'm');
    }
    expect(answers.stats().entries).toBe(2);
    await upstream.close();
    await answers.close();
  });
});
