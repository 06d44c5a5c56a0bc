// A route's own classifier: the k nearest of its labelled examples vote on the tier.
//
// Teams that know their traffic can label a few hundred of their own prompts; prompts like
// theirs then get the tier their neighbours have. The vectors come from the semantic cache's
// embedders (src/cache/embedders.ts): the local one needs no network and matches shared words,
// a provider embedding model also matches paraphrases. Neighbours vote with their cosine
// similarity; the confidence is the winning tier's share of the vote. When the examples say
// little (no neighbour is similar enough, or the vote is split below `minConfidence`), the
// built-in scorer decides instead.
import type { Embedder } from '../cache/embedders.js';
import { DenseIndex, isSparse, SparseIndex, type Vector, type VectorIndex } from '../cache/vector-index.js';
import { type Classification, type ClassifierInput, classifyPrompt, findLastUserTurn, TIERS, type Tier } from './classifier.js';
import { SAMPLE_CHARS } from './prompt-features.js';

export interface LabelledExample {
  text: string;
  tier: Tier;
}

export interface KnnOptions {
  /** Neighbours that vote (default 5). */
  k?: number;
  /** Below this vote share the built-in scorer decides (default 0.6). */
  minConfidence?: number;
  /**
   * Neighbours less similar than this do not vote (default 0.2, for the local embedder, whose
   * unrelated prompts score near 0; provider embeddings score unrelated text far higher, often
   * 0.7 or more, and need their own floor).
   */
  minSimilarity?: number;
}

export interface KnnClassification extends Classification {
  /** Who decided: the neighbours' vote, or the built-in scorer it fell back to. */
  source: 'knn' | 'scorer';
}

export class KnnClassifier {
  private constructor(
    private readonly embedder: Embedder,
    private readonly index: VectorIndex,
    private readonly tiers: Tier[],
    private readonly k: number,
    private readonly minConfidence: number,
    private readonly minSimilarity: number,
  ) {}

  static async build(embedder: Embedder, examples: LabelledExample[], options: KnnOptions = {}): Promise<KnnClassifier> {
    if (examples.length === 0) throw new Error('a kNN classifier needs at least one labelled example');
    let index: VectorIndex | null = null;
    for (const [label, example] of examples.entries()) {
      if (!TIERS.includes(example.tier)) throw new Error(`example ${label}: unknown tier ${JSON.stringify(example.tier)}`);
      const vector = await embedder.embed(sampleOf(example.text));
      index ??= isSparse(vector) ? new SparseIndex() : new DenseIndex(examples.length);
      (index as VectorIndex<Vector>).add(label, vector);
    }
    return new KnnClassifier(
      embedder,
      index!,
      examples.map((e) => e.tier),
      options.k ?? 5,
      options.minConfidence ?? 0.6,
      options.minSimilarity ?? 0.2,
    );
  }

  async classify(input: ClassifierInput, signal?: AbortSignal): Promise<KnnClassification> {
    const text = input.messages[findLastUserTurn(input.messages)]?.text ?? '';
    if (text.trim() === '') return { ...classifyPrompt(input), source: 'scorer' };
    const vector = await this.embedder.embed(sampleOf(text), signal);
    const neighbours = (this.index as VectorIndex<Vector>)
      .search(vector, this.k, () => true, this.minSimilarity)
      .filter((n) => n.similarity >= this.minSimilarity);
    const votes = new Map<Tier, number>();
    let total = 0;
    for (const { label, similarity } of neighbours) {
      votes.set(this.tiers[label], (votes.get(this.tiers[label]) ?? 0) + similarity);
      total += similarity;
    }
    let best: Tier | null = null; // a tie goes to the simpler tier
    for (const tier of TIERS) if ((votes.get(tier) ?? 0) > (best ? votes.get(best)! : 0)) best = tier;
    const confidence = best ? votes.get(best)! / total : 0;
    if (!best || confidence < this.minConfidence) return { ...classifyPrompt(input), source: 'scorer' };
    return { tier: best, confidence, source: 'knn' };
  }
}

/** Embedding cost stays bounded: the head and tail of a long text, as the scorer reads it. */
function sampleOf(text: string): string {
  return text.length > 2 * SAMPLE_CHARS ? `${text.slice(0, SAMPLE_CHARS)}\n\n${text.slice(-SAMPLE_CHARS)}` : text;
}
