// A native Responses upstream's stream relayed to a Responses client: events go out as the
// upstream sent them (its sequence numbers, item ids and deltas), read on the way for the
// receipt (usage from response.completed, delivered text from the deltas) and, when the answer
// may be cached, assembled into the canonical answer. Two things differ from byte-for-byte:
// the `response` objects carry the gateway's id (resp_…, the one previous_response_id and
// GET /v1/responses/{id} know) and the client's previous_response_id; and two kinds of events
// are held: response.created / in_progress until something follows them, so an error the
// upstream sends right after them can still fail over; and the final response.completed (or
// response.incomplete), which the pipeline writes only once the receipt is in the WAL.

import type { GatewayError } from '../../gateway/errors.js';
import { tallyChunk } from '../assemble.js';
import { EventRelay } from '../event-relay.js';
import { eventData, eventName, NOT_JSON_ERROR, sseEvent } from '../sse.js';
import { FINAL_EVENTS, ResponsesEventReader } from './decode.js';

const OPENING_EVENTS = new Set(['response.created', 'response.in_progress', 'response.queued']);

export interface RelayedIdentity {
  /** The gateway's id for this response (resp_…). */
  id: string;
  /** The client's previous_response_id (the upstream never saw it: Tollgate sent the history). */
  previousResponseId: string | null;
  /** The client's metadata (the upstream saw it without Tollgate's attribution keys). */
  metadata: Record<string, string>;
}

export class ResponsesRelay extends EventRelay {
  private readonly reader = new ResponsesEventReader();
  private held = '';
  private holding = true;
  private final: { text: string; response: Record<string, unknown> } | null = null;
  /** The latest response object seen (rewritten), for a response.failed of our own. */
  private snapshot: Record<string, unknown> | null = null;
  private lastSequence = -1;

  constructor(
    private readonly identity: RelayedIdentity,
    assemble: boolean,
    /** Sees the final response object as the client gets it (stored for previous_response_id). */
    private readonly onFinal: (response: Record<string, unknown>) => void = () => undefined,
  ) {
    super(assemble);
  }

  /** The held final event; the answer is complete (and its receipt recorded): it is kept. */
  close(): string {
    if (this.final) this.onFinal(this.final.response);
    return this.release() + (this.final?.text ?? '');
  }

  /** The stream broke (or the upstream sent an error, which is not relayed): a response.failed event of ours. */
  fail(error: GatewayError): string {
    let out = '';
    if (!this.snapshot) {
      // Begun with keep-alives alone (the upstream's response.created never came): one of ours
      // first, as the SDKs' stream helpers throw on a response.failed without it.
      const { id, previousResponseId, metadata } = this.identity;
      this.snapshot = { id, object: 'response', status: 'in_progress', output: [], previous_response_id: previousResponseId, metadata };
      out = sseEvent('response.created', { type: 'response.created', sequence_number: ++this.lastSequence, response: this.snapshot });
    }
    const response = { ...this.snapshot, status: 'failed', error: { code: 'server_error', message: error.message } };
    return out + sseEvent('response.failed', { type: 'response.failed', sequence_number: this.lastSequence + 1, response });
  }

  protected handle(event: string): string {
    const raw = eventData(event);
    let data: Record<string, any> | undefined;
    try {
      data = raw === null ? undefined : JSON.parse(raw);
    } catch {
      this.tally.upstreamError = NOT_JSON_ERROR;
      return '';
    }
    for (const chunk of data === undefined ? [] : this.reader.read(data)) {
      tallyChunk(this.tally, chunk);
      this.assembler?.add(chunk);
    }
    this.tally.done = this.reader.done;
    this.tally.reasoningText = this.reader.reasoning;
    if (this.reader.error) this.tally.upstreamError = this.reader.error;
    if (typeof data?.sequence_number === 'number') this.lastSequence = Math.max(this.lastSequence, data.sequence_number);

    const type = typeof data?.type === 'string' ? data.type : null;
    const text = data?.response && typeof data.response === 'object' ? this.rewritten(event, data) : `${event}\n\n`;
    if (type && FINAL_EVENTS.has(type)) {
      this.final = { text, response: data!.response };
      return '';
    }
    if (type && OPENING_EVENTS.has(type) && this.holding) {
      this.held += text;
      return '';
    }
    // The answer ends here with the gateway's own response.failed (fail()), its message sanitized.
    if (type === 'error' || type === 'response.failed') return '';
    return this.release() + text;
  }

  /** The event with its response object under the gateway's id. */
  private rewritten(event: string, data: Record<string, any>): string {
    const { id, previousResponseId, metadata } = this.identity;
    data.response = { ...data.response, id, previous_response_id: previousResponseId, metadata };
    this.snapshot = data.response;
    return sseEvent(eventName(event), data);
  }

  protected override release(): string {
    const held = this.held;
    this.holding = false;
    this.held = '';
    return held;
  }
}
