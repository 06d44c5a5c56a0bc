// What the simulator does for a request, per model and for a bounded number of requests: the
// behaviour controls tests and the demo set (latency, pacing, errors, hangs, broken streams,
// usage), and the book that resolves which apply.
//
// Behaviour resolution for a request whose body.model is M (first match wins for each layer):
//   effective = { ...default, ...standing[M], ...(queued[M] head ?? queued-default head) }
// where `behave(M, b)` without `times` sets standing[M], with `times` appends to M's queue, and
// `setDefault(b)` without `times` replaces the default, with `times` appends to a queue that
// applies to every model. A queued entry is consumed once per matching request; after `times`
// uses it is dropped and the next one (or nothing) applies. GET /models ignores behaviours.

export interface SimBehaviour {
  /** Delay before response headers (default 0). */
  latencyMs?: number;
  /** Stream: extra delay after the headers, before the first SSE chunk (default 0). JSON: added to the wait. */
  ttftMs?: number;
  /** Pacing of token chunks; 0/undefined = as fast as possible. */
  tokensPerSecond?: number;
  /**
   * How many tokens (= stream content chunks) each choice has (default 8). A fixed `content` is
   * divided into this many slices when set, else into one piece per word.
   */
  completionTokens?: number;
  /** Answer with this HTTP error status (>= 400) and an error body in the wire's shape; a 3xx redirects to https. */
  status?: number;
  /** With status 429 (or any status): send a Retry-After header with this many seconds. */
  retryAfterSeconds?: number;
  /**
   * Never finish (until the client goes away or the server closes). 'after-first-chunk' means
   * after the role chunk and the first token chunk (JSON: after the first bytes of the body);
   * 'after-done' (OpenAI chat stream) after `data: [DONE]`, the connection left open.
   */
  hang?: 'before-headers' | 'after-headers' | 'after-first-chunk' | 'after-done';
  /** OpenAI chat stream: an SSE comment before the first chunk, as OpenRouter sends while it reaches the model. */
  processingComment?: boolean;
  /**
   * Keep-alives while the model thinks (ttftMs): OpenAI chat stream with processingComment,
   * the comment again every this many ms (OpenRouter); Anthropic stream, message_start at once
   * and then a ping every this many ms.
   */
  processingEveryMs?: number;
  /** Stream: close the connection after N token chunks, without the terminating chunk (mid-stream break). */
  breakAfterChunks?: number;
  /**
   * OpenAI chat stream: after N token chunks, an error chunk (`data: {"error": …}`) and then
   * `data: [DONE]`, as vLLM ends a generation that fails mid-stream.
   */
  errorAfterChunks?: number;
  /** With errorAfterChunks: the rest of the answer after the error chunk, as if nothing happened. */
  continueAfterError?: boolean;
  /** With errorAfterChunks: the error chunk's message (default "generation failed (simulated)"). */
  errorMessage?: string;
  /** OpenAI chat stream: after `data: [DONE]`, break the connection instead of ending it cleanly. */
  breakAfterDone?: boolean;
  /** Stream: wait this long between consecutive writes (slow drip, for idle timeouts). */
  dripMs?: number;
  /** Never send usage (JSON: no usage field; stream: no usage chunk even if asked). */
  omitUsage?: boolean;
  /** OpenAI wire: these members replace the usage object's (a broken provider's counts: 12.5, -1, 5e9). */
  usageOverride?: Record<string, unknown>;
  /**
   * Prompt tokens reported as read from the provider's prompt cache, on top of the prompt's own
   * estimate (OpenAI wire: in prompt_tokens and prompt_tokens_details.cached_tokens; Anthropic
   * wire: cache_read_input_tokens, input_tokens staying the estimate).
   */
  cacheReadTokens?: number;
  /** Anthropic wire only: prompt tokens reported as written to the cache (cache_creation_input_tokens). */
  cacheWriteTokens?: number;
  /**
   * OpenAI wire only: output tokens reported as reasoning, on top of the answer's own tokens
   * (in completion_tokens and completion_tokens_details.reasoning_tokens; Responses: in
   * output_tokens and output_tokens_details.reasoning_tokens).
   */
  reasoningTokens?: number;
  /** Apply this behaviour to the next N matching requests only, then fall back. */
  times?: number;
  /** Fixed answer text (else a deterministic text derived from the prompt). Used as-is in JSON mode. */
  content?: string;
  /** A tool call's arguments, as-is (valid JSON or not), instead of ones sampled from its schema. */
  toolArguments?: string;
  /** Refuse: this text as the refusal (OpenAI `refusal`, Anthropic stop reason `refusal`). */
  refusal?: string;
  /** Stop for this reason whatever the answer (a truncation, a content filter). */
  finishReason?: 'length' | 'content_filter';
  /** OpenAI wire, JSON: the message's content as a list of text parts, as some compatible servers send it. */
  contentParts?: boolean;
}

/** Models listed by GET /models, besides any model named in behave(). Any model name is accepted. */
export const SIMULATED_MODELS: readonly string[] = ['sim-chat', 'sim-chat-mini', 'sim-embed'];
export const OWNER = 'tollgate-sim';

interface Queued {
  behaviour: SimBehaviour;
  remaining: number;
}

export class BehaviourBook {
  private base: SimBehaviour;
  private readonly globalQueue: Queued[] = [];
  private readonly standing = new Map<string, SimBehaviour>();
  private readonly queues = new Map<string, Queued[]>();
  private models: string | undefined;

  constructor(private readonly initial: SimBehaviour) {
    this.base = { ...initial, times: undefined };
  }

  setDefault(b: SimBehaviour): void {
    if (b.times === undefined) this.base = { ...b };
    else if (b.times > 0) this.globalQueue.push({ behaviour: { ...b }, remaining: b.times });
  }

  behave(model: string, b: SimBehaviour): void {
    if (b.times === undefined) this.standing.set(model, { ...b });
    else if (b.times > 0) {
      let queue = this.queues.get(model);
      if (!queue) this.queues.set(model, (queue = []));
      queue.push({ behaviour: { ...b }, remaining: b.times });
    }
    this.models = undefined; // the model list includes behaved models
  }

  reset(): void {
    this.base = { ...this.initial, times: undefined };
    this.globalQueue.length = 0;
    this.standing.clear();
    this.queues.clear();
    this.models = undefined;
  }

  /** The behaviour for one request; consumes one use of a queued entry. */
  resolve(model: string): SimBehaviour {
    // Hot path for benchmarks: nothing configured besides the default.
    if (this.queues.size === 0 && this.standing.size === 0 && this.globalQueue.length === 0) return this.base;
    const queue = this.queues.get(model);
    let queued: SimBehaviour | undefined;
    if (queue) {
      queued = take(queue);
      if (queue.length === 0) this.queues.delete(model);
    }
    queued ??= take(this.globalQueue);
    const standing = this.standing.get(model);
    if (!queued && !standing) return this.base;
    return { ...this.base, ...standing, ...queued };
  }

  modelsJson(): string {
    if (this.models === undefined) {
      const names = new Set<string>(SIMULATED_MODELS);
      for (const m of this.standing.keys()) names.add(m);
      for (const m of this.queues.keys()) names.add(m);
      this.models = JSON.stringify({
        object: 'list',
        data: [...names].map((id) => ({ id, object: 'model', created: 0, owned_by: OWNER })),
      });
    }
    return this.models;
  }
}

function take(queue: Queued[]): SimBehaviour | undefined {
  const head = queue[0];
  if (!head) return undefined;
  if (--head.remaining <= 0) queue.shift();
  return head.behaviour;
}
