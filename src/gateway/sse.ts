// Reads an upstream SSE stream of chat.completion.chunk events incrementally. For each
// upstream chunk it returns the bytes to forward (complete events only, so one upstream
// chunk becomes at most one client write), and it tracks what the receipt needs: usage,
// the text delivered (for estimates when usage never comes), and whether [DONE] arrived.

export interface StreamTally {
  usage: unknown;
  deliveredText: string;
  contentChunks: number;
  done: boolean;
  /** An upstream `error` event/object inside the stream. */
  upstreamError: unknown;
}

export class SseRelay {
  private buffer = '';
  private pendingCR = false;
  readonly tally: StreamTally = { usage: null, deliveredText: '', contentChunks: 0, done: false, upstreamError: null };

  /**
   * @param forwardUsageChunk whether the client asked for the usage chunk itself.
   * @param onChunk sees every parsed chunk (the cache assembles the complete answer from them).
   */
  constructor(
    private readonly forwardUsageChunk: boolean,
    private readonly onChunk?: (chunk: unknown) => void,
  ) {}

  /** Returns the text to send to the client now ('' when nothing is complete yet). */
  push(chunk: string): string {
    this.buffer += this.normalize(chunk);
    let out = '';
    let start = 0;
    for (let end = this.buffer.indexOf('\n\n'); end !== -1; end = this.buffer.indexOf('\n\n', start)) {
      out += this.handle(this.buffer.slice(start, end));
      start = end + 2;
    }
    this.buffer = this.buffer.slice(start);
    return out;
  }

  /**
   * SSE allows CRLF, LF and lone CR line ends; folding them to LF makes event boundaries one
   * search. A CR at the end of a chunk waits for the next one (it may be half of a CRLF).
   */
  private normalize(chunk: string): string {
    let text = this.pendingCR ? `\r${chunk}` : chunk;
    this.pendingCR = text.endsWith('\r');
    if (this.pendingCR) text = text.slice(0, -1);
    return text.includes('\r') ? text.replace(/\r\n?/g, '\n') : text;
  }

  /** Anything left without a terminating blank line (a stream that ended oddly). */
  rest(): string {
    const rest = this.buffer;
    this.buffer = '';
    this.pendingCR = false;
    return rest.trim() ? this.handle(rest) : '';
  }

  private handle(event: string): string {
    const data = eventData(event);
    if (data === null) return `${event}\n\n`; // comments, keep-alives: forward as they are
    if (data === '[DONE]') {
      this.tally.done = true;
      return ''; // the pipeline writes [DONE] itself, followed by the receipt event
    }
    let parsed: any;
    try {
      parsed = JSON.parse(data);
    } catch {
      return `${event}\n\n`;
    }
    if (parsed?.error) this.tally.upstreamError = parsed.error;
    this.onChunk?.(parsed);
    if (parsed?.usage) this.tally.usage = parsed.usage;
    const choices = parsed?.choices;
    // A usage-only chunk (choices empty or absent) is Tollgate's to read, unless the client asked.
    if (parsed?.usage && !this.forwardUsageChunk && (!Array.isArray(choices) || choices.length === 0)) return '';
    if (Array.isArray(choices)) {
      for (const c of choices) {
        const delta = c?.delta;
        if (typeof delta?.content === 'string' && delta.content) {
          this.tally.deliveredText += delta.content;
          this.tally.contentChunks++;
        }
        if (Array.isArray(delta?.tool_calls)) {
          for (const tc of delta.tool_calls) {
            const args = tc?.function?.arguments;
            if (typeof args === 'string') this.tally.deliveredText += args;
          }
        }
      }
      // Usage riding on a content chunk (some providers do this): strip it if not asked for.
      if (parsed.usage && !this.forwardUsageChunk && choices.length > 0) {
        delete parsed.usage;
        return `${replaceData(event, JSON.stringify(parsed))}\n\n`;
      }
    }
    return `${event}\n\n`;
  }
}

/** The joined `data:` lines of one event, or null when it has none. */
function eventData(event: string): string | null {
  let data: string | null = null;
  for (const rawLine of event.split('\n')) {
    const line = rawLine.endsWith('\r') ? rawLine.slice(0, -1) : rawLine;
    if (!line.startsWith('data:')) continue;
    const value = line.charCodeAt(5) === 32 ? line.slice(6) : line.slice(5);
    data = data === null ? value : `${data}\n${value}`;
  }
  return data;
}

/** The event with its data replaced, keeping `event:`/`id:` lines. */
function replaceData(event: string, data: string): string {
  const kept = event.split('\n').filter((line) => !line.startsWith('data:'));
  return [...kept, `data: ${data}`].join('\n');
}

export function sseEvent(name: string | null, data: unknown): string {
  const payload = typeof data === 'string' ? data : JSON.stringify(data);
  return name ? `event: ${name}\ndata: ${payload}\n\n` : `data: ${payload}\n\n`;
}
