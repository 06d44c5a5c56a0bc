// The Anthropic Messages codec and upstream adapter, piece by piece: request translation both
// ways, usage normalisation (DESIGN §6), the event stream read and written, the native relay,
// and errors. The end-to-end behaviour with the official SDKs is in test/integration/messages*.
import { describe, expect, it } from 'vitest';
import { GatewayError } from '../../src/gateway/errors.js';
import { completionChunks, StreamAssembler } from '../../src/protocols/assemble.js';
import type { ChatChunk, ChatRequest } from '../../src/protocols/canonical.js';
import { ChatDecoder } from '../../src/protocols/chat.js';
import { MessagesDecoder, messageToCompletion } from '../../src/protocols/messages/decode.js';
import { MessagesRelay } from '../../src/protocols/messages/relay.js';
import { parseMessagesRequest, TRANSLATED } from '../../src/protocols/messages/request.js';
import { MessagesEncoder } from '../../src/protocols/messages/stream.js';
import { canonicalUsage, messagesErrorBody, messagesUsage } from '../../src/protocols/messages/wire.js';
import { untranslatedMembers } from '../../src/protocols/protocol.js';
import { NOT_JSON_ERROR } from '../../src/protocols/sse.js';
import { Transcoder } from '../../src/protocols/transcode.js';
import { toMessagesRequest } from '../../src/providers/anthropic.js';

const sse = (type: string, data: object = {}) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
const events = (text: string) => [...text.matchAll(/^data: (.*)$/gm)].map((m) => JSON.parse(m[1]!));

describe('Messages request → canonical', () => {
  it('translates every supported field', () => {
    const { chat, nativeOnly } = parseMessagesRequest({
      model: 'claude',
      max_tokens: 300,
      system: [
        { type: 'text', text: 'Be brief.' },
        { type: 'text', text: 'Be kind.', cache_control: { type: 'ephemeral' } },
      ],
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Look: ' },
            { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBOR' } },
            { type: 'image', source: { type: 'url', url: 'https://x.test/a.jpg' } },
          ],
        },
        {
          role: 'assistant',
          content: [
            { type: 'thinking', thinking: 'hmm', signature: 's' },
            { type: 'text', text: 'Checking.' },
            { type: 'tool_use', id: 'toolu_1', name: 'lookup', input: { q: 'a' } },
            { type: 'tool_use', id: 'toolu_2', name: 'lookup', input: { q: 'b' } },
          ],
        },
        {
          role: 'user',
          content: [
            { type: 'tool_result', tool_use_id: 'toolu_1', content: 'found a' },
            {
              type: 'tool_result',
              tool_use_id: 'toolu_2',
              is_error: true,
              content: [
                { type: 'text', text: 'not ' },
                { type: 'text', text: 'found' },
              ],
            },
            { type: 'text', text: 'Go on.' },
          ],
        },
        { role: 'system', content: 'Answer in French.' },
        { role: 'user', content: 'Bonjour' },
      ],
      tools: [{ name: 'lookup', description: 'Looks up', input_schema: { type: 'object', properties: { q: { type: 'string' } } } }],
      tool_choice: { type: 'any', disable_parallel_tool_use: true },
      stop_sequences: ['END'],
      temperature: 0.2,
      top_p: 0.9,
      metadata: { user_id: 'u-1' },
      output_config: { effort: 'high', format: { type: 'json_schema', schema: { type: 'object' } } },
      stream: true,
    });
    expect(nativeOnly).toBeUndefined();
    expect(chat).toEqual({
      model: 'claude',
      max_completion_tokens: 300,
      messages: [
        { role: 'system', content: 'Be brief.\n\nBe kind.' },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Look: ' },
            { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBOR' } },
            { type: 'image_url', image_url: { url: 'https://x.test/a.jpg' } },
          ],
        },
        {
          role: 'assistant',
          content: 'Checking.',
          tool_calls: [
            { id: 'toolu_1', type: 'function', function: { name: 'lookup', arguments: '{"q":"a"}' } },
            { id: 'toolu_2', type: 'function', function: { name: 'lookup', arguments: '{"q":"b"}' } },
          ],
        },
        { role: 'tool', tool_call_id: 'toolu_1', content: 'found a' },
        { role: 'tool', tool_call_id: 'toolu_2', content: 'Error: not found' },
        { role: 'user', content: 'Go on.' },
        { role: 'system', content: 'Answer in French.' },
        { role: 'user', content: 'Bonjour' },
      ],
      tools: [
        { type: 'function', function: { name: 'lookup', description: 'Looks up', parameters: { type: 'object', properties: { q: { type: 'string' } } } } },
      ],
      tool_choice: 'required',
      parallel_tool_calls: false,
      stop: ['END'],
      temperature: 0.2,
      top_p: 0.9,
      response_format: { type: 'json_schema', json_schema: { name: 'output', schema: { type: 'object' }, strict: true } },
      reasoning_effort: 'high',
      user: 'u-1',
      stream: true,
    });
  });

  it('maps tool_choice auto, none and a named tool', () => {
    const base = { model: 'm', max_tokens: 5, messages: [{ role: 'user', content: 'x' }], tools: [{ name: 'f', input_schema: { type: 'object' } }] };
    expect(parseMessagesRequest({ ...base, tool_choice: { type: 'auto' } }).chat.tool_choice).toBe('auto');
    expect(parseMessagesRequest({ ...base, tool_choice: { type: 'none' } }).chat.tool_choice).toBe('none');
    expect(parseMessagesRequest({ ...base, tool_choice: { type: 'tool', name: 'f' } }).chat.tool_choice).toEqual({ type: 'function', function: { name: 'f' } });
  });

  it('marks what only Anthropic can do as native-only, naming the field', () => {
    const base = { model: 'm', max_tokens: 5 };
    const user = (content: unknown[]) => ({ ...base, messages: [{ role: 'user', content }] });
    expect(parseMessagesRequest(user([{ type: 'image', source: { type: 'file', file_id: 'f_1' } }])).nativeOnly?.param).toBe(
      'messages[0].content[0].source.type',
    );
    expect(parseMessagesRequest(user([{ type: 'tool_result', tool_use_id: 't', content: [{ type: 'image', source: {} }] }])).nativeOnly?.param).toBe(
      'messages[0].content[0].content[0].type',
    );
    expect(parseMessagesRequest(user([{ type: 'web_search_tool_result', tool_use_id: 't', content: [] }])).nativeOnly?.param).toBe(
      'messages[0].content[0].type',
    );
    expect(parseMessagesRequest({ ...user(['x'].map((text) => ({ type: 'text', text }))), mcp_servers: [{ name: 's' }] }).nativeOnly?.param).toBe(
      'mcp_servers',
    );
    expect(parseMessagesRequest({ ...user([{ type: 'text', text: 'x' }]), thinking: { type: 'disabled' } }).nativeOnly).toBeUndefined();
  });

  it('count_tokens does not need max_tokens; a message does', () => {
    const body = { model: 'm', messages: [{ role: 'user', content: 'x' }] };
    expect(parseMessagesRequest(body, true).chat.max_completion_tokens).toBeUndefined();
    expect(() => parseMessagesRequest(body)).toThrow(/max_tokens/);
  });
});

describe('canonical → Messages request (the Anthropic adapter)', () => {
  it('leaves empty text out (Anthropic refuses an empty block), and makes system messages alone the user’s turn', () => {
    const empty: ChatRequest = {
      model: 'route',
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: '' },
            { type: 'text', text: 'Hi' },
          ],
        },
        { role: 'assistant', content: 'Hello.' },
        { role: 'user', content: '' },
        { role: 'user', content: 'Again?' },
      ],
    };
    expect(toMessagesRequest(empty, 'claude-x', false).messages).toEqual([
      { role: 'user', content: [{ type: 'text', text: 'Hi' }] },
      { role: 'assistant', content: [{ type: 'text', text: 'Hello.' }] },
      { role: 'user', content: [{ type: 'text', text: 'Again?' }] },
    ]);
    const systemOnly: ChatRequest = { model: 'route', messages: [{ role: 'system', content: 'Write a haiku about rain.' }] };
    const body = toMessagesRequest(systemOnly, 'claude-x', false);
    expect(body.messages).toEqual([{ role: 'user', content: [{ type: 'text', text: 'Write a haiku about rain.' }] }]);
    expect(body).not.toHaveProperty('system');
  });

  it('hoists system messages, merges turns, turns tool results into tool_result blocks', () => {
    const chat: ChatRequest = {
      model: 'route',
      messages: [
        { role: 'system', content: 'Be brief.' },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'What is this?' },
            { type: 'image_url', image_url: { url: 'data:image/jpeg;base64,/9j/4AAQ' } },
            { type: 'image_url', image_url: { url: 'https://x.test/b.png' } },
          ],
        },
        { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'look', arguments: '{"deep":true}' } }] },
        { role: 'tool', tool_call_id: 'call_1', content: 'a cat' },
        { role: 'developer', content: 'Answer in one word.' },
        { role: 'user', content: 'So?' },
      ],
      tools: [{ type: 'function', function: { name: 'look', parameters: { type: 'object', properties: { deep: { type: 'boolean' } } } } }],
      tool_choice: 'required',
      parallel_tool_calls: false,
      stop: 'END',
      temperature: 0.5,
      user: 'u-9',
      reasoning_effort: 'minimal',
      response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object' } } },
    };
    expect(toMessagesRequest(chat, 'claude-x', true)).toEqual({
      model: 'claude-x',
      max_tokens: 4096,
      system: 'Be brief.\n\nAnswer in one word.',
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'What is this?' },
            { type: 'image', source: { type: 'base64', media_type: 'image/jpeg', data: '/9j/4AAQ' } },
            { type: 'image', source: { type: 'url', url: 'https://x.test/b.png' } },
          ],
        },
        { role: 'assistant', content: [{ type: 'tool_use', id: 'call_1', name: 'look', input: { deep: true } }] },
        {
          role: 'user',
          content: [
            { type: 'tool_result', tool_use_id: 'call_1', content: 'a cat' },
            { type: 'text', text: 'So?' },
          ],
        },
      ],
      tools: [{ name: 'look', input_schema: { type: 'object', properties: { deep: { type: 'boolean' } } } }],
      tool_choice: { type: 'any', disable_parallel_tool_use: true },
      stop_sequences: ['END'],
      temperature: 0.5,
      metadata: { user_id: 'u-9' },
      output_config: { format: { type: 'json_schema', schema: { type: 'object' } }, effort: 'low' },
      stream: true,
    });
  });

  it('asks for JSON in words for json_object, and takes the request’s output limit', () => {
    const body = toMessagesRequest(
      { model: 'r', messages: [{ role: 'user', content: 'x' }], response_format: { type: 'json_object' }, max_completion_tokens: 77 },
      'c',
      false,
    );
    expect(body).toMatchObject({ max_tokens: 77, system: 'Respond with a single JSON object and nothing else.' });
    expect(body.stream).toBeUndefined();
    expect(
      toMessagesRequest(
        {
          model: 'r',
          messages: [{ role: 'user', content: 'x' }],
          tools: [{ type: 'function', function: { name: 'f' } }],
          tool_choice: { type: 'function', function: { name: 'f' } },
        },
        'c',
        false,
      ),
    ).toMatchObject({
      tools: [{ name: 'f', input_schema: { type: 'object', properties: {} } }],
      tool_choice: { type: 'tool', name: 'f' },
    });
  });

  it("puts OpenAI's sampling settings in Anthropic's range: temperature at most 1, and not with top_p", () => {
    const sampling = (chat: Partial<ChatRequest>) => {
      const body = toMessagesRequest({ model: 'r', messages: [{ role: 'user', content: 'x' }], ...chat } as ChatRequest, 'c', false);
      return { temperature: body.temperature, top_p: body.top_p };
    };
    expect(sampling({ temperature: 1.6 })).toEqual({ temperature: 1, top_p: undefined });
    expect(sampling({ temperature: 0.3, top_p: 0.9 })).toEqual({ temperature: 0.3, top_p: undefined });
    expect(sampling({ top_p: 0.9 })).toEqual({ temperature: undefined, top_p: 0.9 });
  });

  it('refuses what Anthropic cannot take with a 400 naming the field', () => {
    const refuse = (chat: Partial<ChatRequest>) => {
      try {
        toMessagesRequest({ model: 'r', messages: [{ role: 'user', content: 'x' }], ...chat } as ChatRequest, 'c', false);
      } catch (err) {
        return err as GatewayError;
      }
      throw new Error('not refused');
    };
    expect(refuse({ n: 2 })).toMatchObject({ status: 400, param: 'n' });
    expect(refuse({ messages: [{ role: 'user', content: [{ type: 'input_audio', input_audio: {} } as any] }] })).toMatchObject({
      status: 400,
      param: 'messages[0].content[0].type',
    });
    expect(refuse({ messages: [{ role: 'function' as any, content: 'x' }] })).toMatchObject({ status: 400, param: 'messages[0].role' });
    // Custom (free-form) tools, their calls and an allowed_tools choice: a 400, not a TypeError's 500.
    expect(refuse({ tools: [{ type: 'custom', custom: { name: 'grammar' } } as any] })).toMatchObject({ status: 400, param: 'tools[0]' });
    expect(
      refuse({
        tools: [{ type: 'function', function: { name: 'f' } }],
        tool_choice: { type: 'allowed_tools', allowed_tools: { mode: 'auto', tools: [] } } as any,
      }),
    ).toMatchObject({ status: 400, param: 'tool_choice' });
    expect(
      refuse({
        messages: [
          { role: 'user', content: 'x' },
          { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'custom', custom: { name: 'g', input: 'x' } } as any] },
        ],
      }),
    ).toMatchObject({ status: 400, param: 'messages[1].tool_calls[0]' });
    // A replayed call that leaves its type out is a function call, as before.
    const untyped = toMessagesRequest(
      {
        model: 'r',
        messages: [
          { role: 'user', content: 'x' },
          { role: 'assistant', content: null, tool_calls: [{ id: 'c1', function: { name: 'f', arguments: '{}' } } as any] },
          { role: 'tool', tool_call_id: 'c1', content: 'ok' },
        ],
      },
      'c',
      false,
    );
    expect((untyped.messages as any[])[1].content).toEqual([{ type: 'tool_use', id: 'c1', name: 'f', input: {} }]);
  });
});

describe('usage (DESIGN §6)', () => {
  it('counts cache reads and writes in the prompt, and reverses exactly', () => {
    const canonical = canonicalUsage({
      input_tokens: 10,
      cache_read_input_tokens: 100,
      cache_creation_input_tokens: 30,
      output_tokens: 7,
      output_tokens_details: { thinking_tokens: 3 },
    });
    expect(canonical).toEqual({
      prompt_tokens: 140,
      completion_tokens: 7,
      total_tokens: 147,
      prompt_tokens_details: { cached_tokens: 100, cache_write_tokens: 30 },
      completion_tokens_details: { reasoning_tokens: 3 },
    });
    expect(messagesUsage(canonical)).toEqual({ input_tokens: 10, cache_read_input_tokens: 100, cache_creation_input_tokens: 30, output_tokens: 7 });
    expect(messagesUsage(null)).toEqual({ input_tokens: 0, cache_read_input_tokens: 0, cache_creation_input_tokens: 0, output_tokens: 0 });
  });
});

const STREAM = [
  sse('message_start', {
    message: {
      id: 'msg_1',
      type: 'message',
      role: 'assistant',
      model: 'claude-x',
      content: [],
      usage: { input_tokens: 12, cache_read_input_tokens: 8, output_tokens: 1 },
    },
  }),
  sse('ping'),
  sse('content_block_start', { index: 0, content_block: { type: 'thinking', thinking: '' } }),
  sse('content_block_delta', { index: 0, delta: { type: 'thinking_delta', thinking: 'Let me see.' } }),
  sse('content_block_stop', { index: 0 }),
  sse('content_block_start', { index: 1, content_block: { type: 'text', text: '' } }),
  sse('content_block_delta', { index: 1, delta: { type: 'text_delta', text: 'Calling ' } }),
  sse('content_block_delta', { index: 1, delta: { type: 'text_delta', text: 'now.' } }),
  sse('content_block_stop', { index: 1 }),
  sse('content_block_start', { index: 2, content_block: { type: 'tool_use', id: 'toolu_9', name: 'look', input: {} } }),
  sse('content_block_delta', { index: 2, delta: { type: 'input_json_delta', partial_json: '{"deep":' } }),
  sse('content_block_delta', { index: 2, delta: { type: 'input_json_delta', partial_json: 'true}' } }),
  sse('content_block_stop', { index: 2 }),
  sse('message_delta', { delta: { stop_reason: 'tool_use', stop_sequence: null }, usage: { output_tokens: 20 } }),
  sse('message_stop'),
].join('');

describe('what the chat form does not carry (part of the cache key)', () => {
  it('is every member the translation does not read, nested ones included', () => {
    const body = {
      model: 'm',
      max_tokens: 10,
      messages: [{ role: 'user', content: 'hi' }],
      temperature: 0,
      metadata: { user_id: 'u' },
      output_config: { effort: 'low', format: null, task_budget: 5 },
      service_tier: 'standard_only',
      beta_feature: { on: true },
    };
    expect(untranslatedMembers(body, TRANSLATED.read, TRANSLATED.inside)).toEqual({
      output_config: { task_budget: 5 },
      beta_feature: { on: true },
    });
    expect(
      untranslatedMembers({ ...body, output_config: { effort: 'low' }, service_tier: null, beta_feature: undefined }, TRANSLATED.read, TRANSLATED.inside),
    ).toBeUndefined();
  });
});

describe('Messages stream → canonical chunks', () => {
  it("keeps the prompt's usage from message_start only when it counts one", () => {
    const decoder = new MessagesDecoder();
    decoder.push(STREAM.slice(0, STREAM.indexOf('event: ping')));
    expect(decoder.promptUsage).toMatchObject({ prompt_tokens: 20, completion_tokens: 0, prompt_tokens_details: { cached_tokens: 8 } });
    // A server that reports its input only at the end: no prompt of 0 to bill a cut stream by.
    for (const usage of [{}, { output_tokens: 1 }, { input_tokens: 0, output_tokens: 1 }]) {
      const silent = new MessagesDecoder();
      silent.push(sse('message_start', { message: { id: 'msg_3', model: 'claude-x', usage } }));
      expect(silent.promptUsage).toBeNull();
    }
  });

  it('decodes text and tool calls, with usage kept from message_start, in any split', () => {
    for (const size of [STREAM.length, 7, 1]) {
      const decoder = new MessagesDecoder();
      const assembler = new StreamAssembler();
      for (let i = 0; i < STREAM.length; i += size) for (const chunk of decoder.push(STREAM.slice(i, i + size))) assembler.add(chunk);
      for (const chunk of decoder.end()) assembler.add(chunk);
      expect(decoder.done).toBe(true);
      const completion = assembler.completion()!;
      expect(completion).toMatchObject({
        id: 'msg_1',
        model: 'claude-x',
        choices: [
          {
            message: {
              role: 'assistant',
              content: 'Calling now.',
              tool_calls: [{ id: 'toolu_9', type: 'function', function: { name: 'look', arguments: '{"deep":true}' } }],
            },
            finish_reason: 'tool_calls',
          },
        ],
        usage: canonicalUsage({ input_tokens: 12, cache_read_input_tokens: 8, output_tokens: 20 }),
      });
      // The same answer as JSON reads the same.
      const json = messageToCompletion({
        id: 'msg_1',
        type: 'message',
        model: 'claude-x',
        content: [
          { type: 'thinking', thinking: 'Let me see.' },
          { type: 'text', text: 'Calling now.' },
          { type: 'tool_use', id: 'toolu_9', name: 'look', input: { deep: true } },
        ],
        stop_reason: 'tool_use',
        usage: { input_tokens: 12, cache_read_input_tokens: 8, output_tokens: 20 },
      });
      expect(json.choices).toEqual(completion.choices.map((c) => ({ ...c, logprobs: null })));
      expect(json.usage).toEqual(completion.usage);
    }
  });

  it('a tool called without arguments has arguments "{}" streamed as in one piece, never ""', () => {
    const stream = [
      sse('message_start', { message: { id: 'msg_2', model: 'claude-x', usage: { input_tokens: 5, output_tokens: 1 } } }),
      sse('content_block_start', { index: 0, content_block: { type: 'tool_use', id: 'toolu_1', name: 'now', input: {} } }),
      sse('content_block_delta', { index: 0, delta: { type: 'input_json_delta', partial_json: '' } }),
      sse('content_block_stop', { index: 0 }),
      sse('message_delta', { delta: { stop_reason: 'tool_use', stop_sequence: null }, usage: { output_tokens: 9 } }),
      sse('message_stop'),
    ].join('');
    const decoder = new MessagesDecoder();
    const assembler = new StreamAssembler();
    for (const chunk of [...decoder.push(stream), ...decoder.end()]) assembler.add(chunk);
    const call = assembler.completion()!.choices[0]!.message.tool_calls![0]!;
    expect(call.function).toEqual({ name: 'now', arguments: '{}' });
    const json = messageToCompletion({
      id: 'msg_2',
      type: 'message',
      model: 'claude-x',
      content: [{ type: 'tool_use', id: 'toolu_1', name: 'now', input: {} }],
      stop_reason: 'tool_use',
      usage: { input_tokens: 5, output_tokens: 9 },
    });
    expect(json.choices[0]!.message.tool_calls![0]!.function.arguments).toBe('{}');
  });

  it('an error right after message_start comes before anything a client would see', () => {
    const decoder = new MessagesDecoder();
    const chunks = decoder.push(STREAM.split('event: ping')[0] + sse('error', { error: { type: 'overloaded_error', message: 'Overloaded' } }));
    expect(chunks).toEqual([expect.objectContaining({ error: { type: 'overloaded_error', message: 'Overloaded' } })]);
    expect(chunks[0]!.choices).toBeUndefined();
  });
});

describe('the native relay', () => {
  it('forwards events as sent, holding message_start until content and message_stop until close', () => {
    const relay = new MessagesRelay(true);
    const [start, rest] = [STREAM.slice(0, STREAM.indexOf('event: content_block_start')), STREAM.slice(STREAM.indexOf('event: content_block_start'))];
    expect(relay.push(start)).toBe('');
    const out = relay.push(rest) + relay.end();
    expect(out).toBe(STREAM.replace(sse('message_stop'), ''));
    expect(relay.tally).toMatchObject({
      done: true,
      usage: canonicalUsage({ input_tokens: 12, cache_read_input_tokens: 8, output_tokens: 20 }),
      deliveredText: 'Calling now.{"deep":true}',
    });
    expect(relay.completion()!.choices[0]!.message.tool_calls).toHaveLength(1);
    expect(relay.close()).toBe(sse('message_stop'));
  });

  it('tallies the thinking it relays, for the estimate of a stream cut before its usage', () => {
    const relay = new MessagesRelay(false);
    relay.push(STREAM.split('event: content_block_start')[0]!);
    relay.push(sse('content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'thinking', thinking: '' } }));
    for (const thinking of ['Weighing ', 'the options.'])
      relay.push(sse('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'thinking_delta', thinking } }));
    expect(relay.tally.reasoningText).toBe('Weighing the options.');
    expect(relay.tally.deliveredText).toBe('');
    // Transcoded (to another protocol's client) the same thinking is counted: the provider bills it.
    const decoder = new MessagesDecoder();
    decoder.push(sse('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'thinking_delta', thinking: 'Hmm.' } }));
    expect(decoder.reasoning).toBe('Hmm.');
  });

  it('an event whose data is not JSON is an error, never sent as it came', () => {
    const relay = new MessagesRelay(false);
    const out = relay.push('event: content_block_delta\ndata: {"type":"content_bl\n\n');
    expect(relay.tally.upstreamError).toEqual(NOT_JSON_ERROR);
    expect(out).toBe('');
    expect(events(relay.fail(new GatewayError(502, 'api_error', 'x', 'broken'))).map((e) => e.type)).toEqual(['error']);
    // Transcoded: an error chunk, so the stream ends as broken.
    expect(new MessagesDecoder().push('data: nope\n\n')).toMatchObject([{ error: NOT_JSON_ERROR }]);
  });

  it("does not relay the upstream's error event (its message may carry secrets): the gateway's own ends the stream", () => {
    const relay = new MessagesRelay(false);
    const out = relay.push(STREAM.split('event: ping')[0] + sse('error', { error: { type: 'overloaded_error', message: 'Overloaded' } }));
    expect(out).toBe(''); // message_start still held: nothing went out, the pipeline may fail over
    expect(relay.tally.upstreamError).toEqual({ type: 'overloaded_error', message: 'Overloaded' });
    expect(relay.fail(new GatewayError(502, 'api_error', 'x', 'broken'))).toBe(sse('error', { error: { type: 'api_error', message: 'broken' } }));
  });
});

describe('canonical chunks → Messages events', () => {
  const chunk = (delta: ChatChunk['choices'][number]['delta'], finish: string | null = null): ChatChunk => ({
    id: 'c',
    object: 'chat.completion.chunk',
    created: 1,
    model: 'gpt-x',
    choices: [{ index: 0, delta, finish_reason: finish }],
  });

  it('opens and closes one block per text run and per tool call, in order', () => {
    const encoder = new MessagesEncoder('msg_abc', 'route');
    let out = '';
    for (const c of [
      chunk({ role: 'assistant', content: '' }),
      chunk({ content: 'Let me ' }),
      chunk({ content: 'look.' }),
      chunk({ tool_calls: [{ index: 0, id: 'call_a', type: 'function', function: { name: 'look', arguments: '' } }] }),
      chunk({ tool_calls: [{ index: 0, function: { arguments: '{"a":1}' } }] }),
      chunk({ tool_calls: [{ index: 1, id: 'call_b', type: 'function', function: { name: 'look', arguments: '{}' } }] }),
      chunk({}, 'tool_calls'),
    ])
      out += encoder.push(c);
    out += encoder.close({ prompt_tokens: 50, completion_tokens: 9, total_tokens: 59, prompt_tokens_details: { cached_tokens: 20 } });
    expect(events(out)).toEqual([
      {
        type: 'message_start',
        message: {
          id: 'msg_abc',
          type: 'message',
          role: 'assistant',
          model: 'gpt-x',
          content: [],
          stop_reason: null,
          stop_sequence: null,
          usage: { input_tokens: 0, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 0 },
        },
      },
      { type: 'ping' },
      { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
      { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Let me ' } },
      { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'look.' } },
      { type: 'content_block_stop', index: 0 },
      { type: 'content_block_start', index: 1, content_block: { type: 'tool_use', id: 'call_a', name: 'look', input: {} } },
      { type: 'content_block_delta', index: 1, delta: { type: 'input_json_delta', partial_json: '{"a":1}' } },
      { type: 'content_block_stop', index: 1 },
      { type: 'content_block_start', index: 2, content_block: { type: 'tool_use', id: 'call_b', name: 'look', input: {} } },
      { type: 'content_block_delta', index: 2, delta: { type: 'input_json_delta', partial_json: '{}' } },
      { type: 'content_block_stop', index: 2 },
      {
        type: 'message_delta',
        delta: { stop_reason: 'tool_use', stop_sequence: null },
        usage: { input_tokens: 30, cache_creation_input_tokens: 0, cache_read_input_tokens: 20, output_tokens: 9 },
      },
      { type: 'message_stop' },
    ]);
    expect([...out.matchAll(/^event: (\w+)$/gm)].map((m) => m[1])).toEqual(events(out).map((e) => e.type));
  });

  it('a transcoded stream ends at an error chunk: what the upstream sends after it is not encoded', () => {
    const pump = new Transcoder(new ChatDecoder(), new MessagesEncoder('msg_err', 'route'));
    const data = (c: object) => `data: ${JSON.stringify(c)}\n\n`;
    const out =
      pump.push(data(chunk({ content: 'Before' })) + data({ error: { message: 'boom' } }) + data(chunk({ content: ' after' }))) +
      pump.push(`${data(chunk({ content: ' more' }))}data: [DONE]\n\n`) +
      pump.end();
    const text = events(out)
      .filter((e) => e.type === 'content_block_delta')
      .map((e) => e.delta.text)
      .join('');
    expect(text).toBe('Before');
    expect(pump.tally.deliveredText).toBe('Before');
    expect(pump.tally.upstreamError).toEqual({ message: 'boom' });
  });

  it("a tool call's id and name that come after its first delta still start its block", () => {
    const encoder = new MessagesEncoder('msg_late', 'route');
    let out = '';
    for (const c of [
      chunk({ tool_calls: [{ index: 0, type: 'function', function: { arguments: '{"q":' } }] }),
      chunk({ tool_calls: [{ index: 0, function: { name: 'search', arguments: '"x"' } }] }),
      chunk({ tool_calls: [{ index: 0, id: 'call_late', function: { arguments: '}' } }] }),
      // One that never names itself is still sent, when the answer ends.
      chunk({ tool_calls: [{ index: 1, function: { name: 'other', arguments: '{}' } }] }),
      chunk({}, 'tool_calls'),
    ])
      out += encoder.push(c);
    out += encoder.close(null);
    const blocks = events(out).filter((e) => e.type.startsWith('content_block'));
    expect(blocks).toEqual([
      { type: 'content_block_start', index: 0, content_block: { type: 'tool_use', id: 'call_late', name: 'search', input: {} } },
      { type: 'content_block_delta', index: 0, delta: { type: 'input_json_delta', partial_json: '{"q":"x"}' } },
      { type: 'content_block_stop', index: 0 },
      { type: 'content_block_start', index: 1, content_block: { type: 'tool_use', id: 'toolu_msg_late_1', name: 'other', input: {} } },
      { type: 'content_block_delta', index: 1, delta: { type: 'input_json_delta', partial_json: '{}' } },
      { type: 'content_block_stop', index: 1 },
    ]);
  });

  it('replays a cached answer as a complete stream; an empty one still starts and stops', () => {
    const encoder = new MessagesEncoder('msg_x', 'route');
    const replay = completionChunks(
      messageToCompletion({ id: 'm', content: [{ type: 'text', text: 'Cached words here' }], stop_reason: 'max_tokens', model: 'claude-x' }),
      'msg_x',
    );
    const out = replay.map((c) => encoder.push(c)).join('') + encoder.close(null);
    const text = events(out)
      .filter((e) => e.type === 'content_block_delta')
      .map((e) => e.delta.text)
      .join('');
    expect(text).toBe('Cached words here');
    expect(events(out).at(-2)).toMatchObject({ type: 'message_delta', delta: { stop_reason: 'max_tokens' } });
    expect(events(new MessagesEncoder('msg_y', 'route').close(null)).map((e) => e.type)).toEqual(['message_start', 'ping', 'message_delta', 'message_stop']);
  });
});

describe('errors in Anthropic shape', () => {
  it.each([
    [400, 'invalid_request_error'],
    [401, 'authentication_error'],
    [403, 'permission_error'],
    [404, 'not_found_error'],
    [405, 'invalid_request_error'],
    [413, 'request_too_large'],
    [429, 'rate_limit_error'],
    [502, 'api_error'],
    [503, 'api_error'],
    [504, 'api_error'],
    [508, 'api_error'],
    [529, 'overloaded_error'],
  ])('%i → %s', (status, type) => {
    expect(messagesErrorBody(new GatewayError(status, 'x', 'y', 'Something.'))).toEqual({ type: 'error', error: { type, message: 'Something.' } });
  });

  it('names the field in the message unless the message already does', () => {
    expect(messagesErrorBody(new GatewayError(400, 'invalid_request_error', null, 'Not supported.', 'messages[0].content[1].type')).error.message).toBe(
      'messages[0].content[1].type: Not supported.',
    );
    expect(
      messagesErrorBody(new GatewayError(400, 'invalid_request_error', null, "Missing required parameter: 'max_tokens'.", 'max_tokens')).error.message,
    ).toBe("Missing required parameter: 'max_tokens'.");
  });
});
