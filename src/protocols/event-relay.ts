// What the native stream relays (chat, Responses, Messages) share: the upstream's SSE text is
// framed into events, each event is handled by the protocol's relay (forwarded, held or
// rewritten, and read for the receipt), and, when the answer may be cached, assembled into
// the canonical answer.
import type { GatewayError } from '../gateway/errors.js';
import { StreamAssembler } from './assemble.js';
import type { ChatCompletion, ChatUsage } from './canonical.js';
import { newTally, type StreamPump } from './protocol.js';
import { SseFramer } from './sse.js';

export abstract class EventRelay implements StreamPump {
  readonly tally = newTally();
  private readonly framer = new SseFramer();
  protected readonly assembler: StreamAssembler | null;

  /** `assemble`: keep the whole answer (for the cache); costs a little per chunk. */
  constructor(assemble: boolean) {
    this.assembler = assemble ? new StreamAssembler() : null;
  }

  push(text: string): string {
    let out = '';
    for (const event of this.framer.push(text)) {
      // An error (or data that is not JSON) ends the answer: what follows it is not relayed.
      if (this.tally.upstreamError) break;
      out += this.handle(event);
    }
    return out;
  }

  end(): string {
    if (this.tally.upstreamError) return '';
    const rest = this.framer.rest();
    return (rest === null ? '' : this.handle(rest)) + this.release();
  }

  releaseOpening(): string {
    return this.release();
  }

  completion(): ChatCompletion | null {
    return this.assembler?.completion() ?? null;
  }

  /** One complete upstream event: the text to send the client now. */
  protected abstract handle(event: string): string;

  /** What the relay still holds back, when the upstream ends ('' when it holds nothing). */
  protected release(): string {
    return '';
  }

  abstract close(usage: ChatUsage | null): string;
  abstract fail(error: GatewayError): string;
}
