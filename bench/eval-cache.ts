// Semantic cache quality on the labelled pairs in test/data/cache-eval.jsonl.
// Every "cached" prompt is stored in ONE namespace (as one team's cache would hold them), then
// every "query" is looked up: a hit on a must-not-hit pair is a false hit, and so is a hit on
// another pair's entry unless that entry's prompt is the query itself (same text, ignoring case
// and surrounding whitespace: the dataset repeats a few common questions across pairs). Prints precision/recall at the default threshold and a threshold sweep, with and
// without the detail check, and writes bench/results/cache-eval.json.
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { LocalEmbedder } from '../src/cache/embedders.js';
import { DEFAULT_SIMILARITY_THRESHOLD } from '../src/cache/policy.js';
import { SemanticIndex } from '../src/cache/semantic-index.js';

interface Pair {
  id: string;
  expect: 'hit' | 'miss';
  category: string;
  cached: string;
  query: string;
}

const pairs: Pair[] = readFileSync(new URL('../test/data/cache-eval.jsonl', import.meta.url), 'utf8')
  .split('\n')
  .filter((l) => l.trim())
  .map((l) => JSON.parse(l) as Pair);

const sameText = (a: string, b: string) => a.trim().toLowerCase() === b.trim().toLowerCase();
const cachedById = new Map(pairs.map((p) => [p.id, p.cached]));
const embedder = new LocalEmbedder();
const index = new SemanticIndex();
for (const p of pairs) index.add('eval', p.id, '', p.cached, embedder.embedSync(p.cached));

interface Outcome {
  pair: Pair;
  /** A hit on another pair's entry holding exactly this question: right, but not this pair's. */
  crossCorrect?: boolean;
  /** The entry the lookup returned at threshold 0 (best candidate) and its similarity. */
  matched: string | null;
  similarity: number;
}

function lookups(checkDetails: boolean): Outcome[] {
  return pairs.map((pair) => {
    const m = index.find('eval', '', pair.query, embedder.embedSync(pair.query), 0, checkDetails);
    const crossCorrect = m !== null && m.key !== pair.id && sameText(cachedById.get(m.key)!, pair.query);
    return { pair, matched: m?.key ?? null, similarity: m?.similarity ?? 0, crossCorrect };
  });
}

function score(outcomes: Outcome[], threshold: number) {
  let trueHits = 0;
  let falseHits = 0;
  let falseOnMiss = 0;
  const shouldHit = outcomes.filter((o) => o.pair.expect === 'hit').length;
  const mustMiss = outcomes.length - shouldHit;
  for (const o of outcomes) {
    if (!o.matched || o.similarity < threshold || o.crossCorrect) continue;
    if (o.pair.expect === 'hit' && o.matched === o.pair.id) trueHits++;
    else {
      falseHits++;
      if (o.pair.expect === 'miss') falseOnMiss++;
    }
  }
  const hits = trueHits + falseHits;
  return {
    threshold,
    precision: hits === 0 ? 1 : trueHits / hits,
    recall: trueHits / shouldHit,
    falseHits,
    falseHitRateOnMustMiss: falseOnMiss / mustMiss,
  };
}

function perCategory(outcomes: Outcome[], threshold: number) {
  const rows = new Map<string, { expect: string; pairs: number; hits: number }>();
  for (const o of outcomes) {
    const key = `${o.pair.expect}:${o.pair.category}`;
    const row = rows.get(key) ?? { expect: o.pair.expect, pairs: 0, hits: 0 };
    row.pairs++;
    if (o.matched && !o.crossCorrect && o.similarity >= threshold && (o.pair.expect === 'miss' || o.matched === o.pair.id)) row.hits++;
    rows.set(key, row);
  }
  return [...rows].map(([key, r]) => ({ category: key, ...r, rate: r.hits / r.pairs }));
}

const withCheck = lookups(true);
const withoutCheck = lookups(false);
const thresholds = Array.from({ length: 21 }, (_, i) => Math.round((0.5 + i * 0.025) * 1000) / 1000);
const sweep = thresholds.map((t) => ({ ...score(withCheck, t), embeddingOnly: score(withoutCheck, t) }));
const atDefault = score(withCheck, DEFAULT_SIMILARITY_THRESHOLD);

const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
console.log(
  `\nSemantic cache evaluation: ${pairs.length} pairs (${pairs.filter((p) => p.expect === 'hit').length} should hit, ${pairs.filter((p) => p.expect === 'miss').length} must not), local embedder`,
);
console.log('\nthreshold | precision | recall | false hits | false-hit rate (must-not-hit) | embedding only: precision / recall / false-hit rate');
for (const r of sweep) {
  const mark = r.threshold === DEFAULT_SIMILARITY_THRESHOLD ? ' ◀ default' : '';
  console.log(
    `${r.threshold.toFixed(3).padStart(9)} | ${pct(r.precision).padStart(9)} | ${pct(r.recall).padStart(6)} | ${String(r.falseHits).padStart(10)} | ${pct(r.falseHitRateOnMustMiss).padStart(29)} | ${pct(r.embeddingOnly.precision)} / ${pct(r.embeddingOnly.recall)} / ${pct(r.embeddingOnly.falseHitRateOnMustMiss)}${mark}`,
  );
}
console.log(
  `\nAt the default threshold ${DEFAULT_SIMILARITY_THRESHOLD}: precision ${pct(atDefault.precision)}, recall ${pct(atDefault.recall)}, false hits on must-not-hit pairs ${pct(atDefault.falseHitRateOnMustMiss)} (requirement ≤ 1 %)`,
);
const categories = perCategory(withCheck, DEFAULT_SIMILARITY_THRESHOLD);
console.log('\ncategory | pairs | hits');
for (const c of categories) console.log(`${c.category.padEnd(22)} | ${String(c.pairs).padStart(5)} | ${String(c.hits).padStart(4)} (${pct(c.rate)})`);
const falseHits = withCheck.filter(
  (o) => o.matched && !o.crossCorrect && o.similarity >= DEFAULT_SIMILARITY_THRESHOLD && !(o.pair.expect === 'hit' && o.matched === o.pair.id),
);
for (const o of falseHits) console.log(`false hit ${o.pair.id} → ${o.matched} (${o.similarity.toFixed(3)}): ${o.pair.query}`);

await mkdir(new URL('./results/', import.meta.url), { recursive: true });
await writeFile(
  new URL('./results/cache-eval.json', import.meta.url),
  `${JSON.stringify({ date: new Date().toISOString(), pairs: pairs.length, defaultThreshold: DEFAULT_SIMILARITY_THRESHOLD, atDefault, categories, sweep }, null, 2)}\n`,
);
if (atDefault.falseHitRateOnMustMiss > 0.01) {
  console.error('FAILED: false-hit rate above 1 % at the default threshold');
  process.exitCode = 1;
}
