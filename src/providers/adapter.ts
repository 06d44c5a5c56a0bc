// What the pipeline asks of an upstream: how to send it a request (translated from the
// canonical form, or passed through when it speaks the client's own protocol), and how to
// read its answers, streams and errors back into the canonical form.
import type { GatewayError } from '../gateway/errors.js';
import type { ChatCompletion, ChatRequest } from '../protocols/canonical.js';
import type { Wire } from '../protocols/protocol.js';
import type { ChunkDecoder } from '../protocols/transcode.js';
import type { Target } from '../routing/catalog.js';

export interface UpstreamRequest {
  /** Appended to the provider's base path, e.g. `/chat/completions`. */
  path: string;
  body: string;
  /** The client's headers that go with a body passed through (ClientProtocol.passthroughHeaders). */
  headers?: Record<string, string>;
}

export interface UpstreamAdapter {
  /** Client protocols this upstream speaks natively: their requests pass through. */
  readonly wires: ReadonlySet<Wire>;
  /** A client's body, for a protocol the upstream speaks, retargeted at `target`. */
  passthrough(wire: Wire, body: Record<string, unknown>, target: Target, stream: boolean): UpstreamRequest;
  /** The canonical request in this upstream's own protocol; a 400 GatewayError for what it cannot take. */
  request(chat: ChatRequest, target: Target, stream: boolean): UpstreamRequest;
  /**
   * A complete answer as canonical: to `request`, or (`passedThrough`: its wire) to a
   * passthrough of a chat-like wire. Throws when it is not one.
   */
  answer(json: unknown, passedThrough?: Wire): ChatCompletion;
  /** A stream answering `request`, as canonical chunks. */
  decoder(): ChunkDecoder;
  /** An error status and body from this upstream (4xx other than 429) as the error the client gets. */
  error(status: number, body: unknown): GatewayError;
}
