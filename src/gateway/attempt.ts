// One call to one upstream target, as the receipt and the live feed record it: the decision
// events (ATTEMPT, then SUCCESS / FAILOVER / FAILED / CANCELLED), the Attempt entry with its
// latency, the target's health, and the classification of what the upstream answered.
import { performance } from 'node:perf_hooks';
import type { Candidate } from '../live/events.js';
import type { ParsedRequest } from '../protocols/protocol.js';
import type { UpstreamAdapter, UpstreamRequest } from '../providers/adapter.js';
import { adapterFor } from '../providers/registry.js';
import type { Attempt } from '../receipts/receipt.js';
import { roundMs } from '../receipts/receipt.js';
import type { Target } from '../routing/catalog.js';
import type { AttemptTrace } from '../telemetry/tracing.js';
import { type Cancellation, ClientGone } from './cancellation.js';
import { publishDecision } from './decisions.js';
import type { PipelineDeps } from './deps.js';
import { badRequest, GatewayError } from './errors.js';
import type { Exchange } from './exchange.js';
import { classify, parseRetryAfter, UpstreamFailure, type UpstreamResponse } from './upstream.js';
import { billedTotal, costOf, estimateCompletionTokens, estimatePromptTokens, type Usage } from './usage.js';

const MAX_ERROR_BODY = 64 * 1024;

/** Why an attempt did not answer: the failure to fail over from, and any Retry-After hint. */
export interface Unanswered {
  failure: UpstreamFailure;
  /** The upstream answered 429. */
  rateLimited: boolean;
  retryAfterMs?: number;
}

/** A target whose adapter cannot put this request in its wire format (its 400); never called. */
export interface Untakeable {
  untakeable: GatewayError;
}

/** A request as one target takes it: its adapter, and whether the client's body goes through as it is. */
export interface Prepared {
  adapter: UpstreamAdapter;
  request: UpstreamRequest;
  native: boolean;
}

/**
 * The request in `target`'s wire format, or the 400 saying it cannot take it (n > 1 for
 * Anthropic, a custom tool, a protocol it does not serve), decided before the target is called
 * or counted as an attempt: another target of the route may take it. Same protocol on both
 * sides: the client's body goes through; otherwise the canonical form is translated. A cascade
 * step is always asked for a whole canonical answer.
 */
export function prepareRequest(ex: Exchange, target: Target, cascadeStep: boolean): Prepared | Untakeable {
  const { protocol } = ex;
  const parsed = ex.parsed!;
  const adapter = adapterFor(target.provider);
  const native = !cascadeStep && adapter.wires.has(protocol.wire);
  try {
    let request: UpstreamRequest;
    if (native) request = adapter.passthrough(protocol.wire, parsed.body, target, ex.stream);
    else if (parsed.chat) request = adapter.request(parsed.chat, target, ex.stream && !cascadeStep);
    else throw badRequest(`The provider '${target.provider.name}' does not serve ${protocol.path}.`, 'model', 'unsupported_value');
    if (native && ex.passthroughHeaders) request.headers = ex.passthroughHeaders;
    return { adapter, request, native };
  } catch (err) {
    if (err instanceof GatewayError && err.status === 400) return { untakeable: err };
    throw err;
  }
}

/** What the upstream did with a request: answered (2xx), failed, or refused it (a 4xx for the client). */
export type Sent = { ok: UpstreamResponse } | { unanswered: Unanswered } | { refused: GatewayError };

export type AttemptDeps = Pick<PipelineDeps, 'health' | 'metrics' | 'bus' | 'upstream'>;

export class AttemptLog {
  readonly number: number;
  private readonly started = performance.now();
  /** When the answer's first token reached the client (a stream's), for LEAST_LATENCY. */
  private firstTokenAt: number | null = null;
  /** The attempt's span (tracing on), started when the call is made. */
  private span: AttemptTrace | null = null;

  constructor(
    private readonly deps: AttemptDeps,
    private readonly ex: Exchange,
    readonly target: Target,
    readonly candidates: Candidate[],
    private readonly signal: Cancellation,
    /** Admitted as the half-open probe: its outcome decides the breaker. */
    readonly probe: boolean,
  ) {
    this.number = ex.attempts.length + 1;
    publishDecision(deps.bus, ex, target, 'ATTEMPT', null, null, candidates, this.number);
  }

  /** The call is going out: its span starts, and its trace context goes with it. */
  calling(): Record<string, string> | undefined {
    this.span = this.ex.trace?.startAttempt(this.target) ?? null;
    return this.span?.headers;
  }

  /** Records the attempt in the receipt; its latency. */
  finish(status: number, error: string | null): number {
    this.span?.end(status, error);
    const latency = performance.now() - this.started;
    this.ex.upstreamMs += latency;
    this.ex.attempts.push({ provider: this.target.provider.name, model: this.target.model, status, error, latency_ms: roundMs(latency) });
    this.deps.metrics.upstreamAttempts.inc({ provider: this.target.provider.name, outcome: error ? 'failure' : 'success' });
    return latency;
  }

  /** The attempt's Attempt entry, once finished (for what a cascade adds to it). */
  get entry(): Attempt | undefined {
    return this.ex.attempts[this.number - 1];
  }

  failover(failure: UpstreamFailure, status: number, retryAfterMs?: number): Unanswered {
    const latency = this.finish(status, failure.kind);
    if (failure.kind === 'aborted' || this.signal.reason instanceof ClientGone) this.deps.health.release(this.target.key, this);
    else this.deps.health.onFailure(this.target.key, { retryAfterMs, probe: this.probe, latencyMs: latency });
    publishDecision(this.deps.bus, this.ex, this.target, 'FAILOVER', failure.kind, latency, this.candidates, this.number);
    return { failure, rateLimited: status === 429, retryAfterMs };
  }

  /** The streamed answer's first token went to the client. */
  firstToken(): void {
    this.firstTokenAt ??= performance.now();
  }

  succeeded(status: number, acceptance: { accepted: boolean; rejectReason: string | null } | null = null): void {
    const latency = this.finish(status, null);
    // A stream is judged by its first token: its whole time is the answer's length.
    const stream = this.firstTokenAt !== null;
    this.deps.health.onSuccess(this.target.key, stream ? this.firstTokenAt! - this.started : latency, { probe: this.probe, stream });
    publishDecision(this.deps.bus, this.ex, this.target, 'SUCCESS', null, latency, this.candidates, this.number, acceptance);
  }

  /** The upstream refused the request itself (a 4xx other than 429): no failover. */
  refused(status: number): void {
    const latency = this.finish(status, `http_${status}`);
    this.deps.health.release(this.target.key, this);
    publishDecision(this.deps.bus, this.ex, this.target, 'FAILED', `http_${status}`, latency, this.candidates, this.number);
  }

  /** Admitted but never called (the request cannot be put to this upstream). */
  release(): void {
    this.deps.health.release(this.target.key, this);
  }
}

/**
 * Posts a request and classifies the answer: 2xx, or something to fail over from (connection
 * errors, timeouts, 429 with its Retry-After, 5xx, 408, 3xx, 401), or a refusal of the
 * request itself.
 */
export async function send(
  deps: AttemptDeps,
  log: AttemptLog,
  adapter: UpstreamAdapter,
  request: UpstreamRequest,
  signal: Cancellation,
  stream: boolean,
): Promise<Sent> {
  let response: UpstreamResponse;
  try {
    const trace = log.calling();
    const headers = request.headers ? { ...trace, ...request.headers } : trace;
    response = await deps.upstream.post(log.target.provider, request.path, request.body, signal, { headers, whole: !stream });
  } catch (err) {
    return { unanswered: log.failover(classify(err, signal), 0) };
  }
  if (response.status >= 200 && response.status < 300) return { ok: response };

  let errorBody: unknown = null;
  try {
    const buf = await response.body.read(MAX_ERROR_BODY);
    errorBody = JSON.parse(buf.toString('utf8'));
  } catch {
    response.body.destroy();
  }
  const status = response.status;
  if (status === 429) {
    const retryAfterMs = parseRetryAfter(response.headers['retry-after']) ?? 1_000;
    return { unanswered: log.failover(new UpstreamFailure('network_error', `upstream rate limited (429)`), status, retryAfterMs) };
  }
  // 508: the provider is (a path back to) this Tollgate; another try goes round again. A 3xx
  // (redirects are not followed: a base URL on http:// where the provider wants https://) is
  // the provider's configuration, not the client's request: another target may answer.
  if ((status >= 500 && status !== 508) || status === 408 || (status >= 300 && status < 400)) {
    return { unanswered: log.failover(new UpstreamFailure('network_error', `upstream answered ${status}`), status) };
  }
  // A 401 is about Tollgate's own key at the provider (wrong, revoked), never the client's:
  // that target answers nobody, so it fails over and counts for its breaker. Passed on, the
  // client read its own key refused (401 invalid_api_key) while every request went to the
  // same dead target. (A 402 is not: OpenRouter's may ask for fewer max_tokens, the request's
  // own doing, and would open the breaker for everyone.)
  if (status === 401) {
    return { unanswered: log.failover(new UpstreamFailure('network_error', "the provider refused the gateway's credentials (401)"), status) };
  }
  log.refused(status);
  return { refused: adapter.error(status, errorBody) };
}

/** What an answer generated, for an estimate when its usage is missing. */
export interface Generated {
  /** Text and tool arguments. */
  text: string;
  /** Reasoning, billed as output whether or not the client saw it. */
  reasoning: string;
}

/** The usage the upstream reported, or an estimate from the request and what was generated. */
export async function usageOf(
  reported: Omit<Usage, 'estimated'> | null,
  parsed: ParsedRequest,
  generated: () => Generated,
  /** The prompt's part, where the upstream reported it before the answer (a stream cut short). */
  reportedPrompt: Omit<Usage, 'estimated'> | null = null,
): Promise<Usage> {
  if (reported) return { ...reported, estimated: false };
  const { text, reasoning } = generated();
  // As the providers count it: completion tokens include the reasoning ones.
  const reasoningTokens = await estimateCompletionTokens(reasoning);
  const output = { completionTokens: (await estimateCompletionTokens(text)) + reasoningTokens, reasoningTokens, estimated: true };
  if (reportedPrompt) return { ...reportedPrompt, ...output };
  return { promptTokens: await estimatePromptTokens(parsed.body), cachedTokens: 0, cacheWriteTokens: 0, ...output };
}

const NOTHING_GENERATED: Generated = { text: '', reasoning: '' };

/**
 * Failures after which the provider bills the call: it had read the prompt and was at work on
 * it when the client left ('aborted') or the gateway stopped waiting (a timeout after the
 * request went out; a connect timeout never reached it). Errors (5xx) and refusals are not billed.
 */
const BILLED_FAILURES = new Set(['aborted', 'timeout_first_byte', 'timeout_idle', 'timeout_total']);

/**
 * A call that answered nothing but that the provider bills (BILLED_FAILURES): its prompt,
 * estimated, at the called target's prices, goes on its attempt and on top of what the receipt
 * bills (ex.unanswered), and counts for TPM. Booked as $0, leaving mid-call or a request made to
 * time out (a huge max_tokens, a model that thinks past the timeouts) would be ways around budgets.
 */
export async function billUnansweredCall(limiter: PipelineDeps['limiter'], ex: Exchange, target: Target, failure: UpstreamFailure): Promise<void> {
  if (!BILLED_FAILURES.has(failure.kind)) return;
  // The prompt is estimated once a request (estimatePromptTokens), however many calls time out.
  const usage = await usageOf(null, ex.parsed!, () => NOTHING_GENERATED);
  limiter.recordTokens(ex.key!.id, usage.promptTokens, ex.key!.tpmLimit);
  const cost = costOf(usage, target.price);
  Object.assign(ex.attempts.at(-1)!, { prompt_tokens: usage.promptTokens, completion_tokens: 0, cost_usd: cost, accepted: null, reject_reason: null });
  const billed = ex.unanswered ? billedTotal([ex.unanswered, { usage, cost }]) : { usage, cost };
  ex.unanswered = { ...billed, target };
}

/** What a canonical answer generated (for an estimate when usage is missing). */
// biome-ignore lint/suspicious/noExplicitAny: an upstream's answer, read defensively before any codec has checked it
export function answerGenerated(answer: any): Generated {
  let text = '';
  let reasoning = '';
  for (const c of answer?.choices ?? []) {
    const message = c?.message;
    if (typeof message?.content === 'string') text += message.content;
    for (const tc of message?.tool_calls ?? []) if (typeof tc?.function?.arguments === 'string') text += tc.function.arguments;
    const thought = message?.reasoning_content ?? message?.reasoning;
    if (typeof thought === 'string') reasoning += thought;
  }
  return { text, reasoning };
}
