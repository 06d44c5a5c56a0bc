import { describe, expect, it } from 'vitest';
import { LocalEmbedder, ProviderEmbedder } from '../../src/cache/embedders.js';
import { type ClassifierInput, classifyPrompt, scorePrompt, TIERS, type Tier } from '../../src/routing/classifier.js';
import { KnnClassifier } from '../../src/routing/knn-classifier.js';

const ask = (text: string, extra: Partial<ClassifierInput> = {}): ClassifierInput => ({
  messages: [{ role: 'user', text }],
  hasTools: false,
  hasImages: false,
  jsonMode: 'none',
  maxTokens: 0,
  ...extra,
});
const tierOf = (text: string) => classifyPrompt(ask(text)).tier;
const isHard = (tier: Tier) => tier === 'COMPLEX' || tier === 'REASONING';

const ARTICLE = Array.from(
  { length: 6 },
  (_, i) =>
    `Paragraph ${i + 1}. Engineers who design distributed systems must prove that replication stays consistent under concurrent writes, ` +
    'derive throughput bounds, and optimize latency across regions; the review discusses how teams implemented consensus, ' +
    'refactored their storage layers and debugged deadlocks in production over several years of operating the service.',
).join('\n\n');

describe('built-in classifier: clear cases', () => {
  it.each([
    ['hi', 'SIMPLE'],
    ['thanks, that worked!', 'SIMPLE'],
    ['What is the capital of Japan?', 'SIMPLE'],
    ['Convert 10 miles to kilometers.', 'SIMPLE'],
    ['Translate "good night" into Italian.', 'SIMPLE'],
    ['Write an email to my landlord asking to fix the heating this week, polite but firm.', 'MEDIUM'],
    ['Explain the difference between processes and threads with an example.', 'MEDIUM'],
    ['Design a multi-region, strongly consistent key-value store: replication, failover, conflict handling and how clients find the leader.', 'COMPLEX'],
    ['Implement a thread-safe connection pool in Rust with timeouts, health checks and a maximum size, and write tests for it.', 'COMPLEX'],
    ['Prove that every bipartite graph with maximum degree d has a proper edge colouring with d colours.', 'REASONING'],
    ['Give an O(n log n) algorithm that counts the inversions of an array of n integers and prove its correctness.', 'REASONING'],
  ] as const)('%s → %s', (text, tier) => {
    expect(tierOf(text)).toBe(tier);
  });

  it('short but hard is hard; long but simple is simple', () => {
    expect(isHard(tierOf('prove that there are infinitely many primes'))).toBe(true);
    expect(isHard(tierOf(`summarize this in one line\n\n${ARTICLE}`))).toBe(false);
    expect(isHard(tierOf(`${ARTICLE}\n\nWhat year is mentioned first? One word.`))).toBe(false);
  });

  it('counts a word that is quoted, or handed over after "Translate …:", as material, not as the request', () => {
    expect(isHard(tierOf('Translate to French: we must design a scalable, distributed, fault-tolerant system.'))).toBe(false);
    expect(isHard(tierOf('What does "prove" mean in baking?'))).toBe(false);
  });

  it('reads pasted code by what is asked about it', () => {
    const code = `\`\`\`python\n${Array.from({ length: 60 }, (_, i) => `def f${i}(x):\n    return x + ${i}`).join('\n')}\n\`\`\``;
    expect(isHard(tierOf(`Add a docstring to each function, nothing else.\n\n${code}`))).toBe(false);
    expect(
      tierOf(
        `Refactor this module into a package with a plugin registry, keep the public API identical, make it thread-safe, and add tests for every function.\n\n${code}`,
      ),
    ).toBe('COMPLEX');
  });
});

describe('built-in classifier: Chinese', () => {
  it.each([
    ['你好', 'SIMPLE'],
    ['什么是 HTTP？', 'SIMPLE'],
    ['把"早上好"翻译成日语', 'SIMPLE'],
    ['帮我写一封邮件，提醒客户下周五之前付款。', 'MEDIUM'],
    ['设计一个支持百万并发连接的分布式消息推送系统，要求消息不丢、不重，并说明如何扩容。', 'COMPLEX'],
    ['用 Go 实现一个并发安全的限流器，支持令牌桶和滑动窗口两种算法，并写单元测试。', 'COMPLEX'],
    ['证明：任意两个连续整数的乘积是偶数。', 'REASONING'],
    ['推导等比数列前 n 项和的公式，并证明。', 'REASONING'],
  ] as const)('%s → %s', (text, tier) => {
    expect(tierOf(text)).toBe(tier);
  });
});

describe('built-in classifier: edges', () => {
  it('has nothing to go on without text: SIMPLE at confidence 0.5', () => {
    expect(classifyPrompt({ ...ask(''), messages: [] })).toEqual({ tier: 'SIMPLE', confidence: 0.5 });
    expect(classifyPrompt(ask('   \n '))).toEqual({ tier: 'SIMPLE', confidence: 0.5 });
    expect(classifyPrompt(ask('', { hasImages: true }))).toEqual({ tier: 'SIMPLE', confidence: 0.5 });
  });

  it('reads a huge prompt (head and tail) and still finds the request at either end', () => {
    const huge = `Summarize in one sentence:\n\n${'The committee met and discussed the annual budget. '.repeat(40_000)}`;
    expect(huge.length).toBeGreaterThan(1_000_000);
    expect(isHard(tierOf(huge))).toBe(false);
    const hugeAsk = `${'Log line: request served in 12 ms. '.repeat(30_000)}\n\nProve that the median of these latencies minimizes the sum of absolute deviations, rigorously.`;
    expect(tierOf(hugeAsk)).toBe('REASONING');
  });

  it('keeps the confidence within 0..1 and gives every prompt one of the four tiers', () => {
    const texts = ['', 'ok', 'x'.repeat(50_000), '证明'.repeat(5000), `\`\`\`\n${'a = 1;\n'.repeat(3000)}`, '???!!!', ARTICLE, '1 2 3 4 5 6 7 8 9 10'];
    for (const text of texts) {
      const { tier, confidence } = classifyPrompt(ask(text));
      expect(TIERS).toContain(tier);
      expect(confidence).toBeGreaterThanOrEqual(0);
      expect(confidence).toBeLessThanOrEqual(1);
    }
  });

  it('is deterministic', () => {
    const input = ask(`Design a cache.\n\n${ARTICLE}`);
    const first = scorePrompt(input);
    for (let i = 0; i < 5; i++) expect(scorePrompt(input)).toEqual(first);
  });

  it('reads the last user turn, with the conversation before it as context', () => {
    const history: ClassifierInput['messages'] = [
      { role: 'system', text: 'You are a friendly assistant. Prove, derive, design and implement whatever is asked.' },
      { role: 'user', text: 'Implement a lock-free multi-producer queue in C++ with a bounded buffer.' },
      { role: 'assistant', text: 'Here is an implementation using atomics and a ring buffer ...' },
      { role: 'user', text: 'thanks!' },
    ];
    expect(classifyPrompt({ ...ask(''), messages: history }).tier).toBe('SIMPLE');
    // The system prompt's verbs are the application's, not the request's.
    expect(classifyPrompt({ ...ask(''), messages: [history[0], { role: 'user', text: 'What time is it in Tokyo?' }] }).tier).toBe('SIMPLE');
    // A follow-up to a hard conversation scores higher than the same follow-up alone.
    const followUp = 'Now make it work with several consumers too.';
    expect(scorePrompt({ ...ask(''), messages: [...history.slice(0, 3), { role: 'user', text: followUp }] }).effort).toBeGreaterThan(
      scorePrompt(ask(followUp)).effort,
    );
  });

  it('does not let repetition stand in for evidence: each cue family saturates', () => {
    // Same length, so only the cue counts differ: one "optimize" vs fifty.
    const once = scorePrompt(ask(`Please ${'really '.repeat(49)}optimize it.`));
    const stuffed = scorePrompt(ask(`Please ${'optimize '.repeat(50)}it.`));
    expect(once.contributions.build).toBeGreaterThan(0);
    expect(stuffed.contributions.build - once.contributions.build).toBeLessThan(once.contributions.build);
    expect(stuffed.effort - once.effort).toBeLessThan(1);
  });
});

describe('kNN classifier over labelled examples', () => {
  const examples = [
    { text: 'where is my parcel, order 1234?', tier: 'SIMPLE' as const },
    { text: 'has my parcel shipped yet? order 9876', tier: 'SIMPLE' as const },
    { text: 'parcel tracking number for my order please', tier: 'SIMPLE' as const },
    { text: 'reconcile the ledger of warehouse 7 against the carrier manifests and explain each discrepancy', tier: 'COMPLEX' as const },
    { text: 'reconcile the ledger of warehouse 3 against the carrier manifests and flag missing pallets', tier: 'COMPLEX' as const },
    { text: 'reconcile the ledger of the returns warehouse against refunds issued and explain each gap', tier: 'COMPLEX' as const },
  ];

  it('gives a prompt the tier of its nearest labelled examples, with the vote share as confidence', async () => {
    const knn = await KnnClassifier.build(new LocalEmbedder(), examples, { k: 3 });
    // The built-in scorer calls this short request simple; the team's examples say otherwise.
    expect(classifyPrompt(ask('reconcile the ledger of warehouse 9 against the carrier manifests')).tier).not.toBe('COMPLEX');
    const hard = await knn.classify(ask('reconcile the ledger of warehouse 9 against the carrier manifests'));
    expect(hard).toMatchObject({ tier: 'COMPLEX', source: 'knn' });
    expect(hard.confidence).toBeGreaterThan(0.6);
    expect(hard.confidence).toBeLessThanOrEqual(1);
    expect(await knn.classify(ask('my parcel for order 5555, where is it?'))).toMatchObject({ tier: 'SIMPLE', source: 'knn' });
  });

  it('falls back to the built-in scorer when no example is near or the vote is split', async () => {
    const knn = await KnnClassifier.build(new LocalEmbedder(), examples, { k: 6, minConfidence: 0.9 });
    const unrelated = ask('Prove that the square root of 3 is irrational.');
    expect(await knn.classify(unrelated)).toEqual({ ...classifyPrompt(unrelated), source: 'scorer' });
    // Shares words with both groups: no tier gets 90 % of the vote.
    const mixed = ask('parcel order ledger warehouse');
    expect(await knn.classify(mixed)).toEqual({ ...classifyPrompt(mixed), source: 'scorer' });
    expect(await knn.classify(ask(''))).toMatchObject({ source: 'scorer', tier: 'SIMPLE' });
  });

  it('refuses to build without examples or with an unknown tier', async () => {
    await expect(KnnClassifier.build(new LocalEmbedder(), [])).rejects.toThrow(/at least one/);
    await expect(KnnClassifier.build(new LocalEmbedder(), [{ text: 'x', tier: 'EASY' as Tier }])).rejects.toThrow(/unknown tier "EASY"/);
  });

  it('works with dense vectors too (a provider embedding model)', async () => {
    // The provider embedder over a deterministic stand-in for an embeddings endpoint: the
    // vector says which topic words occur.
    const topics = ['parcel', 'order', 'ledger', 'reconcile', 'warehouse', 'manifests'];
    const dense = new ProviderEmbedder('dense-test', async (input) => ({ data: [{ embedding: topics.map((t) => (input.includes(t) ? 1 : 0.01)) }] }));
    const knn = await KnnClassifier.build(dense, examples, { k: 3 });
    expect(await knn.classify(ask('reconcile the ledger against manifests'))).toMatchObject({ tier: 'COMPLEX', source: 'knn' });
    expect(await knn.classify(ask('parcel order status'))).toMatchObject({ tier: 'SIMPLE', source: 'knn' });
  });
});
