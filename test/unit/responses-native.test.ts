// Reading a native Responses upstream's answers and events (protocols/responses/decode.ts,
// relay.ts): canonical answers and usage for receipts, events relayed under the gateway's id,
// the opening events held so an early error can still fail over, the final event held for the
// receipt.
import { describe, expect, it } from 'vitest';
import { GatewayError } from '../../src/gateway/errors.js';
import { responseToCompletion } from '../../src/protocols/responses/decode.js';
import { ResponsesRelay } from '../../src/protocols/responses/relay.js';
import { parseResponsesRequest } from '../../src/protocols/responses/request.js';
import { ResponsesEncoder } from '../../src/protocols/responses/stream.js';
import { NOT_JSON_ERROR } from '../../src/protocols/sse.js';

const usage = {
  input_tokens: 120,
  input_tokens_details: { cached_tokens: 100 },
  output_tokens: 30,
  output_tokens_details: { reasoning_tokens: 20 },
  total_tokens: 150,
};
const canonicalUsage = {
  prompt_tokens: 120,
  completion_tokens: 30,
  total_tokens: 150,
  prompt_tokens_details: { cached_tokens: 100 },
  completion_tokens_details: { reasoning_tokens: 20 },
};

describe('responseToCompletion', () => {
  it('reads text, refusals, function calls, usage and how the response ended', () => {
    const c = responseToCompletion({
      id: 'resp_up',
      object: 'response',
      created_at: 1700000000,
      model: 'gpt-x',
      status: 'completed',
      output: [
        { type: 'reasoning', id: 'rs_1', summary: [] },
        { type: 'web_search_call', id: 'ws_1', status: 'completed' },
        {
          type: 'message',
          id: 'msg_1',
          role: 'assistant',
          content: [
            { type: 'output_text', text: 'Hello ', annotations: [] },
            { type: 'output_text', text: 'there', annotations: [] },
          ],
        },
        { type: 'function_call', id: 'fc_1', call_id: 'call_1', name: 'get_weather', arguments: '{"city":"Oslo"}' },
      ],
      usage,
    });
    expect(c).toMatchObject({ object: 'chat.completion', model: 'gpt-x', created: 1700000000, usage: canonicalUsage });
    expect(c.choices[0]).toMatchObject({
      finish_reason: 'tool_calls',
      message: {
        role: 'assistant',
        content: 'Hello there',
        tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Oslo"}' } }],
      },
    });

    const cut = responseToCompletion({
      status: 'incomplete',
      incomplete_details: { reason: 'max_output_tokens' },
      output: [{ type: 'message', content: [{ type: 'output_text', text: 'Hel' }] }],
    });
    expect(cut.choices[0]!.finish_reason).toBe('length');
    expect(cut).not.toHaveProperty('usage');
    const refused = responseToCompletion({ status: 'completed', output: [{ type: 'message', content: [{ type: 'refusal', refusal: 'No.' }] }] });
    expect(refused.choices[0]!.message).toMatchObject({ content: null, refusal: 'No.' });
  });

  it('throws a SyntaxError for what is not a response (the attempt fails over)', () => {
    expect(() => responseToCompletion({ choices: [] })).toThrow(SyntaxError);
    expect(() => responseToCompletion(null)).toThrow(SyntaxError);
  });
});

const ev = (type: string, fields: Record<string, unknown>, seq: number) =>
  `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: seq, ...fields })}\n\n`;
const upstreamResponse = (status: string, extra: Record<string, unknown> = {}) => ({
  id: 'resp_upstream',
  object: 'response',
  status,
  previous_response_id: null,
  output: [],
  usage: null,
  ...extra,
});
const identity = { id: 'resp_gateway', previousResponseId: 'resp_before', metadata: { feature: 'search' } };

describe('ResponsesRelay', () => {
  it('holds the opening events until content, rewrites response ids, holds the final event for close', () => {
    let stored: Record<string, unknown> | null = null;
    const relay = new ResponsesRelay(identity, true, (r) => (stored = r));
    expect(
      relay.push(
        ev('response.created', { response: upstreamResponse('in_progress') }, 0) + ev('response.in_progress', { response: upstreamResponse('in_progress') }, 1),
      ),
    ).toBe('');

    const item = { type: 'function_call', id: 'fc_1', call_id: 'call_1', name: 'lookup', arguments: '', status: 'in_progress' };
    const out = relay.push(
      ev('response.output_item.added', { output_index: 0, item: { type: 'message', id: 'msg_1', role: 'assistant', content: [] } }, 2) +
        ev('response.output_text.delta', { item_id: 'msg_1', output_index: 0, content_index: 0, delta: 'Hi' }, 3) +
        ev('response.output_item.added', { output_index: 1, item }, 4) +
        ev('response.function_call_arguments.delta', { item_id: 'fc_1', output_index: 1, delta: '{"q":' }, 5) +
        // split mid-event: the framer waits for the rest
        ev('response.function_call_arguments.delta', { item_id: 'fc_1', output_index: 1, delta: '1}' }, 6).slice(0, 20),
    );
    const events = out.trimEnd().split('\n\n');
    expect(events.map((e) => e.split('\n')[0])).toEqual([
      'event: response.created',
      'event: response.in_progress',
      'event: response.output_item.added',
      'event: response.output_text.delta',
      'event: response.output_item.added',
      'event: response.function_call_arguments.delta',
    ]);
    const created = JSON.parse(events[0]!.split('\ndata: ')[1]!);
    expect(created).toMatchObject({ sequence_number: 0, response: { id: 'resp_gateway', previous_response_id: 'resp_before', status: 'in_progress' } });
    // Events without a response object go out byte for byte.
    expect(events[3]).toBe(ev('response.output_text.delta', { item_id: 'msg_1', output_index: 0, content_index: 0, delta: 'Hi' }, 3).trimEnd());

    const final = upstreamResponse('completed', { output: [{ type: 'message', content: [{ type: 'output_text', text: 'Hi' }] }], usage });
    expect(
      relay.push(
        ev('response.function_call_arguments.delta', { item_id: 'fc_1', output_index: 1, delta: '1}' }, 6).slice(20) +
          ev('response.completed', { response: final }, 7),
      ),
    ).toContain('"delta":"1}"');
    relay.end();
    expect(relay.tally).toMatchObject({ done: true, upstreamError: null, deliveredText: 'Hi{"q":1}', usage: canonicalUsage });
    expect(stored).toBeNull(); // kept only once the answer is complete and recorded
    const closing = relay.close();
    expect(closing.startsWith('event: response.completed\n')).toBe(true);
    expect(JSON.parse(closing.split('\ndata: ')[1]!).response).toMatchObject({ id: 'resp_gateway', previous_response_id: 'resp_before', status: 'completed' });
    expect(stored).toMatchObject({ id: 'resp_gateway', status: 'completed', usage });
    expect(relay.completion()!.choices[0]).toMatchObject({
      finish_reason: 'tool_calls',
      message: { content: 'Hi', tool_calls: [{ id: 'call_1', function: { name: 'lookup', arguments: '{"q":1}' } }] },
    });
  });

  it('a stream begun with keep-alives alone that breaks opens with a response.created of its own', () => {
    const relay = new ResponsesRelay(identity, false);
    const out = relay.fail(new GatewayError(502, 'api_error', 'upstream_stream_interrupted', 'broke'));
    const events = dataOf(out);
    expect(events.map((e) => [e.type, e.sequence_number])).toEqual([
      ['response.created', 0],
      ['response.failed', 1],
    ]);
    expect(events[0].response).toMatchObject({ id: 'resp_gateway', status: 'in_progress' });
    expect(events[1].response).toMatchObject({ id: 'resp_gateway', status: 'failed', error: { message: 'broke' } });
  });

  it('tallies reasoning (or its summary) for the estimate; an event that is not JSON breaks the stream and is not relayed', () => {
    const relay = new ResponsesRelay(identity, false);
    relay.push(ev('response.reasoning_summary_text.delta', { delta: 'Thinking about it.' }, 1));
    relay.push(ev('response.reasoning_text.delta', { delta: ' More.' }, 2));
    // A summary and the text it summarises are the same thinking: counted once, the fuller one.
    expect(relay.tally.reasoningText).toBe('Thinking about it.');
    relay.push(ev('response.reasoning_text.delta', { delta: ' Much more than the summary said.' }, 3));
    expect(relay.tally.reasoningText).toBe(' More. Much more than the summary said.');
    expect(relay.tally.upstreamError).toBeNull();
    expect(relay.push('event: response.output_text.delta\ndata: {"delta":\n\n')).toBe('');
    expect(relay.tally.upstreamError).toEqual(NOT_JSON_ERROR);
  });

  it('an error right after the opening events comes before any content (the pipeline fails over)', () => {
    const relay = new ResponsesRelay(identity, false);
    expect(relay.push(ev('response.created', { response: upstreamResponse('in_progress') }, 0))).toBe('');
    const out = relay.push(ev('error', { code: 'server_error', message: 'overloaded' }, 1));
    expect(out).toBe(''); // the opening still held, the upstream's error not relayed
    expect(relay.tally).toMatchObject({ contentChunks: 0, done: false, upstreamError: { code: 'server_error', message: 'overloaded' } });
    // The gateway's own ends it (after a break that came too late to fail over).
    expect(relay.fail(new GatewayError(502, 'api_error', 'upstream_stream_interrupted', 'broke'))).toContain('event: response.failed');
  });

  it('response.failed is an upstream error, never done; a break gets a response.failed numbered after the last event', () => {
    const failed = new ResponsesRelay(identity, false);
    failed.push(
      ev('response.output_text.delta', { delta: 'x' }, 4) +
        ev('response.failed', { response: upstreamResponse('failed', { error: { code: 'server_error', message: 'boom' } }) }, 5),
    );
    expect(failed.tally).toMatchObject({ done: false, upstreamError: { code: 'server_error', message: 'boom' } });

    const broken = new ResponsesRelay(identity, false);
    broken.push(ev('response.created', { response: upstreamResponse('in_progress') }, 0) + ev('response.output_text.delta', { delta: 'x' }, 1));
    const event = broken.fail(new GatewayError(502, 'api_error', 'upstream_stream_interrupted', 'The upstream stream broke.'));
    const data = JSON.parse(event.split('\ndata: ')[1]!);
    expect(event.startsWith('event: response.failed\n')).toBe(true);
    expect(data).toMatchObject({
      sequence_number: 2,
      response: { id: 'resp_gateway', status: 'failed', error: { code: 'server_error', message: 'The upstream stream broke.' } },
    });
  });
});

describe('parseResponsesRequest: what only a native upstream takes', () => {
  const user = (content: unknown[]) => ({ model: 'm', input: [{ role: 'user', content }] });

  it('marks the request native-only with the first finding, and leaves it out of the canonical request', () => {
    const t = parseResponsesRequest({
      ...user([
        { type: 'input_text', text: 'Read it.' },
        { type: 'input_file', file_id: 'f' },
      ]),
      tools: [{ type: 'web_search' }],
    });
    // Tools are read before the input: the tool is the finding reported.
    expect(t.nativeOnly).toEqual({ reason: "the built-in tool 'web_search' needs an upstream that speaks the Responses API natively", param: 'tools' });
    expect(t.chat.messages).toEqual([{ role: 'user', content: 'Read it.' }]);
    expect(t.chat).not.toHaveProperty('tools');

    expect(parseResponsesRequest(user([{ type: 'input_file', file_id: 'f' }])).nativeOnly?.param).toBe('input[0].content[0].type');
    expect(parseResponsesRequest(user([{ type: 'input_image', file_id: 'f' }])).nativeOnly?.param).toBe('input[0].content[0].image_url');
    expect(parseResponsesRequest({ model: 'm', input: [{ type: 'item_reference', id: 'msg_1' }] }).nativeOnly?.param).toBe('input[0].type');
    // A screenshot returned by a function: no chat tool message holds it (and the cache key would lose it).
    const screenshot = (url: string) =>
      parseResponsesRequest({
        model: 'm',
        input: [
          {
            type: 'function_call_output',
            call_id: 'c1',
            output: [
              { type: 'input_text', text: 'see' },
              { type: 'input_image', image_url: url },
            ],
          },
        ],
      });
    expect(screenshot('data:image/png;base64,AAAA').nativeOnly?.param).toBe('input[0].output[1].type');
    expect(screenshot('https://example.com/b.png').chat.messages[0]).toMatchObject({ role: 'tool', content: 'see' });
    expect(parseResponsesRequest({ model: 'm', input: 'x', prompt: { id: 'pmpt_1' } }).nativeOnly?.param).toBe('prompt');
    expect(parseResponsesRequest({ model: 'm', input: 'x', tool_choice: { type: 'allowed_tools', mode: 'auto', tools: [] } }).nativeOnly?.param).toBe(
      'tool_choice',
    );
    expect(parseResponsesRequest({ model: 'm', input: 'x', tools: [{ type: 'function', name: 'f' }] }).nativeOnly).toBeUndefined();
  });

  it('what no upstream can be given stays a 400; built-in tool calls of earlier turns are left out of a translation', () => {
    expect(() => parseResponsesRequest({ model: 'm', input: 'x', conversation: { id: 'conv_1' } })).toThrow(/conversation/);
    expect(() => parseResponsesRequest(user([{ type: 'input_video' }]))).toThrow(/input_video/);
    expect(() => parseResponsesRequest(user([{ type: 'input_image' }]))).toThrow(/image_url/);
    const t = parseResponsesRequest({
      model: 'm',
      input: [
        { role: 'user', content: 'News?' },
        { type: 'web_search_call', id: 'ws_1', status: 'completed' },
        { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'Here.' }] },
      ],
    });
    expect(t.nativeOnly).toBeUndefined();
    expect(t.chat.messages).toEqual([
      { role: 'user', content: 'News?' },
      { role: 'assistant', content: 'Here.' },
    ]);
  });
});

describe('ResponsesEncoder (a transcoded stream)', () => {
  it('a stream that breaks before its first event still opens with response.created, as the SDKs expect', () => {
    const encoder = new ResponsesEncoder({ id: 'resp_gateway', created: 1, model: 'm', body: { model: 'm', input: 'hi' } as never });
    const out = encoder.fail(new GatewayError(502, 'api_error', 'upstream_stream_interrupted', 'broke'));
    const events = dataOf(out);
    expect(events.map((e) => [e.type, e.sequence_number])).toEqual([
      ['response.created', 0],
      ['response.in_progress', 1],
      ['response.failed', 2],
    ]);
    expect(events[2].response).toMatchObject({ id: 'resp_gateway', status: 'failed', error: { message: 'broke' } });
  });
});

/** The data of each SSE event in `out`. */
function dataOf(out: string): any[] {
  return out
    .split('\n\n')
    .filter(Boolean)
    .map((e) => JSON.parse(e.split('\ndata: ')[1]!));
}
