// The cache stage of the proxy path: plan (may this request use the cache?), look up (exact,
// then semantic), and store a complete answer after a miss. The rules are in cache/policy.ts.
import { performance } from 'node:perf_hooks';
import { type Embedder, LocalEmbedder, ProviderEmbedder } from '../cache/embedders.js';
import { type CacheEndpoint, type CachePlan, planCache } from '../cache/policy.js';
import type { AnswerStore, CachedAnswer } from '../cache/store.js';
import type { Vector } from '../cache/vector-index.js';
import { callsTools } from '../protocols/assemble.js';
import { type ChatCompletion, isProviderEnding } from '../protocols/canonical.js';
import type { CacheStatus, UnsignedReceipt } from '../receipts/receipt.js';
import type { Catalog, Route, Target } from '../routing/catalog.js';
import type { TargetHealth } from '../routing/health.js';
import type { UpstreamClient } from './upstream.js';
import { readUsage, toChatUsage } from './usage.js';

/**
 * A receipt's token counts as an answer's usage: for an answer the upstream reported none for,
 * so that a hit reports the original's tokens, not 0/0.
 */
function receiptUsage(r: UnsignedReceipt) {
  return toChatUsage({
    promptTokens: r.prompt_tokens,
    completionTokens: r.completion_tokens,
    cachedTokens: r.cached_tokens,
    cacheWriteTokens: r.cache_write_tokens ?? 0,
    reasoningTokens: r.reasoning_tokens ?? 0,
    estimated: r.usage_estimated,
  });
}

export interface CacheHit {
  status: Extract<CacheStatus, 'exact' | 'semantic'>;
  entry: CachedAnswer;
  similarity: number;
}

/** What a lookup learned that the store after a miss can reuse. */
export interface CacheLookup {
  plan: CachePlan;
  namespace: string | null;
  vector: Vector | null;
}

const MAX_EMBEDDING_RESPONSE = 4 * 1024 * 1024;
/** A slow embeddings model must not hold the request long: past this, the lookup is a miss. */
const EMBEDDING_TIMEOUT_MS = 5_000;

export class CacheStage {
  private readonly local = new LocalEmbedder();
  /** One embedder per target; a catalog refresh makes new targets, so stale ones fall away. */
  private readonly providerEmbedders = new WeakMap<Target, ProviderEmbedder>();

  constructor(
    private readonly answers: AnswerStore,
    private readonly catalog: () => Catalog,
    private readonly upstream: UpstreamClient,
    /** The embeddings model's breaker: while it is open, lookups go without (a miss), not wait on it. */
    private readonly health: TargetHealth,
    private readonly onError: (err: unknown, what: string) => void,
  ) {}

  plan(endpoint: CacheEndpoint, teamId: string, route: Route, body: Record<string, unknown>, header: string | string[] | undefined): CachePlan | null {
    return planCache(endpoint, teamId, route, body, Array.isArray(header) ? header.join(',') : header);
  }

  /** Exact first, then semantic. Returns the hit, and what a later store needs. */
  async lookup(plan: CachePlan, signal?: AbortSignal): Promise<{ hit: CacheHit | null; lookup: CacheLookup }> {
    const lookup: CacheLookup = { plan, namespace: null, vector: null };
    if (plan.lookup) {
      const exact = await this.answers.getExact(plan.exactKey);
      if (exact) return { hit: { status: 'exact', entry: exact, similarity: 1 }, lookup };
    }
    if (!plan.semantic || plan.lastUserText === null) return { hit: null, lookup };
    const embedder = this.embedderFor(plan);
    if (!embedder) return { hit: null, lookup };
    try {
      lookup.vector = await embedder.embed(plan.lastUserText, signal);
      lookup.namespace = `${plan.teamId}\u0000${plan.routeName}\u0000${embedder.id}`;
    } catch (err) {
      this.onError(err, 'embedding for the semantic cache');
      return { hit: null, lookup };
    }
    if (!plan.lookup) return { hit: null, lookup };
    const similar = this.answers.findSimilar(lookup.namespace, plan.context, plan.lastUserText, lookup.vector, plan.threshold);
    return { hit: similar ? { status: 'semantic', entry: similar.entry, similarity: similar.similarity } : null, lookup };
  }

  /**
   * Stores a complete answer (never errors, partial or cancelled streams: callers decide) with
   * what its request cost (`receipt`: the saved cost of a hit).
   */
  async store(lookup: CacheLookup, answer: Record<string, unknown>, receipt: UnsignedReceipt, provider: string, model: string): Promise<void> {
    const { plan } = lookup;
    if (!plan.store) return;
    const chat = plan.endpoint === 'chat';
    // Only an answer in its shape: a 200 whose body is an error object is replayed for no one.
    if (!Array.isArray(chat ? answer.choices : answer.data)) return;
    if (chat ? !hasContent(answer as unknown as ChatCompletion) : (answer.data as unknown[]).length === 0) return;
    if (chat && !plan.toolCalls && callsTools(answer as unknown as ChatCompletion)) return;
    if (chat && !endedWhole(answer as unknown as ChatCompletion, plan.outputLimit, receipt)) return;
    const json = JSON.stringify(chat && !readUsage(answer.usage) ? { ...answer, usage: receiptUsage(receipt) } : answer);
    const now = Date.now();
    const entry: CachedAnswer = {
      key: plan.exactKey,
      teamId: plan.teamId,
      createdAt: now,
      expiresAt: now + plan.ttlMs,
      answer: json,
      costUsd: receipt.cost_usd,
      usageEstimated: receipt.usage_estimated,
      provider,
      model,
      semantic: lookup.namespace && plan.lastUserText !== null ? { namespace: lookup.namespace, context: plan.context, text: plan.lastUserText } : null,
    };
    await this.answers.put(entry, lookup.namespace ? lookup.vector : null);
  }

  /** The local embedder, or the route's embeddings model called through our upstream layer. */
  private embedderFor(plan: CachePlan): Embedder | null {
    if (!plan.embeddingModel) return this.local;
    const route = this.catalog().resolve(plan.embeddingModel);
    const target = route?.targets[0];
    if (!target) {
      this.onError(new Error(`embedding model '${plan.embeddingModel}' is not configured`), 'semantic cache');
      return null;
    }
    let embedder = this.providerEmbedders.get(target);
    if (!embedder) {
      // The upstream model too: another one (a modelMap change) has vectors of another length.
      embedder = new ProviderEmbedder(`provider:${target.key}:${target.upstreamModel}`, async (input, signal = AbortSignal.timeout(EMBEDDING_TIMEOUT_MS)) => {
        // A model that is down or hanging would add up to the timeout to every request.
        const admission = this.health.admit(target.key);
        if (!admission.ok) throw new Error(`embeddings model ${target.key} skipped (${admission.reason})`);
        const started = performance.now();
        // A refusal of this input (a 4xx: too long, say) says nothing about the model.
        let outcome: 'answered' | 'refused' | 'failed' = 'failed';
        try {
          const response = await this.upstream.post(target.provider, '/embeddings', JSON.stringify({ model: target.upstreamModel, input }), signal, {
            whole: true,
          });
          const buf = await response.body.read(MAX_EMBEDDING_RESPONSE);
          if (response.status !== 200) {
            if (response.status >= 400 && response.status < 500 && response.status !== 408 && response.status !== 429) outcome = 'refused';
            throw new Error(`embeddings call answered ${response.status}`);
          }
          const body = JSON.parse(buf.toString('utf8'));
          outcome = 'answered';
          return body;
        } finally {
          const { probe } = admission;
          if (outcome === 'answered') this.health.onSuccess(target.key, performance.now() - started, { probe });
          else if (outcome === 'refused') this.health.release(target.key, { probe });
          else this.health.onFailure(target.key, { probe, latencyMs: performance.now() - started });
        }
      });
      this.providerEmbedders.set(target, embedder);
    }
    return embedder;
  }
}

/**
 * Something in it: text, a refusal or a tool call in some choice. A 200 with no choices, or only
 * empty ones (an upstream's glitch, a filter that says nothing), would be every identical
 * request's answer until it expired.
 */
function hasContent(answer: ChatCompletion): boolean {
  return (answer.choices ?? []).some((choice) => {
    const m = choice?.message;
    if (!m) return false;
    const content = m.content as unknown;
    return ((typeof content === 'string' || Array.isArray(content)) && content.length > 0) || !!m.refusal || (m.tool_calls?.length ?? 0) > 0;
  });
}

/**
 * Whether an answer may be kept for the next identical request: one its provider filtered, or
 * cut short for reasons of its own (its resources, its context window), would be served again
 * as if whole. A cut at the request's own output limit repeats and is kept: the completion
 * reached the limit (`outputLimit` × choices).
 */
function endedWhole(answer: ChatCompletion, outputLimit: number | null, receipt: UnsignedReceipt): boolean {
  let cut = false;
  for (const choice of answer.choices ?? []) {
    // A stream relayed as sent keeps its provider's own reasons: each is a filter or a cut.
    const reason = choice?.finish_reason;
    if (reason === 'content_filter' || isProviderEnding(reason)) return false;
    if (reason === 'length') cut = true;
  }
  return !cut || (outputLimit !== null && receipt.completion_tokens >= outputLimit * answer.choices.length);
}
