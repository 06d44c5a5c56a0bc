// What may be cached, and under which key.
//
// The rule (README "Caching"): a route's cache mode applies only to requests whose answer is
// meant to be reproducible:
//   - embeddings: always;
//   - chat: n absent or 1, and temperature 0 or an explicit seed. Temperature absent means the
//     provider's default (1): sampled. Routes opt into caching sampled answers (cacheSampled).
// Answers that call tools are stored only when the route allows it (cacheToolCalls). Errors,
// partial and cancelled streams are never stored (the pipeline stores only complete answers).
// `x-tollgate-cache: no-cache` skips the lookup but stores; `no-store` does neither.
import { hash } from 'node:crypto';
import { canonicalize } from '../receipts/verify.js';
import type { Route } from '../routing/catalog.js';

/**
 * Chosen from the threshold sweep of `npm run eval:cache` (bench/results/cache-eval.json): the
 * lowest threshold with no false hit on the labelled set (0.900 had one, 0.7 %).
 */
export const DEFAULT_SIMILARITY_THRESHOLD = 0.925;
export const DEFAULT_TTL_SECONDS = 3600;

/** Fields that never change the answer: who asked, how it is delivered, bookkeeping. */
const NOT_PART_OF_THE_QUESTION = ['model', 'user', 'stream', 'stream_options', 'metadata', 'store', 'service_tier', 'prompt_cache_key', 'safety_identifier'];

export type CacheEndpoint = 'chat' | 'embeddings';

export interface CachePlan {
  endpoint: CacheEndpoint;
  teamId: string;
  routeName: string;
  /** Look for a stored answer before calling upstream. */
  lookup: boolean;
  /** Store a complete answer afterwards. */
  store: boolean;
  semantic: boolean;
  ttlMs: number;
  threshold: number;
  /** Team + served route and its targets + endpoint + the canonical request: the exact-match key. */
  exactKey: string;
  /** For semantic lookups: the last user turn, and a hash of everything else in the request. */
  lastUserText: string | null;
  context: string;
  /** Answers with tool calls may be stored. */
  toolCalls: boolean;
  /** The request's own output limit (the largest it names), or null: an answer cut there may be kept. */
  outputLimit: number | null;
  embeddingModel: string | null;
}

export function planCache(endpoint: CacheEndpoint, teamId: string, route: Route, body: Record<string, unknown>, header: string | undefined): CachePlan | null {
  const policy = route.cache;
  if (!policy || policy.mode === 'OFF') return null;
  // A list, as Node joins a repeated header ("no-cache, no-store"): the strictest one counts.
  const directives = new Set(
    (header ?? '')
      .toLowerCase()
      .split(',')
      .map((d) => d.trim()),
  );
  if (directives.has('no-store')) return null;
  if (endpoint === 'chat' && !policy.cacheSampled && isSampled(body, seedHonoured(route))) return null;

  const question = canonicalQuestion(body);
  // The route as served (after rules and experiments) and the models it may answer with: a
  // request routed elsewhere, or a route whose targets changed, never gets another model's answer.
  const servedBy = [route.name, targetsOf(route)];
  const exactKey = digest([teamId, servedBy, endpoint, question]);
  const semantic = policy.mode === 'SEMANTIC' && endpoint === 'chat';
  let lastUserText: string | null = null;
  let context = '';
  if (semantic) {
    const messages = question.messages as unknown[];
    const last = messages[messages.length - 1] as { role?: unknown; content?: unknown } | undefined;
    if (last?.role === 'user' && typeof last.content === 'string') {
      lastUserText = last.content;
      // All but the last turn's text, which is compared by meaning: its other members (a name) too.
      context = digest([teamId, servedBy, endpoint, { ...question, messages: [...messages.slice(0, -1), { ...last, content: null }] }]);
    }
  }
  return {
    endpoint,
    teamId,
    routeName: route.name,
    lookup: !directives.has('no-cache'),
    store: true,
    semantic: semantic && lastUserText !== null,
    ttlMs: (policy.ttlSeconds ?? DEFAULT_TTL_SECONDS) * 1000,
    threshold: policy.similarityThreshold ?? DEFAULT_SIMILARITY_THRESHOLD,
    exactKey,
    lastUserText,
    context,
    toolCalls: policy.cacheToolCalls,
    outputLimit: outputLimitOf(body),
    embeddingModel: policy.embeddingModel,
  };
}

const targetLists = new WeakMap<Route, string[]>();

/** `provider/model` of each target, in order (per route object: the catalog makes new ones when it changes). */
function targetsOf(route: Route): string[] {
  let list = targetLists.get(route);
  if (!list) {
    // The upstream model too: a modelMap change sends the same name to another model.
    list = route.targets.map((t) => `${t.provider.name}/${t.model}/${t.upstreamModel}`);
    targetLists.set(route, list);
  }
  return list;
}

/**
 * Sampled: the same request may rightly get a different answer each time. A seed makes it
 * reproducible only where every target honours one (`seedCounts`).
 */
export function isSampled(body: Record<string, unknown>, seedCounts = true): boolean {
  if (typeof body.n === 'number' && body.n > 1) return true;
  if (body.temperature === 0) return false;
  return !seedCounts || typeof body.seed !== 'number';
}

/**
 * Whether a request (its body as the client sent it) asks for what a cached answer cannot give
 * back: log probabilities, audio, Responses extras (`include`, a reasoning summary). It is
 * answered by its upstream.
 */
export function asksForUnreplayable(body: Record<string, unknown>): boolean {
  if (body.logprobs || body.top_logprobs != null) return true;
  if (Array.isArray(body.modalities) && body.modalities.includes('audio')) return true;
  if (Array.isArray(body.include) && body.include.length > 0) return true;
  return (body.reasoning as { summary?: unknown } | null | undefined)?.summary != null;
}

/** Anthropic's Messages API has no seed: a seeded request answered there is sampled all the same. */
function seedHonoured(route: Route): boolean {
  return route.targets.every((t) => t.provider.kind !== 'ANTHROPIC');
}

/**
 * The request reduced to what determines the answer: bookkeeping fields dropped, and message
 * content given as an array of text parts folded into one string (the same prompt either way).
 * Key order and whitespace disappear in canonical JSON (RFC 8785).
 */
export function canonicalQuestion(body: Record<string, unknown>): Record<string, unknown> {
  const question: Record<string, unknown> = { ...body };
  for (const field of NOT_PART_OF_THE_QUESTION) delete question[field];
  if (Array.isArray(body.messages)) question.messages = body.messages.map(normalizeMessage);
  return question;
}

function normalizeMessage(message: unknown): unknown {
  if (!message || typeof message !== 'object') return message;
  const m = message as Record<string, unknown>;
  if (!Array.isArray(m.content)) return m;
  const parts = m.content as Array<{ type?: unknown; text?: unknown }>;
  if (!parts.every((p) => p && p.type === 'text' && typeof p.text === 'string')) return m;
  return { ...m, content: parts.map((p) => p.text).join('') };
}

function digest(value: unknown): string {
  return hash('sha256', canonicalize(value) ?? '');
}

function outputLimitOf(body: Record<string, unknown>): number | null {
  let limit = 0;
  for (const field of ['max_completion_tokens', 'max_tokens', 'max_output_tokens']) {
    const v = body[field];
    if (typeof v === 'number' && v > limit) limit = v;
  }
  return limit || null;
}
