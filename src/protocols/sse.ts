// Server-sent events: framing of an incoming stream into events, and writing events. Every
// protocol's streams are SSE (OpenAI chat: `data:` only; Responses and Anthropic: `event:`
// plus `data:`), and every stream Tollgate writes ends with its receipt as an SSE comment.

const LF = 10;
/** Pieces of an unfinished event are joined into blocks of about this many characters. */
const BLOCK_CHARS = 16 * 1024;

/** The longest event an upstream may send (a whole answer in one event is far shorter). */
export const MAX_EVENT_CHARS = 16 * 1024 * 1024;

/**
 * Splits an SSE byte stream (already decoded to text) into complete events. SSE allows CRLF,
 * LF and lone CR line ends; folding them to LF makes event boundaries one search. A CR at the
 * end of a piece waits for the next one (it may be half of a CRLF).
 */
export class SseFramer {
  /**
   * The unfinished event: whole blocks, then the latest pieces, joined once when it ends (into a
   * block when they reach BLOCK_CHARS: an array of tiny pieces cost ~25 bytes a character).
   * Appended to one string, a long event was copied whole at every piece (quadratic).
   */
  private blocks: string[] = [];
  private pieces: string[] = [];
  private piecesChars = 0;
  private unfinishedChars = 0;
  private endsWithLF = false;
  private pendingCR = false;

  /**
   * The complete events (without their blank-line terminator) that `text` finished. Throws when
   * an unfinished event grows past MAX_EVENT_CHARS (an upstream that never ends one would grow it
   * until the total timeout).
   */
  push(text: string): string[] {
    const chunk = this.normalize(text);
    const events: string[] = [];
    let start = 0;
    // A blank line split between pieces: the unfinished event ends in a line end, this one starts with one.
    if (this.endsWithLF && chunk.charCodeAt(0) === LF) {
      events.push(this.take().slice(0, -1));
      start = 1;
    }
    for (let end = chunk.indexOf('\n\n', start); end !== -1; end = chunk.indexOf('\n\n', start)) {
      const piece = chunk.slice(start, end);
      events.push(this.unfinishedChars > 0 ? this.take() + piece : piece);
      start = end + 2;
    }
    if (start < chunk.length) this.keep(start === 0 ? chunk : chunk.slice(start));
    return events;
  }

  /** What is left without a terminating blank line (a stream that ended oddly), or null. */
  rest(): string | null {
    const rest = this.take();
    this.pendingCR = false;
    return rest.trim() ? rest : null;
  }

  private keep(unfinished: string): void {
    this.pieces.push(unfinished);
    this.piecesChars += unfinished.length;
    this.unfinishedChars += unfinished.length;
    this.endsWithLF = unfinished.charCodeAt(unfinished.length - 1) === LF;
    if (this.unfinishedChars > MAX_EVENT_CHARS) throw Object.assign(new Error('upstream event too large'), { code: 'SSE_EVENT_TOO_LARGE' });
    if (this.piecesChars >= BLOCK_CHARS) {
      this.blocks.push(this.pieces.join(''));
      this.pieces = [];
      this.piecesChars = 0;
    }
  }

  /** The unfinished event so far, whole; the framer starts the next. */
  private take(): string {
    const tail = this.pieces.length === 1 ? this.pieces[0]! : this.pieces.join('');
    const whole = this.blocks.length === 0 ? tail : this.blocks.join('') + tail;
    this.blocks = [];
    this.pieces = [];
    this.piecesChars = 0;
    this.unfinishedChars = 0;
    this.endsWithLF = false;
    return whole;
  }

  private normalize(chunk: string): string {
    let text = this.pendingCR ? `\r${chunk}` : chunk;
    this.pendingCR = text.endsWith('\r');
    if (this.pendingCR) text = text.slice(0, -1);
    return text.includes('\r') ? text.replace(/\r\n?/g, '\n') : text;
  }
}

/**
 * An upstream event whose data is not JSON breaks its stream (StreamTally.upstreamError): it is
 * not relayed (a client's SDK would throw on it), and an answer with a hole is neither `ok` nor cached.
 */
export const NOT_JSON_ERROR = { type: 'api_error', message: 'the upstream sent an event whose data is not JSON' } as const;

/** The joined `data:` lines of one event, or null when it has none. */
export function eventData(event: string): string | null {
  let data: string | null = null;
  let from = 0;
  while (from <= event.length) {
    let to = event.indexOf('\n', from);
    if (to === -1) to = event.length;
    if (event.startsWith('data:', from)) {
      const value = event.charCodeAt(from + 5) === 32 ? event.slice(from + 6, to) : event.slice(from + 5, to);
      data = data === null ? value : `${data}\n${value}`;
    }
    from = to + 1;
  }
  return data;
}

/** The `event:` name of one event, or null (a plain `data:` event is a "message"). */
export function eventName(event: string): string | null {
  let from = 0;
  while (from < event.length) {
    let to = event.indexOf('\n', from);
    if (to === -1) to = event.length;
    if (event.startsWith('event:', from)) return event.slice(from + 6, to).trim();
    from = to + 1;
  }
  return null;
}

export function sseEvent(name: string | null, data: unknown): string {
  const payload = typeof data === 'string' ? data : JSON.stringify(data);
  return name ? `event: ${name}\ndata: ${payload}\n\n` : `data: ${payload}\n\n`;
}

/**
 * The last line of every stream Tollgate writes (DESIGN §4): an SSE comment, which every SSE
 * parser ignores, so no SDK sees it, while clients that want a stream's cost can read it.
 */
export function receiptComment(receipt: { receipt_id: string; cost_usd: number | null; status: string }): string {
  return `: tollgate-receipt ${JSON.stringify({ receipt_id: receipt.receipt_id, cost_usd: receipt.cost_usd, status: receipt.status })}\n\n`;
}
