// What the pipeline asks of a client protocol (one codec per wire format a client speaks:
// chat completions, Responses, Anthropic Messages, embeddings) and of a stream on its way to
// the client. The pipeline itself never looks inside a protocol's bodies: it routes, fails
// over, caches and writes receipts over the canonical form (canonical.ts).
import type { IncomingMessage } from 'node:http';
import type { GatewayError } from '../gateway/errors.js';
import type { ChatChunk, ChatCompletion, ChatRequest, ChatUsage } from './canonical.js';

/** The short names of DESIGN §5 (CEL's `request.endpoint`, explainRoute). */
export type Endpoint = 'chat' | 'responses' | 'messages' | 'embeddings';

/** A wire format an upstream may speak natively. Same wire on both sides = passthrough. */
export type Wire = 'chat' | 'responses' | 'messages' | 'embeddings';

export interface ParsedRequest {
  /**
   * The body as the client sent it (validated): forwarded as is to an upstream of the same
   * wire. `prepare` may make it self-contained (Responses: the stored conversation a
   * previous_response_id points at, put into its input).
   */
  body: Record<string, unknown>;
  /** The request in the canonical form (for chat completions: `body` itself; null for embeddings). */
  chat: ChatRequest | null;
  model: string;
  stream: boolean;
  /** Chat streams: the client asked for the usage chunk (`stream_options.include_usage`). */
  includeUsage: boolean;
  /** Attribution the body carries (headers win over it: DESIGN §4). */
  endUser: string | null;
  metadata: Record<string, unknown>;
  /**
   * Set when only an upstream speaking this protocol natively can serve the request, saying
   * why (e.g. a built-in Responses tool); other targets are skipped, and a route with none
   * answers 400.
   */
  nativeOnly?: { reason: string; param: string };
  /** Protocol-private state from parse to render (Responses: its input items). */
  state?: unknown;
  /**
   * What of the client's body the canonical form does not carry (Responses' `include` or
   * `text.verbosity`, a beta field of Messages) and a native upstream still gets: part of what
   * the cache keys an answer on. Absent when there is none.
   */
  untranslated?: Record<string, unknown>;
}

/**
 * The members of `body` a protocol's translation does not read: every member but those in
 * `read` (and their nested members named in `readInside`), null ones left out.
 */
export function untranslatedMembers(
  body: Record<string, unknown>,
  read: ReadonlySet<string>,
  readInside: Readonly<Record<string, readonly string[]>>,
): Record<string, unknown> | undefined {
  let rest: Record<string, unknown> | undefined;
  for (const [field, value] of Object.entries(body)) {
    if (read.has(field) || isUnset(value)) continue;
    let left = value;
    const inside = readInside[field];
    if (inside && typeof value === 'object' && !Array.isArray(value)) {
      const members = Object.entries(value as Record<string, unknown>).filter(([k, v]) => !inside.includes(k) && !isUnset(v));
      if (members.length === 0) continue;
      left = Object.fromEntries(members);
    }
    (rest ??= {})[field] = left;
  }
  return rest;
}

/** Null, false or empty: the same as absent (`background: false`, `include: []`). */
function isUnset(value: unknown): boolean {
  return value === null || value === undefined || value === false || (Array.isArray(value) && value.length === 0);
}

/** What a rendered answer needs to know beyond the canonical answer. */
export interface RenderContext {
  /** The id the client sees (chatcmpl-…, resp_…, msg_…), derived from the receipt id. */
  id: string;
  teamId: string;
  /** Seconds since the epoch. */
  created: number;
  request: ParsedRequest;
  /**
   * Runs `then` once this request's receipt is in the WAL, and never if it could not be
   * written: what the answer leaves behind (a stored response) must not outlive a missing receipt.
   */
  whenRecorded(then: () => void): void;
}

export interface ClientProtocol {
  readonly endpoint: Endpoint;
  /** The request path, which is also the receipt's `endpoint`. */
  readonly path: string;
  /** Same wire upstream: the request and answer pass through unchanged (byte for byte where possible). */
  readonly wire: Wire;
  /**
   * Request headers that go with a body passing through to an upstream of this wire (Messages:
   * `anthropic-beta`, which the beta fields of such a body need). Lower case.
   */
  readonly passthroughHeaders?: readonly string[];
  /** The credential as an Authorization header value (Anthropic clients may send `x-api-key`). */
  authorization(req: IncomingMessage): string | undefined;
  /** Validates a JSON body and builds the canonical request; throws a 400 GatewayError naming the field. */
  parse(body: Record<string, unknown>): ParsedRequest;
  /** Completes a parsed request with what the caller's team has stored (Responses: previous_response_id). */
  prepare?(parsed: ParsedRequest, teamId: string): Promise<void>;
  /** The client-facing id of the answer to the request with this receipt id. */
  answerId(receiptId: string): string;
  /** An error in this protocol's shape. */
  errorBody(error: GatewayError): unknown;
  /** A complete canonical answer as this protocol's JSON. */
  render(answer: ChatCompletion, ctx: RenderContext): unknown;
  /** Turns canonical chunks into this protocol's SSE events. */
  encoder(ctx: RenderContext): StreamEncoder;
  /**
   * A stream from an upstream that speaks this protocol natively, relayed to the client as
   * sent (`assemble`: also keep the whole answer, canonical, for the cache).
   */
  relay?(ctx: RenderContext, assemble: boolean): StreamPump;
  /**
   * A complete answer from an upstream that speaks this protocol natively, as the client gets
   * it (Responses: under the gateway's id, and stored). Absent: the upstream's bytes as sent.
   */
  relayAnswer?(json: unknown, ctx: RenderContext): unknown;
}

export interface StreamEncoder {
  /** The SSE text for one canonical chunk ('' when it says nothing the client should see). */
  push(chunk: ChatChunk): string;
  /** The closing events of a complete answer; written only once its receipt is in the WAL. */
  close(usage: ChatUsage | null): string;
  /** The closing events of a stream that broke or could not be recorded. */
  fail(error: GatewayError): string;
}

/**
 * An upstream stream on its way to the client: upstream SSE text in, client SSE text out,
 * and a tally of what went through (usage, delivered text) for the receipt.
 */
export interface StreamPump {
  /** Upstream text in; the text to send to the client now ('' when nothing is complete). */
  push(text: string): string;
  /** The upstream ended: whatever was still buffered. */
  end(): string;
  /**
   * The opening events the pump holds back until content (Messages' message_start and pings,
   * Responses' response.created), given up now: the stream is committed without its answer.
   */
  releaseOpening?(): string;
  readonly tally: StreamTally;
  /** The whole answer as delivered, canonical; null when it said nothing usable. */
  completion(): ChatCompletion | null;
  close(usage: ChatUsage | null): string;
  fail(error: GatewayError): string;
}

export interface StreamTally {
  /** The upstream's usage (canonical shape), when it reported one. */
  usage: ChatUsage | null;
  /**
   * The prompt's usage as the upstream reported it before the answer (Anthropic's
   * message_start: input, cache reads and writes), for a stream cut before its final usage.
   */
  promptUsage: ChatUsage | null;
  /** Text and tool arguments delivered, for an estimate when usage never came. */
  deliveredText: string;
  /**
   * The reasoning the upstream streamed (relayed or not), for the same estimate: the provider
   * bills it as output, and a client that leaves mid-thought must not leave it unbilled.
   */
  reasoningText: string;
  contentChunks: number;
  /**
   * The answer has begun: text, a refusal, reasoning, a tool call or a finish reason. Before
   * it, what an upstream sends (SSE comments such as OpenRouter's `: OPENROUTER PROCESSING`, a
   * role-only first chunk) says nothing yet, and the attempt may still fail over.
   */
  answering: boolean;
  /** The upstream said it was done ([DONE], message_stop, response.completed). */
  done: boolean;
  /** An error event/object inside the upstream stream. */
  upstreamError: unknown;
}

export function newTally(): StreamTally {
  return { usage: null, promptUsage: null, deliveredText: '', reasoningText: '', contentChunks: 0, answering: false, done: false, upstreamError: null };
}
