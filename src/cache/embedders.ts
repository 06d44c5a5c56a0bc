// Embedders turn the last user turn into a vector for the semantic cache.
//
// LocalEmbedder needs no network and no model: a bag of content words and ordered word pairs,
// hashed into a sparse unit vector. It catches rewordings that keep the words: case,
// punctuation, whitespace, filler and politeness words, plurals, reordered clauses. It cannot
// catch synonyms or paraphrase ("undo my last commit" vs "revert the previous commit"): use a
// provider embedding model for that (ProviderEmbedder).
import { analyze } from './text.js';
import type { SparseVector, Vector } from './vector-index.js';

export interface Embedder<V extends Vector = Vector> {
  /** Part of the cache namespace: vectors of different embedders never meet. */
  readonly id: string;
  embed(text: string, signal?: AbortSignal): Promise<V>;
}

/** Word pairs weigh less than words: reordered clauses keep most words but lose some pairs. */
const PAIR_WEIGHT = 0.6;

export class LocalEmbedder implements Embedder<SparseVector> {
  readonly id = 'local-v1';

  embed(text: string): Promise<SparseVector> {
    return Promise.resolve(this.embedSync(text));
  }

  embedSync(text: string): SparseVector {
    const { tokens } = analyze(text);
    const features = new Map<number, number>();
    const addFeature = (feature: string, weight: number) => {
      const id = fnv1a(feature);
      features.set(id, (features.get(id) ?? 0) + weight);
    };
    for (let i = 0; i < tokens.length; i++) {
      addFeature(tokens[i], 1);
      if (i > 0) addFeature(`${tokens[i - 1]} ${tokens[i]}`, PAIR_WEIGHT);
    }
    if (features.size === 0) addFeature(text.trim().toLowerCase(), 1);
    const ids = Uint32Array.from([...features.keys()].sort((a, b) => a - b));
    const weights = new Float32Array(ids.length);
    let norm = 0;
    for (let i = 0; i < ids.length; i++) {
      weights[i] = features.get(ids[i])!;
      norm += weights[i] * weights[i];
    }
    const scale = 1 / Math.sqrt(norm);
    for (let i = 0; i < weights.length; i++) weights[i] *= scale;
    return { ids, weights };
  }
}

/** Calls an OpenAI-compatible /v1/embeddings model (through the gateway's upstream layer). */
export class ProviderEmbedder implements Embedder<Float32Array> {
  constructor(
    readonly id: string,
    private readonly call: (input: string, signal?: AbortSignal) => Promise<unknown>,
  ) {}

  async embed(text: string, signal?: AbortSignal): Promise<Float32Array> {
    const body = (await this.call(text, signal)) as { data?: Array<{ embedding?: unknown }> };
    const embedding = body?.data?.[0]?.embedding;
    if (!Array.isArray(embedding) || embedding.length === 0 || !embedding.every((x) => typeof x === 'number' && Number.isFinite(x))) {
      throw new Error('the embeddings response has no numeric embedding');
    }
    return Float32Array.from(embedding as number[]);
  }
}

/** 32-bit FNV-1a over UTF-16 code units: fast, and collisions among a prompt's words are rare. */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
