// The simulator's Anthropic wire driven by the official `@anthropic-ai/sdk`: if the SDK
// accepts what it sends (JSON, the event sequence, error bodies), so will Tollgate's adapter.
import Anthropic from '@anthropic-ai/sdk';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type SimulatedProvider, startSimulatedProvider } from '../../src/sim/simulated.js';

let sim: SimulatedProvider;
let client: Anthropic;

beforeAll(async () => {
  sim = await startSimulatedProvider({ requireApiKey: 'sk-ant-sim' });
  client = new Anthropic({ baseURL: sim.origin, apiKey: 'sk-ant-sim', maxRetries: 0 });
});
afterAll(() => sim.close());
afterEach(() => sim.reset());

const ask = (content: string) => [{ role: 'user' as const, content }];
const weather: Anthropic.Tool = {
  name: 'get_weather',
  description: 'Weather for a city',
  input_schema: { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer', minimum: 1 } }, required: ['city', 'days'] },
};

describe('messages', () => {
  it('answers JSON deterministically with a text block and Anthropic usage', async () => {
    const a = await client.messages.create({ model: 'claude-sim', max_tokens: 100, messages: ask('What is a gateway?') });
    const b = await client.messages.create({ model: 'claude-sim', max_tokens: 100, messages: ask('What is a gateway?') });
    expect(a).toMatchObject({ type: 'message', role: 'assistant', model: 'claude-sim', stop_reason: 'end_turn', stop_sequence: null });
    expect(a.id).toMatch(/^msg_sim/);
    expect(a.id).not.toBe(b.id);
    expect(a.content).toHaveLength(1);
    const block = a.content[0] as Anthropic.TextBlock;
    expect(block.type).toBe('text');
    expect(block.text.split(' ')).toHaveLength(8);
    expect((b.content[0] as Anthropic.TextBlock).text).toBe(block.text);
    // ceil(18 chars / 4) = 5
    expect(a.usage).toEqual({ input_tokens: 5, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 8 });
    expect(sim.requests.at(-1)!.path).toBe('/v1/messages');
  });

  it('streams the Messages event sequence; the SDK assembles the same message', async () => {
    sim.behave('claude-sim', { cacheReadTokens: 40, cacheWriteTokens: 12 });
    const stream = client.messages.stream({ model: 'claude-sim', max_tokens: 100, system: 'Be brief.', messages: ask('Count to five') });
    const events: string[] = [];
    stream.on('streamEvent', (e) => events.push(e.type));
    const message = await stream.finalMessage();
    expect(events[0]).toBe('message_start');
    expect(events.filter((e) => e === 'content_block_delta')).toHaveLength(8);
    expect(events.slice(-3)).toEqual(['content_block_stop', 'message_delta', 'message_stop']);
    expect(message.stop_reason).toBe('end_turn');
    // ceil((9 + 13) chars / 4) = 6: the system prompt counts
    expect(message.usage).toMatchObject({ input_tokens: 6, cache_read_input_tokens: 40, cache_creation_input_tokens: 12, output_tokens: 8 });
    const json = await client.messages.create({ model: 'claude-sim', max_tokens: 100, system: 'Be brief.', messages: ask('Count to five') });
    expect((message.content[0] as Anthropic.TextBlock).text).toBe((json.content[0] as Anthropic.TextBlock).text);
  });

  it('calls a tool with input that fits its schema, JSON and streamed; answers the tool result in words', async () => {
    const call = await client.messages.create({ model: 'claude-sim', max_tokens: 100, tools: [weather], messages: ask('Please call get_weather for Paris') });
    expect(call.stop_reason).toBe('tool_use');
    const use = call.content[0] as Anthropic.ToolUseBlock;
    expect(use).toMatchObject({ type: 'tool_use', name: 'get_weather', id: expect.stringMatching(/^toolu_sim/) });
    expect(use.input).toEqual({ city: expect.any(String), days: 1 });

    const streamed = await client.messages
      .stream({ model: 'claude-sim', max_tokens: 100, tools: [weather], tool_choice: { type: 'any' }, messages: ask('weather?') })
      .finalMessage();
    expect(streamed.stop_reason).toBe('tool_use');
    expect((streamed.content[0] as Anthropic.ToolUseBlock).input).toEqual({ city: expect.any(String), days: 1 });

    const after = await client.messages.create({
      model: 'claude-sim',
      max_tokens: 100,
      tools: [weather],
      messages: [
        ...ask('Please call get_weather for Paris'),
        { role: 'assistant', content: call.content },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: 'get_weather says sunny' }] },
      ],
    });
    expect(after.stop_reason).toBe('end_turn');
    expect(after.content[0]!.type).toBe('text');
  });

  it('cuts at max_tokens and at a stop sequence, and says which', async () => {
    sim.behave('claude-sim', { content: 'one two three four five' });
    const cut = await client.messages.create({ model: 'claude-sim', max_tokens: 2, messages: ask('x') });
    expect(cut).toMatchObject({ stop_reason: 'max_tokens', content: [{ type: 'text', text: 'one two' }], usage: { output_tokens: 2 } });
    const stopped = await client.messages.create({ model: 'claude-sim', max_tokens: 100, stop_sequences: ['four', 'three'], messages: ask('x') });
    expect(stopped).toMatchObject({ stop_reason: 'stop_sequence', stop_sequence: 'three', content: [{ type: 'text', text: 'one two ' }] });
  });
});

describe('behaviours and errors', () => {
  it('answers injected statuses with Anthropic error bodies the SDK maps to its classes', async () => {
    sim.behave('claude-sim', { status: 429, retryAfterSeconds: 7, times: 1 });
    const limited: any = await client.messages.create({ model: 'claude-sim', max_tokens: 10, messages: ask('x') }).catch((e) => e);
    expect(limited).toBeInstanceOf(Anthropic.RateLimitError);
    expect(limited.headers.get('retry-after')).toBe('7');
    expect(limited.error).toEqual({ type: 'error', error: { type: 'rate_limit_error', message: expect.any(String) } });

    sim.behave('claude-sim', { status: 529, times: 1 });
    const overloaded: any = await client.messages.create({ model: 'claude-sim', max_tokens: 10, messages: ask('x') }).catch((e) => e);
    expect(overloaded).toBeInstanceOf(Anthropic.OverloadedError);
    expect(overloaded.error.error.type).toBe('overloaded_error');
  });

  it('refuses a missing max_tokens, bad JSON and a wrong key', async () => {
    const res = await fetch(`${sim.origin}/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': 'sk-ant-sim', 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'claude-sim', messages: ask('x') }),
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ type: 'error', error: { type: 'invalid_request_error', message: 'max_tokens: Field required' } });
    const bad = await fetch(`${sim.origin}/v1/messages`, { method: 'POST', headers: { 'x-api-key': 'sk-ant-sim' }, body: '{' });
    expect(bad.status).toBe(400);
    const wrong = await new Anthropic({ baseURL: sim.origin, apiKey: 'nope', maxRetries: 0 }).messages
      .create({ model: 'm', max_tokens: 1, messages: ask('x') })
      .catch((e) => e);
    expect(wrong).toBeInstanceOf(Anthropic.AuthenticationError);
  });

  it('breaks a stream after N deltas, without message_stop', async () => {
    sim.behave('claude-sim', { breakAfterChunks: 3 });
    const seen: string[] = [];
    const err = await (async () => {
      const stream = await client.messages.create({ model: 'claude-sim', max_tokens: 100, stream: true, messages: ask('x') });
      for await (const event of stream) seen.push(event.type);
    })().catch((e) => e);
    expect(err).toBeInstanceOf(Error);
    expect(seen.filter((t) => t === 'content_block_delta')).toHaveLength(3);
    expect(seen).not.toContain('message_stop');
  });

  it('omits usage when told to', async () => {
    sim.behave('claude-sim', { omitUsage: true });
    const res = await fetch(`${sim.origin}/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': 'sk-ant-sim', 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'claude-sim', max_tokens: 100, messages: ask('x') }),
    });
    const json: any = await res.json();
    expect(json.usage).toBeUndefined();
    expect(json.content[0].type).toBe('text');
  });
});
