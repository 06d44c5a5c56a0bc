// OpenAI chat completions (POST /v1/chat/completions): the canonical form itself, so parsing
// is validation, rendering is the identity, and an OpenAI-compatible upstream is a byte
// passthrough (ChatRelay) that only reads what the receipt needs.

import type { GatewayError } from '../gateway/errors.js';
import { validateChat } from '../gateway/validate.js';
import { tallyChunk } from './assemble.js';
import { type ChatChunk, type ChatRequest, canonicalFinishReason } from './canonical.js';
import { EventRelay } from './event-relay.js';
import type { ClientProtocol, ParsedRequest, StreamEncoder } from './protocol.js';
import { eventData, NOT_JSON_ERROR, SseFramer, sseEvent } from './sse.js';

export const chatProtocol: ClientProtocol = {
  endpoint: 'chat',
  path: '/v1/chat/completions',
  wire: 'chat',
  authorization: (req) => req.headers.authorization,
  parse(body): ParsedRequest {
    validateChat(body);
    const chat = body as ChatRequest;
    return {
      body,
      chat,
      model: chat.model,
      stream: chat.stream === true,
      includeUsage: chat.stream_options?.include_usage === true,
      endUser: typeof chat.user === 'string' ? chat.user : null,
      metadata: chat.metadata ?? {},
    };
  },
  answerId: (receiptId) => `chatcmpl-${receiptId.replaceAll('-', '')}`,
  errorBody: (error) => error.body(),
  render: (answer) => answer,
  encoder: (ctx) => new ChatEncoder(ctx.request.includeUsage),
  relay: (ctx, assemble) => new ChatRelay(ctx.request.includeUsage, assemble),
};

/** Canonical chunks as chat SSE; the usage chunk only when the client asked for it. */
export class ChatEncoder implements StreamEncoder {
  constructor(private readonly includeUsage: boolean) {}

  push(chunk: ChatChunk): string {
    if (!Array.isArray(chunk.choices)) return '';
    if (chunk.usage && !this.includeUsage) {
      if (chunk.choices.length === 0) return '';
      const { usage: _dropped, ...rest } = chunk;
      return `data: ${JSON.stringify(rest)}\n\n`;
    }
    return `data: ${JSON.stringify(chunk)}\n\n`;
  }

  close(): string {
    return 'data: [DONE]\n\n';
  }

  fail(error: GatewayError): string {
    return sseEvent('error', error.body());
  }
}

/**
 * An OpenAI-compatible upstream's chat stream relayed to a chat client. Each upstream chunk
 * becomes at most one client write of complete events, forwarded as the upstream sent them,
 * except `[DONE]` (the pipeline writes it after the receipt) and the usage chunk (Tollgate
 * always asks for it; the client gets it only if it asked too).
 */
export class ChatRelay extends EventRelay {
  private readonly encoder: ChatEncoder;

  constructor(
    private readonly includeUsage: boolean,
    assemble: boolean,
  ) {
    super(assemble);
    this.encoder = new ChatEncoder(includeUsage);
  }

  close(): string {
    return this.encoder.close();
  }

  fail(error: GatewayError): string {
    return this.encoder.fail(error);
  }

  protected handle(event: string): string {
    const data = eventData(event);
    if (data === null) return `${event}\n\n`; // comments, keep-alives: forward as they are
    if (data === '[DONE]') {
      this.tally.done = true;
      return '';
    }
    let parsed: any;
    try {
      parsed = JSON.parse(data);
    } catch {
      this.tally.upstreamError = NOT_JSON_ERROR;
      return '';
    }
    tallyChunk(this.tally, parsed);
    // An error chunk ends the answer with the gateway's own error event (fail()), its message
    // sanitized: the upstream's is not relayed.
    if (this.tally.upstreamError) return '';
    this.assembler?.add(parsed);
    if (parsed?.usage && !this.includeUsage) {
      // Usage Tollgate asked for and the client did not: a usage-only chunk is dropped, usage
      // riding on a content chunk (some providers do this) is stripped.
      const choices = parsed.choices;
      if (!Array.isArray(choices) || choices.length === 0) return '';
      delete parsed.usage;
      return `${replaceData(event, JSON.stringify(parsed))}\n\n`;
    }
    return `${event}\n\n`;
  }
}

/** The event with its data replaced, keeping `event:`/`id:` lines. */
function replaceData(event: string, data: string): string {
  const kept = event.split('\n').filter((line) => !line.startsWith('data:'));
  return [...kept, `data: ${data}`].join('\n');
}

/** An OpenAI-compatible upstream's chat stream as canonical chunks (for other protocols' clients). */
export class ChatDecoder {
  done = false;
  private readonly framer = new SseFramer();

  push(text: string): ChatChunk[] {
    return this.decode(this.framer.push(text));
  }

  end(): ChatChunk[] {
    const rest = this.framer.rest();
    return rest === null ? [] : this.decode([rest]);
  }

  private decode(events: string[]): ChatChunk[] {
    const chunks: ChatChunk[] = [];
    for (const event of events) {
      const data = eventData(event);
      if (data === null) continue;
      if (data === '[DONE]') {
        this.done = true;
        continue;
      }
      let chunk: ChatChunk;
      try {
        chunk = JSON.parse(data);
      } catch {
        chunks.push({ error: NOT_JSON_ERROR } as unknown as ChatChunk);
        continue;
      }
      if (Array.isArray(chunk?.choices)) for (const choice of chunk.choices) canonicalFinishReason(choice);
      chunks.push(chunk);
    }
    return chunks;
  }
}
