// ChatRelay: incremental SSE parsing of upstream chat.completion.chunk streams, relayed to a chat client.
import { StringDecoder } from 'node:string_decoder';
import { describe, expect, it } from 'vitest';
import { ChatRelay } from '../../src/protocols/chat.js';
import { MAX_EVENT_CHARS, NOT_JSON_ERROR, receiptComment, SseFramer, sseEvent } from '../../src/protocols/sse.js';

const chunk = (delta: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', choices: [{ index: 0, delta }], ...extra });

const usage = { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 };

/** A realistic stream with multi-byte characters (2-, 3- and 4-byte UTF-8) and a keep-alive. */
const STREAM =
  `data: ${chunk({ role: 'assistant', content: '' })}\n\n` +
  `: keep-alive\n\n` +
  `data: ${chunk({ content: 'héllo ' })}\n\n` +
  `data: ${chunk({ content: '世界 ' })}\n\n` +
  `data: ${chunk({ content: '🎉' })}\n\n` +
  `data: ${chunk({ tool_calls: [{ index: 0, function: { name: 'f', arguments: '{"q":"ü' } }] })}\n\n` +
  `data: ${chunk({ tool_calls: [{ index: 0, function: { arguments: '"}' } }] })}\n\n` +
  `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', choices: [], usage })}\n\n` +
  `data: [DONE]\n\n`;

const EXPECTED_TEXT = 'héllo 世界 🎉{"q":"ü"}';

/** Feeds byte chunks through a StringDecoder exactly like the pipeline does. */
function runBytes(byteChunks: Buffer[], forwardUsage = false) {
  const relay = new ChatRelay(forwardUsage, false);
  const decoder = new StringDecoder('utf8');
  let out = '';
  for (const b of byteChunks) out += relay.push(decoder.write(b));
  const tail = decoder.end();
  if (tail) out += relay.push(tail);
  out += relay.end();
  return { out, tally: relay.tally };
}

describe('ChatRelay: framing', () => {
  const whole = runBytes([Buffer.from(STREAM, 'utf8')]);

  it('processes a whole stream: forwards events, drops [DONE] and the usage-only chunk, tallies text', () => {
    expect(whole.tally.done).toBe(true);
    expect(whole.tally.usage).toEqual(usage);
    expect(whole.tally.deliveredText).toBe(EXPECTED_TEXT);
    expect(whole.tally.contentChunks).toBe(3); // the empty role chunk does not count
    expect(whole.out).not.toContain('[DONE]');
    expect(whole.out).not.toContain('"choices":[]');
    expect(whole.out).toContain(': keep-alive\n\n');
    expect(whole.out.split('\n\n').filter(Boolean)).toHaveLength(7);
  });

  it('gives identical output and tally when the bytes are split at every boundary (incl. inside UTF-8 chars)', () => {
    const bytes = Buffer.from(STREAM, 'utf8');
    // Sanity: the stream really contains multi-byte sequences to split.
    expect(bytes.length).toBeGreaterThan(STREAM.length);
    for (let i = 1; i < bytes.length; i++) {
      const split = runBytes([bytes.subarray(0, i), bytes.subarray(i)]);
      if (split.out !== whole.out || split.tally.deliveredText !== EXPECTED_TEXT) {
        throw new Error(`split at byte ${i} changed the result`);
      }
      expect(split.tally.contentChunks).toBe(3);
      expect(split.tally.done).toBe(true);
    }
  });

  it('gives identical output when fed one byte at a time', () => {
    const bytes = Buffer.from(STREAM, 'utf8');
    const pieces = Array.from({ length: bytes.length }, (_, i) => bytes.subarray(i, i + 1));
    const r = runBytes(pieces);
    expect(r.out).toBe(whole.out);
    expect(r.tally).toEqual(whole.tally);
  });

  it('returns only complete events: nothing until the blank line arrives', () => {
    const relay = new ChatRelay(false, false);
    const ev = `data: ${chunk({ content: 'a' })}`;
    expect(relay.push(ev)).toBe('');
    expect(relay.push('\n')).toBe('');
    expect(relay.tally.contentChunks).toBe(0);
    expect(relay.push('\n')).toBe(`${ev}\n\n`);
    expect(relay.tally.deliveredText).toBe('a');
  });

  it('one push with several events returns all of them in order', () => {
    const relay = new ChatRelay(false, false);
    const a = `data: ${chunk({ content: 'a' })}`;
    const b = `data: ${chunk({ content: 'b' })}`;
    expect(relay.push(`${a}\n\n${b}\n\n`)).toBe(`${a}\n\n${b}\n\n`);
    expect(relay.tally.deliveredText).toBe('ab');
    expect(relay.tally.contentChunks).toBe(2);
  });

  it('handles CRLF separators, including one split across pushes', () => {
    const relay = new ChatRelay(false, false);
    const a = `data: ${chunk({ content: 'x' })}`;
    const b = `data: ${chunk({ content: 'y' })}`;
    let out = relay.push(`${a}\r\n\r`);
    expect(out).toBe('');
    out += relay.push(`\n${b}\r\n\r\ndata: [DONE]\r\n\r\n`);
    expect(relay.tally.deliveredText).toBe('xy');
    expect(relay.tally.done).toBe(true);
    expect(out).not.toContain('[DONE]');
    // Each event is forwarded once, re-terminated with \n\n, and no part of the CRLF
    // separator leaks into the next event.
    expect(out).toBe(`${a}\n\n${b}\n\n`);
  });

  it('parses data lines with CRLF line ends inside one event (multi-line data)', () => {
    const relay = new ChatRelay(false, false);
    // An event split over two data: lines is joined with \n before JSON.parse.
    relay.push(`event: message\r\ndata: {"choices":[{"delta":\r\ndata: {"content":"z"}}]}\r\n\r\n`);
    expect(relay.tally.deliveredText).toBe('z');
  });

  it('accepts `data:` without the optional space', () => {
    const relay = new ChatRelay(false, false);
    relay.push(`data:${chunk({ content: 'q' })}\n\ndata:[DONE]\n\n`);
    expect(relay.tally.deliveredText).toBe('q');
    expect(relay.tally.done).toBe(true);
  });

  it('forwards comments / keep-alives unchanged; data that is not JSON is not forwarded and breaks the stream', () => {
    const relay = new ChatRelay(false, false);
    expect(relay.push(': OPENROUTER PROCESSING\n\n')).toBe(': OPENROUTER PROCESSING\n\n');
    expect(relay.push(':\n\n')).toBe(':\n\n');
    expect(relay.tally.upstreamError).toBeNull();
    expect(relay.push('data: not json\n\n')).toBe('');
    expect(relay.tally.upstreamError).toEqual(NOT_JSON_ERROR);
    expect(relay.tally.contentChunks).toBe(0);
    expect(relay.tally.done).toBe(false);
    // The answer ended there: what follows is neither relayed nor counted.
    expect(relay.push(`data: ${chunk({ content: 'after' })}\n\ndata: [DONE]\n\n`)).toBe('');
    expect(relay.end()).toBe('');
    expect(relay.tally.deliveredText).toBe('');
    expect(relay.tally.done).toBe(false);
  });

  it('tallies reasoning (reasoning_content, reasoning) apart from the answer, for the estimate', () => {
    const relay = new ChatRelay(false, false);
    relay.push(`data: ${chunk({ reasoning_content: 'Let me think. ' })}\n\n`);
    relay.push(`data: ${chunk({ reasoning: 'Still thinking.' })}\n\n`);
    relay.push(`data: ${chunk({ content: 'Yes.' })}\n\n`);
    expect(relay.tally.reasoningText).toBe('Let me think. Still thinking.');
    expect(relay.tally.deliveredText).toBe('Yes.');
  });

  it('detects [DONE] and does not forward it, but still forwards what came before in the same push', () => {
    const relay = new ChatRelay(false, false);
    const a = `data: ${chunk({ content: 'a' })}`;
    expect(relay.tally.done).toBe(false);
    expect(relay.push(`${a}\n\ndata: [DONE]\n\n`)).toBe(`${a}\n\n`);
    expect(relay.tally.done).toBe(true);
  });
});

describe('ChatRelay: usage', () => {
  const usageOnly = `data: ${JSON.stringify({ id: 'c1', choices: [], usage })}\n\n`;

  it('drops the usage-only chunk (choices: []) when the client did not ask for usage, but records it', () => {
    const relay = new ChatRelay(false, false);
    expect(relay.push(usageOnly)).toBe('');
    expect(relay.tally.usage).toEqual(usage);
  });

  it('forwards the usage-only chunk when forwardUsageChunk is set', () => {
    const relay = new ChatRelay(true, false);
    expect(relay.push(usageOnly)).toBe(usageOnly);
    expect(relay.tally.usage).toEqual(usage);
  });

  it('strips usage riding on a content chunk unless asked, keeping the content', () => {
    const ev = `data: ${chunk({ content: 'end' }, { usage })}\n\n`;
    const stripped = new ChatRelay(false, false);
    const out = stripped.push(ev);
    const parsed = JSON.parse(out.slice('data: '.length));
    expect(parsed).not.toHaveProperty('usage');
    expect(parsed.choices[0].delta.content).toBe('end');
    expect(out.endsWith('\n\n')).toBe(true);
    expect(stripped.tally.usage).toEqual(usage);
    expect(stripped.tally.deliveredText).toBe('end');

    const kept = new ChatRelay(true, false);
    expect(kept.push(ev)).toBe(ev);
    expect(kept.tally.usage).toEqual(usage);
  });

  it('keeps the last usage seen', () => {
    const relay = new ChatRelay(false, false);
    relay.push(`data: ${chunk({ content: 'a' }, { usage: { ...usage, completion_tokens: 1 } })}\n\n`);
    relay.push(usageOnly);
    expect(relay.tally.usage).toEqual(usage);
  });

  it('does not treat usage: null as usage', () => {
    const relay = new ChatRelay(false, false);
    const ev = `data: ${chunk({ content: 'a' }, { usage: null })}\n\n`;
    expect(relay.push(ev)).toBe(ev);
    expect(relay.tally.usage).toBeNull();
  });
});

describe('ChatRelay: tally', () => {
  it('counts content chunks and accumulates content plus tool-call arguments across choices', () => {
    const relay = new ChatRelay(false, false);
    relay.push(
      `data: ${JSON.stringify({
        choices: [
          { index: 0, delta: { content: 'A' } },
          { index: 1, delta: { content: 'B' } },
        ],
      })}\n\n`,
    );
    relay.push(
      `data: ${JSON.stringify({
        choices: [
          {
            index: 0,
            delta: {
              tool_calls: [
                { index: 0, function: { arguments: '{"a":' } },
                { index: 1, function: { arguments: '1}' } },
              ],
            },
          },
        ],
      })}\n\n`,
    );
    relay.push(`data: ${chunk({ content: '' })}\n\n`); // empty content does not count
    relay.push(`data: ${chunk({ tool_calls: [{ index: 0, function: { name: 'only_name' } }] })}\n\n`);
    expect(relay.tally.deliveredText).toBe('AB{"a":1}');
    expect(relay.tally.contentChunks).toBe(2);
  });

  it("records an upstream error object and does not relay it (the gateway's own error event ends the stream)", () => {
    const relay = new ChatRelay(false, false);
    const err = { message: 'overloaded', type: 'server_error', code: 502 };
    const ev = `data: ${JSON.stringify({ error: err })}\n\n`;
    expect(relay.push(ev)).toBe('');
    expect(relay.tally.upstreamError).toEqual(err);
    expect(relay.tally.contentChunks).toBe(0);
  });

  it('records an error that arrives as a named `event: error`', () => {
    const relay = new ChatRelay(false, false);
    relay.push(`event: error\ndata: {"error":{"message":"boom"}}\n\n`);
    expect(relay.tally.upstreamError).toEqual({ message: 'boom' });
  });
});

describe('ChatRelay: rest()', () => {
  it('handles a final event that has no terminating blank line', () => {
    const relay = new ChatRelay(false, false);
    const ev = `data: ${chunk({ content: 'tail' })}`;
    expect(relay.push(ev)).toBe('');
    expect(relay.end()).toBe(`${ev}\n\n`);
    expect(relay.tally.deliveredText).toBe('tail');
    // rest() empties the buffer.
    expect(relay.end()).toBe('');
  });

  it('detects a [DONE] without a blank line', () => {
    const relay = new ChatRelay(false, false);
    relay.push(`data: ${chunk({ content: 'a' })}\n\ndata: [DONE]\n`);
    expect(relay.tally.done).toBe(false);
    expect(relay.end()).toBe('');
    expect(relay.tally.done).toBe(true);
  });

  it('returns nothing for whitespace-only leftovers', () => {
    const relay = new ChatRelay(false, false);
    relay.push(`data: ${chunk({ content: 'a' })}\n\n\n`);
    expect(relay.end()).toBe('');
  });
});

describe('sseEvent', () => {
  it('formats named and unnamed events', () => {
    expect(sseEvent(null, { a: 1 })).toBe('data: {"a":1}\n\n');
    expect(sseEvent('response.created', 'x')).toBe('event: response.created\ndata: x\n\n');
  });

  it('writes the receipt as an SSE comment line, which SSE parsers skip', () => {
    const line = receiptComment({ receipt_id: 'r1', cost_usd: 0.5, status: 'ok' });
    expect(line).toBe(': tollgate-receipt {"receipt_id":"r1","cost_usd":0.5,"status":"ok"}\n\n');
    const relay = new ChatRelay(false, false);
    expect(relay.push(line)).toBe(line); // a comment: forwarded, never parsed as data
    expect(relay.tally.contentChunks).toBe(0);
  });
});

describe('SseFramer: pieces', () => {
  it('gives the same events however a stream is cut into pieces (line ends of every kind, blank lines split)', () => {
    const alphabet = ['a', 'b', '\n', '\r', ':', ' '];
    let seed = 7;
    const random = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x7fffffff;
    };
    const framed = (pieces: string[]) => {
      const framer = new SseFramer();
      const events = pieces.flatMap((p) => framer.push(p));
      return [...events, framer.rest()];
    };
    for (let round = 0; round < 2000; round++) {
      const text = Array.from({ length: Math.floor(random() * 60) }, () => alphabet[Math.floor(random() * alphabet.length)]).join('');
      const pieces: string[] = [];
      for (let i = 0; i < text.length; ) {
        const k = 1 + Math.floor(random() * 8);
        pieces.push(text.slice(i, i + k));
        i += k;
      }
      expect(framed(pieces), JSON.stringify(text)).toEqual(framed([text]));
    }
  });
});

describe('SseFramer: one long event', () => {
  it('finds the end of an event split over many pieces, with its blank line split too', () => {
    const framer = new SseFramer();
    const data = `data: ${'x'.repeat(10_000)}`;
    for (let i = 0; i < data.length; i += 1_000) expect(framer.push(data.slice(i, i + 1_000))).toEqual([]);
    expect(framer.push('\n')).toEqual([]);
    expect(framer.push('\ndata: next')).toEqual([data]);
    expect(framer.push('\r\n\r\n')).toEqual(['data: next']);
  });

  it('refuses an event that grows past MAX_EVENT_CHARS (an upstream that never ends one)', () => {
    const framer = new SseFramer();
    const piece = `data: ${'y'.repeat(1024 * 1024)}`;
    let thrown: unknown = null;
    try {
      for (let sent = 0; sent <= MAX_EVENT_CHARS; sent += piece.length) framer.push(piece);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toMatchObject({ code: 'SSE_EVENT_TOO_LARGE' });
  });
});
