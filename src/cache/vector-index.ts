// Nearest-neighbour search for the semantic cache, one index per namespace (team + route +
// embedder). Two implementations, chosen by the embedder's vector kind:
//
// - SparseIndex for the local embedder. Its vectors are bags of hashed words and word pairs
//   (a few dozen non-zero features), so an inverted index answers exact cosine top-k by
//   touching only the entries that share a feature with the query: no approximation, O(1)
//   inserts, and a rebuild after restart is as fast as reading the entries back.
// - DenseIndex for provider embeddings (hundreds of dense float dimensions): HNSW from
//   hnswlib-node, the reference C++ implementation, with deleted slots reused.
import hnswlib from 'hnswlib-node';

/** A unit-length sparse vector: feature ids ascending, with their weights. */
export interface SparseVector {
  ids: Uint32Array;
  weights: Float32Array;
}

export type Vector = SparseVector | Float32Array;

export interface Neighbour {
  label: number;
  similarity: number;
}

export interface VectorIndex<V extends Vector = Vector> {
  readonly size: number;
  add(label: number, vector: V): void;
  remove(label: number): void;
  /** Up to k labels accepted by `accept`, most similar first (cosine similarity). */
  search(vector: V, k: number, accept: (label: number) => boolean): Neighbour[];
}

export function isSparse(v: Vector): v is SparseVector {
  return !(v instanceof Float32Array);
}

export class SparseIndex implements VectorIndex<SparseVector> {
  /** feature id → labels holding it, and the weight each gives it. */
  private readonly postings = new Map<number, { labels: number[]; weights: number[] }>();
  private readonly vectors = new Map<number, SparseVector>();
  /** Removed labels still listed in postings; compacted away once they outnumber the live. */
  private stale = 0;

  get size(): number {
    return this.vectors.size;
  }

  add(label: number, vector: SparseVector): void {
    if (this.vectors.has(label)) this.remove(label);
    this.vectors.set(label, vector);
    for (let i = 0; i < vector.ids.length; i++) {
      let list = this.postings.get(vector.ids[i]);
      if (!list) this.postings.set(vector.ids[i], (list = { labels: [], weights: [] }));
      list.labels.push(label);
      list.weights.push(vector.weights[i]);
    }
  }

  remove(label: number): void {
    if (!this.vectors.delete(label)) return;
    if (++this.stale > 1024 && this.stale > this.vectors.size) this.compact();
  }

  search(vector: SparseVector, k: number, accept: (label: number) => boolean): Neighbour[] {
    const scores = new Map<number, number>();
    for (let i = 0; i < vector.ids.length; i++) {
      const list = this.postings.get(vector.ids[i]);
      if (!list) continue;
      const w = vector.weights[i];
      const { labels, weights } = list;
      for (let j = 0; j < labels.length; j++) scores.set(labels[j], (scores.get(labels[j]) ?? 0) + w * weights[j]);
    }
    const best: Neighbour[] = [];
    for (const [label, similarity] of scores) {
      if (best.length === k && similarity <= best[k - 1].similarity) continue;
      if (!this.vectors.has(label) || !accept(label)) continue;
      insertSorted(best, { label, similarity }, k);
    }
    return best;
  }

  private compact(): void {
    this.postings.clear();
    const live = [...this.vectors];
    this.vectors.clear();
    this.stale = 0;
    for (const [label, vector] of live) this.add(label, vector);
  }
}

export class DenseIndex implements VectorIndex<Float32Array> {
  private index: hnswlib.HierarchicalNSW | null = null;
  private readonly live = new Set<number>();

  constructor(private readonly initialCapacity = 1024) {}

  get size(): number {
    return this.live.size;
  }

  add(label: number, vector: Float32Array): void {
    const index = this.ensure(vector.length);
    if (this.live.has(label)) this.remove(label);
    // Grow before full; with allowReplaceDeleted the slots of removed entries are reused first.
    if (index.getCurrentCount() >= index.getMaxElements() && this.live.size >= index.getMaxElements() / 2) {
      index.resizeIndex(index.getMaxElements() * 2);
    }
    index.addPoint(Array.from(vector), label, index.getCurrentCount() >= index.getMaxElements());
    this.live.add(label);
  }

  remove(label: number): void {
    if (!this.index || !this.live.delete(label)) return;
    this.index.markDelete(label);
  }

  search(vector: Float32Array, k: number, accept: (label: number) => boolean): Neighbour[] {
    if (!this.index || this.live.size === 0 || vector.length !== this.index.getNumDimensions()) return [];
    const n = Math.min(k, this.live.size);
    const found = this.index.searchKnn(Array.from(vector), n, (label) => this.live.has(label) && accept(label));
    // hnswlib's cosine space reports distance = 1 - cosine.
    return found.neighbors.map((label, i) => ({ label, similarity: 1 - found.distances[i] }));
  }

  private ensure(dimensions: number): hnswlib.HierarchicalNSW {
    if (this.index) {
      if (this.index.getNumDimensions() !== dimensions) throw new Error(`embedding has ${dimensions} dimensions, the index ${this.index.getNumDimensions()}`);
      return this.index;
    }
    const index = new hnswlib.HierarchicalNSW('cosine', dimensions);
    // M=16, efConstruction=100: hnswlib's recommended middle ground of recall and build time.
    index.initIndex({ maxElements: this.initialCapacity, m: 16, efConstruction: 100, randomSeed: 100, allowReplaceDeleted: true });
    index.setEf(64);
    this.index = index;
    return index;
  }
}

function insertSorted(best: Neighbour[], item: Neighbour, k: number): void {
  let i = best.length;
  while (i > 0 && best[i - 1].similarity < item.similarity) i--;
  best.splice(i, 0, item);
  if (best.length > k) best.pop();
}
