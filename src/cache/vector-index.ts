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
  // Everything lives in a few typed arrays rather than an object, two typed arrays and Map
  // entries per stored vector: at 100k entries (30 features each) those objects were 126 MB of
  // JS heap (bench:cache). Freed vectors and their postings stay in the arrays as garbage until
  // compaction rebuilds them from the live vectors.

  /** The vectors' features, back to back: a slot's vector is `length[slot]` features from `start[slot]`. */
  private ids = new Uint32Array(0);
  private weights = new Float32Array(0);
  private used = 0;
  private start = new Uint32Array(0);
  private length = new Uint32Array(0);
  /** Slot → label, NaN for a free slot. */
  private labels = new Float64Array(0);
  private slots = 0;
  private readonly slotOf = new Map<number, number>();
  private readonly free: number[] = [];

  /**
   * feature id → its postings (the slots holding it), as a linked list in insertion order
   * through `nodeSlot`/`nodeNext`. Open addressing: `tableHead` is -1 where nothing is stored.
   * Postings may list freed or reused slots: every candidate is scored against the vector in
   * its slot now, so a stale posting costs a little time, never a wrong answer.
   */
  private tableKey = new Uint32Array(0);
  private tableHead = new Int32Array(0);
  private tableTail = new Int32Array(0);
  private tableCount = new Uint32Array(0);
  private features = 0;
  private nodeSlot = new Int32Array(0);
  private nodeNext = new Int32Array(0);
  private nodes = 0;

  /** Marks candidates already seen in this search (epoch-stamped: no clearing between searches). */
  private seen = new Uint32Array(1024);
  private epoch = 0;
  private stale = 0;

  constructor() {
    // Small to begin with: there is an index per namespace (team + route + embedder), and
    // most hold few entries. The arrays double as they fill.
    this.reset(16, 512);
  }

  get size(): number {
    return this.slotOf.size;
  }

  add(label: number, vector: SparseVector): void {
    this.remove(label);
    const n = vector.ids.length;
    const slot = this.free.pop() ?? this.newSlot();
    if (this.used + n > this.ids.length) {
      this.ids = grown(this.ids, this.used + n);
      this.weights = grown(this.weights, this.used + n);
    }
    this.ids.set(vector.ids, this.used);
    this.weights.set(vector.weights, this.used);
    this.start[slot] = this.used;
    this.length[slot] = n;
    this.used += n;
    this.labels[slot] = label;
    this.slotOf.set(label, slot);
    for (let i = 0; i < n; i++) this.post(vector.ids[i], slot);
  }

  remove(label: number): void {
    const slot = this.slotOf.get(label);
    if (slot === undefined) return;
    this.slotOf.delete(label);
    this.labels[slot] = Number.NaN;
    this.free.push(slot);
    if (++this.stale > 1024 && this.stale > this.slotOf.size) this.compact();
  }

  get(label: number): SparseVector | undefined {
    const slot = this.slotOf.get(label);
    if (slot === undefined) return undefined;
    const from = this.start[slot];
    const to = from + this.length[slot];
    return { ids: this.ids.slice(from, to), weights: this.weights.slice(from, to) };
  }

  /**
   * Exact top-k by cosine. Candidates come from the postings of the query's rarest features
   * only: an entry sharing none of a set of features whose squared weights add up to more
   * than 1 - min² has cosine below min (Cauchy–Schwarz on the rest), so common words' long
   * posting lists are never walked when a threshold is given ("prefix filtering").
   */
  search(vector: SparseVector, k: number, accept: (label: number) => boolean, minSimilarity = 0): Neighbour[] {
    const lists = Array.from(vector.ids, (id, i) => {
      const at = this.find(id);
      return { head: at < 0 ? -1 : this.tableHead[at], count: at < 0 ? 0 : this.tableCount[at], weight: vector.weights[i] };
    });
    lists.sort((a, b) => a.count - b.count);
    if (this.seen.length < this.slots) this.seen = new Uint32Array(this.slots * 2);
    const epoch = (this.epoch = (this.epoch + 1) >>> 0 || 1);
    const floor = minSimilarity > 0 ? minSimilarity * minSimilarity : -1;
    const best: Neighbour[] = [];
    let rest = 1;
    for (const { head, weight } of lists) {
      if (rest < floor) break;
      for (let node = head; node >= 0; node = this.nodeNext[node]) {
        const slot = this.nodeSlot[node];
        if (this.seen[slot] === epoch) continue;
        this.seen[slot] = epoch;
        const label = this.labels[slot];
        if (Number.isNaN(label)) continue;
        const similarity = this.dot(vector, slot);
        if (similarity < minSimilarity || (best.length === k && similarity <= best[k - 1].similarity)) continue;
        if (accept(label)) insertSorted(best, { label, similarity }, k);
      }
      rest -= weight * weight;
    }
    return best;
  }

  /** Dot product of a query with the vector in a slot (ids ascending in both): one merge pass. */
  private dot(a: SparseVector, slot: number): number {
    const ids = this.ids;
    const weights = this.weights;
    const end = this.start[slot] + this.length[slot];
    let sum = 0;
    for (let i = 0, j = this.start[slot]; i < a.ids.length && j < end; ) {
      if (a.ids[i] === ids[j]) sum += a.weights[i++] * weights[j++];
      else if (a.ids[i] < ids[j]) i++;
      else j++;
    }
    return sum;
  }

  private newSlot(): number {
    if (this.slots === this.labels.length) {
      this.start = grown(this.start, this.slots + 1);
      this.length = grown(this.length, this.slots + 1);
      this.labels = grown(this.labels, this.slots + 1);
    }
    return this.slots++;
  }

  /** Where feature `id` sits in the table, or -1. */
  private find(id: number): number {
    const mask = this.tableKey.length - 1;
    for (let at = mix(id) & mask; ; at = (at + 1) & mask) {
      if (this.tableHead[at] < 0) return -1;
      if (this.tableKey[at] === id) return at;
    }
  }

  private post(id: number, slot: number): void {
    if (this.nodes === this.nodeSlot.length) {
      this.nodeSlot = grown(this.nodeSlot, this.nodes + 1);
      this.nodeNext = grown(this.nodeNext, this.nodes + 1);
    }
    const node = this.nodes++;
    this.nodeSlot[node] = slot;
    this.nodeNext[node] = -1;
    const mask = this.tableKey.length - 1;
    let at = mix(id) & mask;
    while (this.tableHead[at] >= 0 && this.tableKey[at] !== id) at = (at + 1) & mask;
    if (this.tableHead[at] < 0) {
      this.tableKey[at] = id;
      this.tableHead[at] = node;
      this.tableTail[at] = node;
      this.tableCount[at] = 1;
      // Keep the table at most 3/4 full: linear probing slows down sharply above that.
      if (++this.features * 4 > this.tableKey.length * 3) this.rehash(this.tableKey.length * 2);
    } else {
      this.nodeNext[this.tableTail[at]] = node;
      this.tableTail[at] = node;
      this.tableCount[at]++;
    }
  }

  private rehash(capacity: number): void {
    const { tableKey, tableHead, tableTail, tableCount } = this;
    this.tableKey = new Uint32Array(capacity);
    this.tableHead = new Int32Array(capacity).fill(-1);
    this.tableTail = new Int32Array(capacity);
    this.tableCount = new Uint32Array(capacity);
    const mask = capacity - 1;
    for (let i = 0; i < tableKey.length; i++) {
      if (tableHead[i] < 0) continue;
      let at = mix(tableKey[i]) & mask;
      while (this.tableHead[at] >= 0) at = (at + 1) & mask;
      this.tableKey[at] = tableKey[i];
      this.tableHead[at] = tableHead[i];
      this.tableTail[at] = tableTail[i];
      this.tableCount[at] = tableCount[i];
    }
  }

  private reset(slots: number, features: number): void {
    this.ids = new Uint32Array(features);
    this.weights = new Float32Array(features);
    this.used = 0;
    this.start = new Uint32Array(slots);
    this.length = new Uint32Array(slots);
    this.labels = new Float64Array(slots);
    this.slots = 0;
    this.slotOf.clear();
    this.free.length = 0;
    let capacity = 64;
    while (capacity * 3 < features * 4) capacity *= 2;
    this.tableKey = new Uint32Array(capacity);
    this.tableHead = new Int32Array(capacity).fill(-1);
    this.tableTail = new Int32Array(capacity);
    this.tableCount = new Uint32Array(capacity);
    this.features = 0;
    this.nodeSlot = new Int32Array(features);
    this.nodeNext = new Int32Array(features);
    this.nodes = 0;
    this.stale = 0;
  }

  private compact(): void {
    const live = [...this.slotOf].map(([label, slot]) => [label, this.start[slot], this.length[slot]] as const);
    const { ids, weights } = this;
    const features = live.reduce((sum, [, , n]) => sum + n, 0);
    this.reset(Math.max(16, live.length), Math.max(512, features));
    for (const [label, from, n] of live) this.add(label, { ids: ids.subarray(from, from + n), weights: weights.subarray(from, from + n) });
  }
}

/** A typed array with room for at least `needed` elements: doubled, contents kept. */
function grown<T extends Uint32Array | Int32Array | Float32Array | Float64Array>(array: T, needed: number): T {
  let capacity = Math.max(64, array.length);
  while (capacity < needed) capacity *= 2;
  const next = new (array.constructor as new (n: number) => T)(capacity);
  next.set(array as never);
  return next;
}

/** Spreads feature ids over the table (they are FNV hashes, but their low bits are what is used). */
function mix(id: number): number {
  return Math.imul(id ^ (id >>> 16), 0x45d9f3b) >>> 0;
}

/**
 * Dense vectors (a provider's embeddings). Up to `flatLimit` of them are searched exactly, by
 * brute force over unit-length copies; past that they move into hnswlib (HNSW). An hnswlib index
 * costs ~2.6 MB before its first vector (65,536 label locks, whatever its capacity), too much for
 * each of the many small namespaces (team × route × embedder) a semantic cache holds, and 256
 * dot products of 1,536 dimensions take ~0.3 ms.
 */
export class DenseIndex implements VectorIndex<Float32Array> {
  private index: hnswlib.HierarchicalNSW | null = null;
  private readonly live = new Set<number>();
  /** Unit-length vectors while the index is flat; null once they are in hnswlib. */
  private flat: Map<number, Float32Array> | null = new Map();
  private dimensions = 0;

  constructor(
    private readonly initialCapacity = 1024,
    private readonly flatLimit = 256,
  ) {}

  get size(): number {
    return this.live.size;
  }

  add(label: number, vector: Float32Array): void {
    if (this.dimensions === 0) this.dimensions = vector.length;
    else if (vector.length !== this.dimensions) throw new Error(`embedding has ${vector.length} dimensions, the index ${this.dimensions}`);
    if (this.flat && (this.flat.size < this.flatLimit || this.flat.has(label))) {
      this.flat.set(label, unit(vector));
      this.live.add(label);
      return;
    }
    const index = this.flat ? this.promote() : this.index!;
    if (this.live.has(label)) this.remove(label);
    // Grow before full; with allowReplaceDeleted the slots of removed entries are reused first.
    if (index.getCurrentCount() >= index.getMaxElements() && this.live.size >= index.getMaxElements() / 2) {
      index.resizeIndex(index.getMaxElements() * 2);
    }
    index.addPoint(Array.from(vector), label, index.getCurrentCount() >= index.getMaxElements());
    this.live.add(label);
  }

  remove(label: number): void {
    if (!this.live.delete(label)) return;
    if (this.flat) this.flat.delete(label);
    else this.index!.markDelete(label);
  }

  get(label: number): Float32Array | undefined {
    if (!this.live.has(label)) return undefined;
    return this.flat ? Float32Array.from(this.flat.get(label)!) : Float32Array.from(this.index!.getPoint(label));
  }

  search(vector: Float32Array, k: number, accept: (label: number) => boolean): Neighbour[] {
    if (this.live.size === 0 || vector.length !== this.dimensions) return [];
    if (this.flat) {
      const query = unit(vector);
      const best: Neighbour[] = [];
      for (const [label, v] of this.flat) {
        if (!accept(label)) continue;
        let dot = 0;
        for (let d = 0; d < v.length; d++) dot += query[d] * v[d];
        if (best.length < k || dot > best[best.length - 1].similarity) insertSorted(best, { label, similarity: dot }, k);
      }
      return best;
    }
    const n = Math.min(k, this.live.size);
    const found = this.index!.searchKnn(Array.from(vector), n, (label) => this.live.has(label) && accept(label));
    // hnswlib's cosine space reports distance = 1 - cosine.
    return found.neighbors.map((label, i) => ({ label, similarity: 1 - found.distances[i] }));
  }

  /** Moves the flat vectors into a new hnswlib index. */
  private promote(): hnswlib.HierarchicalNSW {
    const flat = this.flat!;
    this.flat = null;
    const index = new hnswlib.HierarchicalNSW('cosine', this.dimensions);
    // M=16, efConstruction=100: hnswlib's recommended middle ground of recall and build time.
    index.initIndex({ maxElements: Math.max(this.initialCapacity, 2 * flat.size), m: 16, efConstruction: 100, randomSeed: 100, allowReplaceDeleted: true });
    index.setEf(64);
    for (const [label, v] of flat) index.addPoint(Array.from(v), label);
    this.index = index;
    return index;
  }
}

/** `v` scaled to length 1 (a copy; zeros stay zeros). */
function unit(v: Float32Array): Float32Array {
  let norm = 0;
  for (let d = 0; d < v.length; d++) norm += v[d] * v[d];
  const out = new Float32Array(v.length);
  if (norm === 0) return out;
  const scale = 1 / Math.sqrt(norm);
  for (let d = 0; d < v.length; d++) out[d] = v[d] * scale;
  return out;
}

function insertSorted(best: Neighbour[], item: Neighbour, k: number): void {
  let i = best.length;
  while (i > 0 && best[i - 1].similarity < item.similarity) i--;
  best.splice(i, 0, item);
  if (best.length > k) best.pop();
}
