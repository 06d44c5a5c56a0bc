// A stream whose upstream speaks another wire than the client: the upstream's events are
// decoded into canonical chunks (an adapter's decoder) and encoded for the client (the
// protocol's encoder). Cache replays are the same thing with a fixed list of chunks.
import type { GatewayError } from '../gateway/errors.js';
import { StreamAssembler, tallyChunk } from './assemble.js';
import type { ChatChunk, ChatCompletion, ChatUsage } from './canonical.js';
import { newTally, type StreamEncoder, type StreamPump } from './protocol.js';

export interface ChunkDecoder {
  push(text: string): ChatChunk[];
  end(): ChatChunk[];
  /** The upstream said its answer is complete. */
  readonly done: boolean;
  /** The prompt's usage, where the upstream reports it before the answer (StreamTally.promptUsage). */
  readonly promptUsage?: ChatUsage | null;
  /** Reasoning no canonical chunk carries (Anthropic's thinking), for StreamTally.reasoningText. */
  readonly reasoning?: string;
}

export class Transcoder implements StreamPump {
  readonly tally = newTally();
  private readonly assembler = new StreamAssembler();

  constructor(
    private readonly decoder: ChunkDecoder,
    private readonly encoder: StreamEncoder,
  ) {}

  push(text: string): string {
    return this.encode(this.decoder.push(text));
  }

  end(): string {
    return this.encode(this.decoder.end());
  }

  /** Encodes chunks that are already canonical (a cache replay). */
  encode(chunks: ChatChunk[]): string {
    let out = '';
    for (const chunk of chunks) {
      // An error (or data that is not JSON) ends the answer: what follows it is not sent.
      if (this.tally.upstreamError) break;
      tallyChunk(this.tally, chunk);
      this.assembler.add(chunk);
      out += this.encoder.push(chunk);
    }
    this.tally.done = this.decoder.done;
    this.tally.promptUsage = this.decoder.promptUsage ?? null;
    if (this.decoder.reasoning !== undefined) this.tally.reasoningText = this.decoder.reasoning;
    return out;
  }

  completion(): ChatCompletion | null {
    return this.assembler.completion();
  }

  close(usage: ChatUsage | null): string {
    return this.encoder.close(usage);
  }

  fail(error: GatewayError): string {
    return this.encoder.fail(error);
  }
}
