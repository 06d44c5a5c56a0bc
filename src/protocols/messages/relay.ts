// An Anthropic upstream's stream relayed to a Messages client: events go out as the upstream
// sent them, read on the way for the receipt (usage from message_start and message_delta) and,
// when the answer may be cached, assembled into the canonical answer. Two events are held:
// message_start (and its ping) until the first content, so an error the upstream sends right
// after it can still fail over; and message_stop, which the pipeline writes after the receipt.
import type { GatewayError } from '../../gateway/errors.js';
import { StreamAssembler, tallyChunk } from '../assemble.js';
import type { ChatCompletion } from '../canonical.js';
import { newTally, type StreamPump } from '../protocol.js';
import { SseFramer } from '../sse.js';
import { MessagesEventReader, parseData } from './decode.js';
import { MessagesEncoder } from './stream.js';

export class MessagesRelay implements StreamPump {
  readonly tally = newTally();
  private readonly framer = new SseFramer();
  private readonly reader = new MessagesEventReader();
  private readonly assembler: StreamAssembler | null;
  /** message_start and ping, until something follows them. */
  private held = '';
  private holding = true;
  private stop: string | null = null;
  private forwardedError = false;

  constructor(assemble: boolean) {
    this.assembler = assemble ? new StreamAssembler() : null;
  }

  push(text: string): string {
    let out = '';
    for (const event of this.framer.push(text)) out += this.handle(event);
    return out;
  }

  end(): string {
    const rest = this.framer.rest();
    return (rest === null ? '' : this.handle(rest)) + this.release();
  }

  completion(): ChatCompletion | null {
    return this.assembler?.completion() ?? null;
  }

  close(): string {
    return this.release() + (this.stop ?? 'event: message_stop\ndata: {"type":"message_stop"}\n\n');
  }

  /** The stream broke: an error event, unless the upstream's own already went out. */
  fail(error: GatewayError): string {
    return this.forwardedError ? '' : new MessagesEncoder('', '').fail(error);
  }

  private handle(event: string): string {
    const data = parseData(event) as { type?: unknown } | undefined;
    for (const chunk of data === undefined ? [] : this.reader.read(data)) {
      tallyChunk(this.tally, chunk);
      this.assembler?.add(chunk);
    }
    this.tally.done = this.reader.done;
    const text = `${event}\n\n`;
    switch (data?.type) {
      case 'message_stop':
        this.stop = text;
        return '';
      case 'message_start':
      case 'ping':
        if (this.holding) {
          this.held += text;
          return '';
        }
        return text;
      case 'error':
        this.forwardedError = true;
        return this.release() + text;
      default:
        return this.release() + text;
    }
  }

  private release(): string {
    const held = this.held;
    this.holding = false;
    this.held = '';
    return held;
  }
}
