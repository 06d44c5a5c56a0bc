// The one place a proxied request ends: its response head, its one receipt (where its budget
// reservation settles), its metrics, and the error and stream endings. The pipeline decides
// what happened; this module writes it down the same way for every path and protocol.
//
// Exactly one receipt per request, whatever happens: `record` appends at most once per
// Exchange, and every head is built (and its values made safe) *before* the receipt, so
// nothing after the receipt can fail into a second one or into an error for an answer the
// receipt already calls good.

import { createHash, hash } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { budgetCostOf } from '../budgets/spend.js';
import { completionChunks } from '../protocols/assemble.js';
import type { ChatCompletion } from '../protocols/canonical.js';
import type { StreamPump } from '../protocols/protocol.js';
import { receiptComment } from '../protocols/sse.js';
import { Transcoder } from '../protocols/transcode.js';
import type { ReceiptStatus, UnsignedReceipt } from '../receipts/receipt.js';
import { ClientGone } from './cancellation.js';
import { publishDecision } from './decisions.js';
import type { PipelineDeps } from './deps.js';
import { GatewayError, receiptsUnavailable } from './errors.js';
import type { Exchange } from './exchange.js';
import { toChatUsage, type Usage } from './usage.js';

export const ZERO_USAGE: Usage = { promptTokens: 0, completionTokens: 0, cachedTokens: 0, cacheWriteTokens: 0, reasoningTokens: 0, estimated: false };

/** A decoder that has nothing more to say: a replay feeds its chunks directly. */
const FINISHED = { push: () => [], end: () => [], done: true };

export class Endings {
  constructor(private readonly deps: Pick<PipelineDeps, 'receipts' | 'budgets' | 'limiter' | 'metrics' | 'bus' | 'log'>) {}

  /** A complete (non-streamed) answer: its receipt goes to the WAL, then the response. */
  async respond(
    ex: Exchange,
    res: ServerResponse,
    status: number,
    body: string | Buffer,
    outcome: { receiptStatus: ReceiptStatus; errorCode: string | null; usage: Usage; responseSha256: string | null },
  ): Promise<UnsignedReceipt> {
    const head = this.head(ex, 'application/json');
    const receipt = await this.record(ex, outcome.receiptStatus, status, outcome.errorCode, outcome.usage, outcome.responseSha256);
    res.writeHead(status, head);
    res.end(body);
    this.observe(ex, status, outcome.errorCode);
    return receipt;
  }

  /**
   * A complete canonical answer (a cache hit, a cascade's pick): as this protocol's JSON, or
   * replayed as its stream when the client asked for one.
   */
  async deliver(ex: Exchange, res: ServerResponse, answer: ChatCompletion, usage: Usage): Promise<UnsignedReceipt | null> {
    const ctx = ex.renderContext();
    if (!ex.stream) {
      const json = JSON.stringify(ex.protocol.render(answer, ctx));
      return this.respond(ex, res, 200, json, { receiptStatus: 'ok', errorCode: null, usage, responseSha256: hash('sha256', json) });
    }
    const replay = new Transcoder(FINISHED, ex.protocol.encoder(ctx));
    const events = replay.encode(completionChunks(answer, ctx.id));
    ex.ttftMs = ex.elapsed();
    this.startStream(ex, res, ex.attempts.length);
    res.write(events);
    return this.endStream(ex, res, replay, usage, createHash('sha256').update(events));
  }

  /** The head of a stream, at its first byte. `attempts` counts the streaming attempt. */
  startStream(ex: Exchange, res: ServerResponse, attempts: number): void {
    res.writeHead(200, this.head(ex, 'text/event-stream', attempts));
  }

  /**
   * Ends a stream whose answer was delivered whole. The closing events (`[DONE]`,
   * `response.completed`, `message_stop`) go out only once the receipt is in the WAL (a
   * write, not a flush: well under a millisecond), so no client ever holds a complete answer
   * that has no receipt. If the WAL refuses it, the stream ends with an error event instead,
   * which the SDKs raise as an error, and this returns null.
   */
  async endStream(
    ex: Exchange,
    res: ServerResponse,
    pump: StreamPump,
    usage: Usage,
    responseHash: { update(s: string): unknown; digest(enc: 'hex'): string },
  ): Promise<UnsignedReceipt | null> {
    const closing = pump.close(toChatUsage(usage));
    responseHash.update(closing);
    let receipt: UnsignedReceipt;
    try {
      receipt = await this.record(ex, 'ok', 200, null, usage, responseHash.digest('hex'));
    } catch (err) {
      const error = receiptsUnavailable(err);
      this.deps.log.error({ err: String(err), requestId: ex.requestId }, 'stream ended without its receipt');
      res.end(pump.fail(error));
      this.observe(ex, error.status, error.code ?? error.type);
      return null;
    }
    res.end(closing + receiptComment(receipt));
    this.observe(ex, 200, null);
    return receipt;
  }

  /**
   * Ends a stream that broke after its first byte: an error event in the client's protocol,
   * a `partial` receipt with the tokens actually delivered, then the receipt line.
   */
  async breakStream(
    ex: Exchange,
    res: ServerResponse,
    pump: StreamPump,
    error: GatewayError,
    usage: Usage,
    responseHash: { update(s: string): unknown; digest(enc: 'hex'): string },
  ): Promise<void> {
    const failure = pump.fail(error);
    responseHash.update(failure);
    res.write(failure);
    const receipt = await this.record(ex, 'partial', 200, error.code, usage, responseHash.digest('hex'));
    res.end(receiptComment(receipt));
    this.observe(ex, 200, error.code);
  }

  /** The client went away: the receipt says so and bills what was delivered. */
  async cancelled(ex: Exchange, usage: Usage = ZERO_USAGE, responseSha256: string | null = null): Promise<void> {
    await this.record(ex, 'cancelled', 499, 'client_cancelled', usage, responseSha256);
    this.observe(ex, 499, 'client_cancelled');
  }

  /** Answers an error in the client's protocol, after its receipt is in the WAL. */
  async fail(ex: Exchange, res: ServerResponse, err: unknown, status?: ReceiptStatus): Promise<void> {
    if (err instanceof ClientGone) {
      // Gone while its request was still arriving: nobody to answer, and a `cancelled` receipt.
      publishDecision(this.deps.bus, ex, null, 'CANCELLED', 'client_cancelled', null, []);
      await this.cancelled(ex).catch((walErr) => this.deps.log.error({ err: String(walErr) }, 'could not append receipt'));
      res.destroy();
      return;
    }
    let error: GatewayError;
    if (err instanceof GatewayError) error = err;
    else {
      this.deps.log.error({ err: err instanceof Error ? err.stack : String(err), requestId: ex.requestId }, 'unexpected error in proxy path');
      error = new GatewayError(500, 'api_error', 'internal_error', 'Tollgate failed to process the request.');
    }
    if (ex.recorded) {
      // The outcome is already on record (and maybe on its way to the client): a late failure
      // must not make a second receipt, nor turn an answered request into an error.
      this.deps.log.error({ err: String(err), requestId: ex.requestId }, 'failure after the request was recorded');
      if (!res.headersSent) res.destroy();
      return;
    }
    const receiptStatus: ReceiptStatus = status ?? (error.status >= 500 ? 'error' : 'rejected');
    const code = error.code ?? error.type;
    if (receiptStatus === 'rejected') publishDecision(this.deps.bus, ex, null, 'REJECTED', error.code, null, []);
    else if (!ex.target) publishDecision(this.deps.bus, ex, null, 'FAILED', error.code, null, []);
    if (res.headersSent || res.destroyed) {
      // A stream that already started: nothing more can be said to the client.
      await this.record(ex, receiptStatus, error.status, code, ZERO_USAGE, null).catch((walErr) =>
        this.deps.log.error({ err: String(walErr) }, 'could not append receipt'),
      );
      this.observe(ex, error.status, code);
      res.destroy();
      return;
    }
    for (const [k, v] of Object.entries(error.headers)) ex.responseHeaders[k] = v;
    // The rest of an oversized body is not worth reading.
    if (error.status === 413) ex.responseHeaders.connection = 'close';
    const body = JSON.stringify(ex.protocol.errorBody(error));
    try {
      await this.respond(ex, res, error.status, body, { receiptStatus, errorCode: code, usage: ZERO_USAGE, responseSha256: null });
    } catch (walErr) {
      // No receipt could be written (the WAL is full): the client still learns what happened.
      this.deps.log.error({ err: String(walErr) }, 'could not append receipt');
      const refused = walErr instanceof GatewayError ? walErr : error;
      for (const [k, v] of Object.entries(refused.headers)) ex.responseHeaders[k] = v;
      const head = this.head(ex, 'application/json');
      delete head['x-tollgate-receipt-id']; // there is none to look up
      res.writeHead(refused.status, head);
      res.end(JSON.stringify(ex.protocol.errorBody(refused)));
      this.observe(ex, refused.status, refused.code ?? refused.type);
    }
  }

  /** The response head. Values from clients or upstreams are made safe here (headerValue). */
  private head(ex: Exchange, contentType: string, attempts = ex.attempts.length): Record<string, string> {
    const h = ex.responseHeaders;
    h['content-type'] = contentType;
    h['x-request-id'] = ex.requestId;
    h['x-tollgate-receipt-id'] = ex.receiptId;
    h['x-tollgate-cache'] = ex.cacheStatus;
    h['x-tollgate-attempts'] = String(attempts);
    if (ex.route) h['x-tollgate-route'] = headerValue(ex.route.name);
    if (ex.rule) h['x-tollgate-rule'] = headerValue(ex.rule);
    if (ex.experiment && ex.variant) h['x-tollgate-variant'] = headerValue(`${ex.experiment}/${ex.variant}`);
    if (ex.accepted === false) h['x-tollgate-accepted'] = 'false';
    const provider = ex.cacheHit?.provider ?? ex.target?.provider.name;
    const model = ex.cacheHit?.model ?? ex.target?.model;
    if (provider && model) {
      h['x-tollgate-provider'] = headerValue(provider);
      h['x-tollgate-model'] = headerValue(model);
    }
    if (contentType === 'text/event-stream') {
      h['cache-control'] = 'no-cache';
      h['x-accel-buffering'] = 'no';
    }
    return h;
  }

  /** Appends the request's one receipt (at most once, whatever calls it). */
  private record(
    ex: Exchange,
    status: ReceiptStatus,
    httpStatus: number,
    errorCode: string | null,
    usage: Usage,
    responseSha256: string | null,
  ): Promise<UnsignedReceipt> {
    if (ex.receipt) return ex.receipt;
    const draft = ex.toReceiptDraft(status, httpStatus, errorCode, usage, responseSha256);
    ex.trace?.recorded(draft);
    // Every request ends in exactly one receipt: that is where its reservations end (its
    // tokens were recorded for TPM as its calls answered).
    if (ex.tokenReservation) {
      this.deps.limiter.release(ex.tokenReservation);
      ex.tokenReservation = null;
    }
    const ticket = ex.budgetTicket;
    if (ticket) {
      ex.budgetTicket = null;
      void this.deps.budgets!.settle(ticket, budgetCostOf(draft), ex.requestId);
    }
    ex.receipt = this.deps.receipts.append(draft).then((receipt) => {
      ex.markRecorded();
      return receipt;
    });
    return ex.receipt;
  }

  observe(ex: Exchange, status: number, errorCode: string | null): void {
    const { metrics } = this.deps;
    const endpoint = ex.protocol.path;
    const seconds = ex.elapsed() / 1000;
    metrics.requests.inc({ endpoint, status: String(status) });
    metrics.cacheRequests.inc({ status: ex.cacheStatus });
    metrics.latency.observe({ endpoint, stream: String(ex.stream) }, seconds);
    if (errorCode) metrics.errors.inc({ endpoint, code: errorCode });
    if (ex.attempts.length > 0) metrics.overhead.observe(Math.max(0, seconds - ex.upstreamMs / 1000));
    ex.trace?.end(status, errorCode);
  }
}

const VISIBLE_ASCII = /^[\x21-\x7e]*$/;

/**
 * A header value made from request or upstream data (DESIGN §4): as is when it is visible
 * ASCII, else percent-encoded as UTF-8 (RFC 3986), `%` included, so it always decodes back.
 * Node refuses to send anything else (non-Latin-1, CR/LF) and would throw mid-response.
 */
export function headerValue(value: string): string {
  if (VISIBLE_ASCII.test(value)) return value;
  let out = '';
  for (const byte of Buffer.from(value, 'utf8')) {
    out += byte > 0x20 && byte < 0x7f && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}
