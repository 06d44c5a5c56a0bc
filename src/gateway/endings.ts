// How every proxied request ends: its response head, its one receipt (where its budget
// reservation settles), its metrics, and the error and stream endings. The pipeline decides
// what happened; this module writes it down the same way for every path.
import type { ServerResponse } from 'node:http';
import type { ReceiptStatus, UnsignedReceipt } from '../receipts/receipt.js';
import { publishDecision } from './decisions.js';
import { GatewayError } from './errors.js';
import { ENDPOINT_NAME, type Exchange } from './exchange.js';
import type { PipelineDeps } from './pipeline.js';
import { sseEvent } from './sse.js';
import type { Usage } from './usage.js';

export const ZERO_USAGE: Usage = { promptTokens: 0, completionTokens: 0, cachedTokens: 0, estimated: false };

export class Endings {
  constructor(private readonly deps: Pick<PipelineDeps, 'receipts' | 'budgets' | 'metrics' | 'bus' | 'log'>) {}

  /**
   * Ends a stream whose answer was delivered whole. `[DONE]` goes out only once the receipt is
   * in the WAL (a write, not a flush: well under a millisecond), so no client ever holds a
   * complete answer that has no receipt. If the WAL refuses it, the stream ends with an error
   * event instead, which the OpenAI SDKs raise as an APIError, and it returns null.
   */
  async endStream(ex: Exchange, res: ServerResponse, usage: Usage, responseSha256: string): Promise<UnsignedReceipt | null> {
    let receipt: UnsignedReceipt;
    try {
      receipt = await this.appendReceipt(ex, 'ok', 200, null, usage, responseSha256);
    } catch (err) {
      const error = err instanceof GatewayError ? err : new GatewayError(503, 'api_error', 'receipts_unavailable', 'Tollgate could not record the receipt of this answer.');
      this.deps.log.error({ err: String(err), requestId: ex.requestId }, 'stream ended without its receipt');
      res.end(sseEvent('error', error.body()));
      this.observe(ex, error.status, error.code ?? error.type);
      return null;
    }
    // The receipt event follows [DONE] because SDKs stop at [DONE]: they would hand an event
    // before it to the application as if it were a chunk.
    res.end(`data: [DONE]\n\n${receiptEvent(receipt)}`);
    this.observe(ex, 200, null);
    return receipt;
  }

  async cancelled(ex: Exchange): Promise<void> {
    publishDecision(this.deps.bus, ex, null, 'CANCELLED', 'client_cancelled', null, []);
    await this.appendReceipt(ex, 'cancelled', 499, 'client_cancelled', ZERO_USAGE, null);
    this.observe(ex, 499, 'client_cancelled');
  }

  /** Answers an error (OpenAI shape) after its receipt is in the WAL. */
  async fail(ex: Exchange, res: ServerResponse, err: unknown, status?: ReceiptStatus): Promise<void> {
    let error: GatewayError;
    if (err instanceof GatewayError) error = err;
    else {
      this.deps.log.error({ err: err instanceof Error ? err.stack : String(err), requestId: ex.requestId }, 'unexpected error in proxy path');
      error = new GatewayError(500, 'api_error', 'internal_error', 'Tollgate failed to process the request.');
    }
    const receiptStatus: ReceiptStatus = status ?? (error.status >= 500 ? 'error' : 'rejected');
    if (receiptStatus === 'rejected') publishDecision(this.deps.bus, ex, null, 'REJECTED', error.code, null, []);
    else if (!ex.target) publishDecision(this.deps.bus, ex, null, 'FAILED', error.code, null, []);
    try {
      await this.appendReceipt(ex, receiptStatus, error.status, error.code ?? error.type, ZERO_USAGE, null);
    } catch (walErr) {
      this.deps.log.error({ err: String(walErr) }, 'could not append receipt');
    }
    this.observe(ex, error.status, error.code ?? error.type);
    if (res.headersSent || res.destroyed) {
      res.destroy();
      return;
    }
    for (const [k, v] of Object.entries(error.headers)) ex.responseHeaders[k] = v;
    // The rest of an oversized body is not worth reading.
    if (error.status === 413) ex.responseHeaders.connection = 'close';
    this.writeHead(ex, res, error.status, 'application/json');
    res.end(JSON.stringify(error.body()));
  }

  writeHead(ex: Exchange, res: ServerResponse, status: number, contentType: string, attempts = ex.attempts.length): void {
    const h = ex.responseHeaders;
    h['content-type'] = contentType;
    h['x-request-id'] = ex.requestId;
    h['x-tollgate-receipt-id'] = ex.receiptId;
    h['x-tollgate-cache'] = ex.cacheStatus;
    h['x-tollgate-attempts'] = String(attempts);
    if (ex.route) h['x-tollgate-route'] = ex.route.name;
    const provider = ex.cacheHit?.provider ?? ex.target?.provider.name;
    const model = ex.cacheHit?.model ?? ex.target?.model;
    if (provider && model) {
      h['x-tollgate-provider'] = provider;
      h['x-tollgate-model'] = model;
    }
    if (contentType === 'text/event-stream') {
      h['cache-control'] = 'no-cache';
      h['x-accel-buffering'] = 'no';
    }
    res.writeHead(status, h);
  }

  appendReceipt(
    ex: Exchange,
    status: ReceiptStatus,
    httpStatus: number,
    errorCode: string | null,
    usage: Usage,
    responseSha256: string | null,
  ): Promise<UnsignedReceipt> {
    const draft = ex.toReceiptDraft(status, httpStatus, errorCode, usage, responseSha256);
    // Every request ends in exactly one receipt: that is where its budget reservation settles.
    const ticket = ex.budgetTicket;
    if (ticket) {
      ex.budgetTicket = null;
      void this.deps.budgets!.settle(ticket, draft.cost_usd, ex.requestId);
    }
    return this.deps.receipts.append(draft);
  }

  observe(ex: Exchange, status: number, errorCode: string | null): void {
    const { metrics } = this.deps;
    const endpoint = ENDPOINT_NAME[ex.endpoint];
    const seconds = ex.elapsed() / 1000;
    metrics.requests.inc({ endpoint, status: String(status) });
    metrics.cacheRequests.inc({ status: ex.cacheStatus });
    metrics.latency.observe({ endpoint, stream: String(ex.stream) }, seconds);
    if (errorCode) metrics.errors.inc({ endpoint, code: errorCode });
    if (ex.attempts.length > 0) metrics.overhead.observe(Math.max(0, seconds - ex.upstreamMs / 1000));
  }
}

/** The closing event of a stream: which receipt, and what it cost. */
export function receiptEvent(receipt: UnsignedReceipt): string {
  return sseEvent('tollgate.receipt', { receipt_id: receipt.receipt_id, cost_usd: receipt.cost_usd, status: receipt.status });
}
