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
  get(label: number): V | undefined;
  /**
   * Up to k labels accepted by `accept`, most similar first (cosine similarity). Indexes may
   * skip anything below `minSimilarity`.
   */
  search(vector: V, k: number, accept: (label: number) => boolean, minSimilarity?: number): Neighbour[];
}

export function isSparse(v: Vector): v is SparseVector {
  return !(v instanceof Float32Array);
}

export class SparseIndex implements VectorIndex<SparseVector> {
  /**
   * feature id → the slots holding it. Most features (word pairs) belong to one entry, so a
   * lone slot is stored as the number itself: no array per feature. Postings may still list
   * freed or reused slots: every candidate is scored against the vector in its slot now, so a
   * stale posting costs a little time, never a wrong answer; compaction clears them.
   */
  private readonly postings = new Map<number, number | number[]>();
  private readonly slotOf = new Map<number, number>();
  private vectors: Array<SparseVector | undefined> = [];
  private labels: number[] = [];
  private readonly free: number[] = [];
  /** Marks candidates already seen in this search (epoch-stamped: no clearing between searches). */
  private seen = new Uint32Array(1024);
  private epoch = 0;
  private stale = 0;

  get size(): number {
    return this.slotOf.size;
  }

  add(label: number, vector: SparseVector): void {
    this.remove(label);
    const slot = this.free.pop() ?? this.vectors.length;
    this.vectors[slot] = vector;
    this.labels[slot] = label;
    this.slotOf.set(label, slot);
    for (const id of vector.ids) {
      const held = this.postings.get(id);
      if (held === undefined) this.postings.set(id, slot);
      else if (typeof held === 'number') {
        if (held !== slot) this.postings.set(id, [held, slot]);
      } else held.push(slot);
    }
  }

  remove(label: number): void {
    const slot = this.slotOf.get(label);
    if (slot === undefined) return;
    this.slotOf.delete(label);
    this.vectors[slot] = undefined;
    this.free.push(slot);
    if (++this.stale > 1024 && this.stale > this.slotOf.size) this.compact();
  }

  get(label: number): SparseVector | undefined {
    const slot = this.slotOf.get(label);
    return slot === undefined ? undefined : this.vectors[slot];
  }

  /**
   * Exact top-k by cosine. Candidates come from the postings of the query's rarest features
   * only: an entry sharing none of a set of features whose squared weights add up to more
   * than 1 - min² has cosine below min (Cauchy–Schwarz on the rest), so common words' long
   * posting lists are never walked when a threshold is given ("prefix filtering").
   */
  search(vector: SparseVector, k: number, accept: (label: number) => boolean, minSimilarity = 0): Neighbour[] {
    const lists = Array.from(vector.ids, (id, i) => ({ held: this.postings.get(id), weight: vector.weights[i] }));
    const length = (held: number | number[] | undefined) => (held === undefined ? 0 : typeof held === 'number' ? 1 : held.length);
    lists.sort((a, b) => length(a.held) - length(b.held));
    if (this.seen.length < this.vectors.length) this.seen = new Uint32Array(this.vectors.length * 2);
    const epoch = (this.epoch = (this.epoch + 1) >>> 0 || 1);
    const floor = minSimilarity > 0 ? minSimilarity * minSimilarity : -1;
    const best: Neighbour[] = [];
    const consider = (slot: number) => {
      if (this.seen[slot] === epoch) return;
      this.seen[slot] = epoch;
      const stored = this.vectors[slot];
      if (!stored) return;
      const similarity = dot(vector, stored);
      if (similarity < minSimilarity || (best.length === k && similarity <= best[k - 1].similarity)) return;
      const label = this.labels[slot];
      if (accept(label)) insertSorted(best, { label, similarity }, k);
    };
    let rest = 1;
    for (const { held, weight } of lists) {
      if (rest < floor) break;
      if (typeof held === 'number') consider(held);
      else if (held) for (const slot of held) consider(slot);
      rest -= weight * weight;
    }
    return best;
  }

  private compact(): void {
    const live = [...this.slotOf].map(([label, slot]) => [label, this.vectors[slot]!] as const);
    this.postings.clear();
    this.slotOf.clear();
    this.vectors = [];
    this.labels = [];
    this.free.length = 0;
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

  get(label: number): Float32Array | undefined {
    return this.index && this.live.has(label) ? Float32Array.from(this.index.getPoint(label)) : undefined;
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

/** Dot product of two sparse vectors (ids ascending): one merge pass. */
function dot(a: SparseVector, b: SparseVector): number {
  let sum = 0;
  for (let i = 0, j = 0; i < a.ids.length && j < b.ids.length; ) {
    if (a.ids[i] === b.ids[j]) sum += a.weights[i++] * b.weights[j++];
    else if (a.ids[i] < b.ids[j]) i++;
    else j++;
  }
  return sum;
}

function insertSorted(best: Neighbour[], item: Neighbour, k: number): void {
  let i = best.length;
  while (i > 0 && best[i - 1].similarity < item.similarity) i--;
  best.splice(i, 0, item);
  if (best.length > k) best.pop();
}
