// An Anthropic upstream's stream relayed to a Messages client: events go out as the upstream
// sent them, read on the way for the receipt (usage from message_start and message_delta) and,
// when the answer may be cached, assembled into the canonical answer. Two events are held:
// message_start (and its ping) until the first content, so an error the upstream sends right
// after it can still fail over; and message_stop, which the pipeline writes after the receipt.

import type { GatewayError } from '../../gateway/errors.js';
import { tallyChunk } from '../assemble.js';
import { EventRelay } from '../event-relay.js';
import { MessagesEventReader, parseData } from './decode.js';
import { MessagesEncoder } from './stream.js';

export class MessagesRelay extends EventRelay {
  private readonly reader = new MessagesEventReader();
  /** message_start and ping, until something follows them. */
  private held = '';
  private holding = true;
  private stop: string | null = null;

  close(): string {
    return this.release() + (this.stop ?? 'event: message_stop\ndata: {"type":"message_stop"}\n\n');
  }

  /** The stream broke (or the upstream sent an error event, which is not relayed): ours. */
  fail(error: GatewayError): string {
    return new MessagesEncoder('', '').fail(error);
  }

  protected handle(event: string): string {
    const data = parseData(event) as { type?: unknown } | undefined;
    for (const chunk of data === undefined ? [] : this.reader.read(data)) {
      tallyChunk(this.tally, chunk);
      this.assembler?.add(chunk);
    }
    this.tally.done = this.reader.done;
    this.tally.promptUsage = this.reader.promptUsage;
    this.tally.reasoningText = this.reader.reasoning;
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
        // The answer ends here with the gateway's own error event (fail()), its message sanitized.
        return '';
      default:
        return this.release() + text;
    }
  }

  protected override release(): string {
    const held = this.held;
    this.holding = false;
    this.held = '';
    return held;
  }
}
