// The semantic side of the cache: which stored entry, if any, answers a new prompt.
//
// A hit needs all three:
//  - the same namespace (team + route + embedder) and the same conversation context (every
//    message before the last user turn, tools, sampling parameters: hashed by the caller);
//  - cosine similarity of the last user turns at or above the route's threshold;
//  - agreement on the details that change an answer (numbers, negations, units, dates, names:
//    see text.ts), which embeddings are known to blur.
import { analyze, detailsAgree, type TextAnalysis } from './text.js';
import { DenseIndex, isSparse, SparseIndex, type Vector, type VectorIndex } from './vector-index.js';

/** Candidates examined per lookup: the nearest may fail the detail check while the next passes. */
const CANDIDATES = 8;

interface Member {
  key: string;
  context: string;
  /** The stored prompt, analysed only when it is a candidate (memory over CPU: it is rare). */
  text: string;
}

interface Namespace {
  name: string;
  index: VectorIndex;
  members: Map<number, Member>;
}

export interface SemanticMatch {
  key: string;
  similarity: number;
}

export class SemanticIndex {
  private readonly namespaces = new Map<string, Namespace>();
  private readonly byKey = new Map<string, { namespace: string; label: number }>();
  /**
   * One copy of each context string, counted: most entries of a route share their context
   * (the same system prompt and parameters), and a 64-character hash per entry was 8 MB per
   * 100k entries in bench:cache.
   */
  private readonly contexts = new Map<string, { context: string; refs: number }>();
  private nextLabel = 1;

  get size(): number {
    return this.byKey.size;
  }

  /**
   * Returns the namespace and context as this index keeps them (one shared copy of each), for
   * the caller to hold instead of its own.
   */
  add(namespace: string, key: string, context: string, text: string, vector: Vector): { namespace: string; context: string; text: string } {
    this.remove(key);
    let ns = this.namespaces.get(namespace);
    if (!ns) this.namespaces.set(namespace, (ns = { name: namespace, index: isSparse(vector) ? new SparseIndex() : new DenseIndex(), members: new Map() }));
    const label = this.nextLabel++;
    // First, as it may throw (a vector of another length than the namespace's): nothing else changed then.
    try {
      ns.index.add(label, vector as never);
    } catch (err) {
      if (ns.members.size === 0) this.namespaces.delete(namespace);
      throw err;
    }
    let shared = this.contexts.get(context);
    if (!shared) this.contexts.set(context, (shared = { context, refs: 0 }));
    shared.refs++;
    ns.members.set(label, { key, context: shared.context, text });
    this.byKey.set(key, { namespace: ns.name, label });
    return { namespace: ns.name, context: shared.context, text };
  }

  remove(key: string): void {
    const at = this.byKey.get(key);
    if (!at) return;
    this.byKey.delete(key);
    const ns = this.namespaces.get(at.namespace)!;
    ns.index.remove(at.label);
    const member = ns.members.get(at.label)!;
    ns.members.delete(at.label);
    const shared = this.contexts.get(member.context);
    if (shared && --shared.refs === 0) this.contexts.delete(member.context);
    if (ns.members.size === 0) this.namespaces.delete(at.namespace);
  }

  vectorOf(key: string): Vector | undefined {
    const at = this.byKey.get(key);
    return at ? this.namespaces.get(at.namespace)?.index.get(at.label) : undefined;
  }

  /**
   * The most similar entry at or above `threshold` whose details agree, or null.
   * `checkDetails: false` exists for the evaluation, to measure what the detail check buys.
   */
  find(namespace: string, context: string, text: string, vector: Vector, threshold: number, checkDetails = true): SemanticMatch | null {
    const ns = this.namespaces.get(namespace);
    if (!ns) return null;
    const neighbours = ns.index.search(vector as never, CANDIDATES, (label) => ns.members.get(label)?.context === context, threshold);
    let analysis: TextAnalysis | null = null;
    for (const { label, similarity } of neighbours) {
      if (similarity < threshold) break;
      const member = ns.members.get(label)!;
      analysis ??= analyze(text);
      if (!checkDetails || detailsAgree(analysis, analyze(member.text))) return { key: member.key, similarity: Math.min(1, similarity) };
    }
    return null;
  }
}
