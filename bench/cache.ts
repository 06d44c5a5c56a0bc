// Cache benchmark (issue 4): lookup latency at 100k entries in one namespace (exact, and
// semantic with the local embedder), memory per 100k entries, and a hit versus a miss end to
// end through the proxy. Prints a table and writes bench/results/cache.json.
//
//   npm run bench:cache            (ENTRIES=100000 by default)
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { LocalEmbedder } from '../src/cache/embedders.js';
import { planCache } from '../src/cache/policy.js';
import { AnswerStore, type CachedAnswer } from '../src/cache/store.js';
import { loadConfig } from '../src/config.js';
import { startServer } from '../src/main.js';
import type { Route } from '../src/routing/catalog.js';
import { startSimulatedProvider } from '../src/sim/simulated.js';

const ENTRIES = Number(process.env.ENTRIES ?? 100_000);
// Smaller values only for smoke-testing the runner (BENCH_QUICK=1 npm run bench).
const LOOKUPS = Number(process.env.CACHE_BENCH_LOOKUPS ?? 20_000);
const E2E_REQUESTS = Number(process.env.CACHE_BENCH_E2E ?? 400);

// ── Synthetic prompts: Zipf-distributed words from a 5,000-word vocabulary, 6–24 words ──
let seed = 42;
const rand = () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32;
const syllables = ['ka', 'lo', 'mi', 'ne', 'ru', 'ta', 'vo', 'shi', 'pe', 'dan', 'gor', 'lin', 'mar', 'tes', 'ur', 'zen'];
const vocabulary = Array.from({ length: 5_000 }, (_, i) => {
  let w = '';
  for (let n = i + 1; n > 0; n = Math.floor(n / 16)) w += syllables[n % 16];
  return w;
});
const zipf = () => vocabulary[Math.min(vocabulary.length - 1, Math.floor(Math.exp(rand() * Math.log(vocabulary.length))) - 1)];
const prompt = () => {
  const words = Array.from({ length: 6 + Math.floor(rand() * 19) }, zipf);
  return `${words.join(' ')} ${Math.floor(rand() * 1e6)}?`;
};

const route: Route = {
  name: 'bench',
  strategy: 'PRIORITY',
  retries: 0,
  timeoutMs: null,
  cache: { mode: 'SEMANTIC', ttlSeconds: 86_400, similarityThreshold: null, embeddingModel: null, cacheSampled: false, cacheToolCalls: false },
  targets: [],
  pinned: false,
  rules: [],
  rulesReadPromptTokens: false,
  accept: [],
};
/**
 * An answer of ~1,400 characters of its own words (Zipf, sentences): compressible like prose,
 * about 2–3×. (A question repeated 12 times, as before, compressed 5.6× and flattered the
 * packed answers of the cache.)
 */
const answerText = (question: string) => {
  let text = `${question.replace(/\?$/, '')}:`;
  while (text.length < 1_400) {
    const sentence = Array.from({ length: 8 + Math.floor(rand() * 12) }, zipf).join(' ');
    text += ` ${sentence[0]!.toUpperCase()}${sentence.slice(1)}${rand() < 0.2 ? ` ${Math.floor(rand() * 1e4)}` : ''}.`;
  }
  return text;
};
const answerBody = (text: string) => ({
  id: 'chatcmpl-bench',
  object: 'chat.completion',
  created: 1,
  model: 'm',
  choices: [{ index: 0, message: { role: 'assistant', content: answerText(text) }, finish_reason: 'stop', logprobs: null }],
  usage: { prompt_tokens: 40, completion_tokens: 120, total_tokens: 160 },
});

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}
function summarize(samples: number[]) {
  const s = [...samples].sort((a, b) => a - b);
  return { p50: percentile(s, 0.5), p99: percentile(s, 0.99), n: s.length };
}
const heapMb = () => {
  (globalThis as { gc?: () => void }).gc?.();
  return process.memoryUsage().heapUsed / 2 ** 20;
};
// The whole process, not just the JS heap: typed arrays' contents, Buffers and native indexes
// live outside it, so a heap figure alone could fall by moving memory rather than saving it.
const rssMb = () => {
  (globalThis as { gc?: () => void }).gc?.();
  return process.memoryUsage().rss / 2 ** 20;
};

// ── Lookups at ENTRIES entries in one namespace ──
const embedder = new LocalEmbedder();
const heapBefore = heapMb();
const rssBefore = rssMb();
const store = await AnswerStore.open({ maxBytes: 4 * 2 ** 30, maxEntryBytes: 2 ** 20 });
const prompts: string[] = [];
const keys: string[] = [];
const t = performance.now();
for (let i = 0; i < ENTRIES; i++) {
  const text = prompt();
  const plan = planCache('chat', 'team-bench', route, { model: 'bench', temperature: 0, messages: [{ role: 'user', content: text }] }, undefined)!;
  const vector = embedder.embedSync(text);
  const namespace = `team-bench\u0000bench\u0000${embedder.id}`;
  const entry: CachedAnswer = {
    key: plan.exactKey,
    teamId: 'team-bench',
    createdAt: Date.now(),
    expiresAt: Date.now() + 86_400_000,
    answer: JSON.stringify(answerBody(text)),
    costUsd: 0.001,
    provider: 'sim',
    model: 'm',
    semantic: { namespace, context: plan.context, text },
  };
  await store.put(entry, vector);
  prompts.push(text);
  keys.push(plan.exactKey);
}
const fillSeconds = (performance.now() - t) / 1000;
const heapAfter = heapMb();
const rssAfter = rssMb();

const exactSamples: number[] = [];
const exactKeyed: number[] = [];
for (let i = 0; i < LOOKUPS; i++) {
  const j = Math.floor(rand() * ENTRIES);
  let s = performance.now();
  const hit = await store.getExact(keys[j]);
  exactSamples.push(performance.now() - s);
  if (!hit) throw new Error('exact lookup missed a stored key');
  s = performance.now();
  const plan = planCache('chat', 'team-bench', route, { model: 'bench', temperature: 0, messages: [{ role: 'user', content: prompts[j] }] }, undefined)!;
  await store.getExact(plan.exactKey);
  exactKeyed.push(performance.now() - s);
}

const semanticSamples: number[] = [];
let semanticHits = 0;
const namespace = `team-bench\u0000bench\u0000${embedder.id}`;
const context = planCache('chat', 'team-bench', route, { model: 'bench', temperature: 0, messages: [{ role: 'user', content: 'x' }] }, undefined)!.context;
for (let i = 0; i < LOOKUPS; i++) {
  // Half rewordings of stored prompts (upper-cased, filler added), half new prompts.
  const text = i % 2 === 0 ? `Hey, ${prompts[Math.floor(rand() * ENTRIES)].toUpperCase()}` : prompt();
  const s = performance.now();
  const found = store.findSimilar(namespace, context, text, embedder.embedSync(text), 0.925);
  semanticSamples.push(performance.now() - s);
  if (found) semanticHits++;
}

// ── End to end through the proxy: a miss (simulated upstream, no added latency) vs a hit ──
const sim = await startSimulatedProvider({ record: false });
const dataDir = await mkdtemp(path.join(os.tmpdir(), 'tollgate-bench-cache-'));
const started = await startServer(loadConfig({ TOLLGATE_DATA_DIR: dataDir, TOLLGATE_PORT: '0', TOLLGATE_LOG_LEVEL: 'silent' } as NodeJS.ProcessEnv), {
  quiet: true,
});
const admin = started.runtime.adminStore;
await admin.providers.upsertProvider({ name: 'sim', kind: 'SIMULATED', baseUrl: sim.url });
await admin.routing.upsertRoute({ name: 'cached', strategy: 'PRIORITY', targets: [{ provider: 'sim', model: 'm' }], cache: { mode: 'EXACT' } });
await admin.routing.upsertRoute({ name: 'semantic', strategy: 'PRIORITY', targets: [{ provider: 'sim', model: 'm' }], cache: { mode: 'SEMANTIC' } });
await started.runtime.app.catalog.load();
const team = await admin.teams.ensureTeam('bench');
const { secret } = await admin.teams.createApiKey({ teamId: team.id, name: 'bench' });
const call = async (model: string, content: string, cacheHeader?: string) => {
  const s = performance.now();
  const res = await fetch(`${started.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json', ...(cacheHeader ? { 'x-tollgate-cache': cacheHeader } : {}) },
    body: JSON.stringify({ model, temperature: 0, messages: [{ role: 'user', content }] }),
  });
  await res.arrayBuffer();
  const ms = performance.now() - s;
  return { ms, status: res.headers.get('x-tollgate-cache') };
};
const e2e = { miss: [] as number[], exact: [] as number[], semantic: [] as number[], bypass: [] as number[] };
for (let i = 0; i < 50; i++) await call('cached', `warm-up ${i}`); // JIT and pools
// Interleaved, so machine noise hits every kind alike.
for (let i = 0; i < E2E_REQUESTS; i++) {
  const q = `question number ${i} about the cache`;
  const miss = await call('cached', q);
  const hit = await call('cached', q);
  const bypass = await call('cached', q, 'no-store');
  await call('semantic', `What is the price of item ${i}?`);
  const semantic = await call('semantic', `what is the price of item ${i}`);
  if (miss.status !== 'miss' || hit.status !== 'exact' || bypass.status !== 'bypass' || semantic.status !== 'semantic') {
    throw new Error(`unexpected cache statuses: ${miss.status} ${hit.status} ${bypass.status} ${semantic.status}`);
  }
  e2e.miss.push(miss.ms);
  e2e.exact.push(hit.ms);
  e2e.bypass.push(bypass.ms);
  e2e.semantic.push(semantic.ms);
}
await started.stop();
await sim.close();
await rm(dataDir, { recursive: true, force: true });

const results = {
  date: new Date().toISOString(),
  machine: { cpus: os.cpus().length, memoryGb: Math.round(os.totalmem() / 2 ** 30), node: process.version },
  entries: ENTRIES,
  fillSeconds,
  // Both include the bench's own prompts and keys arrays (about 27 MB per 100k): a conservative figure.
  memory: {
    heapMbPer100k: ((heapAfter - heapBefore) * 100_000) / ENTRIES,
    rssMbPer100k: ((rssAfter - rssBefore) * 100_000) / ENTRIES,
    measuredWithGc: Boolean((globalThis as { gc?: unknown }).gc),
  },
  lookupMs: {
    exact: summarize(exactSamples),
    exactIncludingKey: summarize(exactKeyed),
    semanticLocal: { ...summarize(semanticSamples), hitRate: semanticHits / LOOKUPS },
  },
  endToEndMs: { miss: summarize(e2e.miss), bypass: summarize(e2e.bypass), exactHit: summarize(e2e.exact), semanticHit: summarize(e2e.semantic) },
  targets: { exactP99Ms: 0.2, semanticP99Ms: 2, heapMbPer100k: 150 },
};

const f = (ms: number) => ms.toFixed(3);
console.log(
  `\nCache benchmark: ${ENTRIES.toLocaleString()} entries in one namespace (filled in ${fillSeconds.toFixed(1)} s), ${results.machine.cpus} cores, Node ${process.version}\n`,
);
console.log('figure                               |     p50 |     p99 | target');
console.log(`exact lookup                         | ${f(results.lookupMs.exact.p50)} | ${f(results.lookupMs.exact.p99)} | ≤ 0.2 ms`);
console.log(`exact lookup incl. canonical key     | ${f(results.lookupMs.exactIncludingKey.p50)} | ${f(results.lookupMs.exactIncludingKey.p99)} | ≤ 0.2 ms`);
console.log(
  `semantic lookup (local, embed+search)| ${f(results.lookupMs.semanticLocal.p50)} | ${f(results.lookupMs.semanticLocal.p99)} | ≤ 2 ms   (hit rate ${(results.lookupMs.semanticLocal.hitRate * 100).toFixed(1)} %, half the queries are rewordings)`,
);
console.log(`e2e miss (upstream on loopback)      | ${f(results.endToEndMs.miss.p50)} | ${f(results.endToEndMs.miss.p99)} |`);
console.log(`e2e bypass (no-store)                | ${f(results.endToEndMs.bypass.p50)} | ${f(results.endToEndMs.bypass.p99)} |`);
console.log(`e2e exact hit                        | ${f(results.endToEndMs.exactHit.p50)} | ${f(results.endToEndMs.exactHit.p99)} |`);
console.log(`e2e semantic hit                     | ${f(results.endToEndMs.semanticHit.p50)} | ${f(results.endToEndMs.semanticHit.p99)} |`);
const settled = results.memory.measuredWithGc ? '' : ' (run with --expose-gc for a settled figure)';
console.log(`memory per 100k entries (heap)       | ${results.memory.heapMbPer100k.toFixed(0)} MB | ≤ ${results.targets.heapMbPer100k} MB${settled}`);
console.log(`memory per 100k entries (RSS)        | ${results.memory.rssMbPer100k.toFixed(0)} MB |          (whole process: off-heap memory too)${settled}`);

await mkdir(new URL('./results/', import.meta.url), { recursive: true });
await writeFile(new URL('./results/cache.json', import.meta.url), `${JSON.stringify(results, null, 2)}\n`);
await store.close();
