// POST /v1/responses through the official clients, against the simulated provider (which
// speaks chat completions, so every request here is translated both ways): the openai SDK's
// create, stream helper, function-tool round trip, structured output, previous_response_id
// and retrieve/delete; the Vercel AI SDK's default (Responses) provider and `.chat`, text,
// stream, object and tools. Translations are asserted field by field against what the
// upstream received and what the receipt recorded.
import { createOpenAI } from '@ai-sdk/openai';
import { generateObject, generateText, jsonSchema, streamText, tool } from 'ai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { expectOneReceiptEach, storedReceipts } from '../support/receipts.js';

let gw: TestGateway;
let key: { secret: string; id: string; teamId: string };
let other: { secret: string; id: string; teamId: string };

beforeAll(async () => {
  gw = await startTestGateway({ env: { TOLLGATE_MAX_BODY_BYTES: String(256 * 1024) } });
  key = await gw.createKey('team-responses');
  other = await gw.createKey('team-responses-other');
}, 120_000);
afterAll(async () => {
  await gw?.close();
});
beforeEach(() => gw.sim.reset());

/** The chat request the simulated upstream received last. */
const upstreamBody = () => gw.sim.requests.filter((r) => r.path.endsWith('/chat/completions')).at(-1)!.body;

async function receipt(id: string | null) {
  const res = await fetch(`${gw.baseURL}/receipts/${id}`, { headers: { authorization: `Bearer ${key.secret}` } });
  expect(res.status).toBe(200);
  return res.json() as Promise<any>;
}

const weather = {
  type: 'function' as const,
  name: 'get_weather',
  description: 'Weather in a city',
  strict: true,
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false },
};

describe('openai SDK: responses.create', () => {
  it('answers a string input, translated to chat and back, with usage, headers and a receipt', async () => {
    const client = gw.client(key.secret);
    const { data: r, response } = await client.responses
      .create({
        model: 'chat-default',
        instructions: 'Be brief.',
        input: 'What is a gateway?',
        max_output_tokens: 50,
        temperature: 0.2,
        user: 'u-1',
        metadata: { feature: 'docs' },
      })
      .withResponse();
    expect(r.id).toMatch(/^resp_[0-9a-f]{32}$/);
    expect(r.object).toBe('response');
    expect(r.status).toBe('completed');
    expect(r.output_text.split(' ').length).toBeGreaterThan(3);
    expect(r.output).toHaveLength(1);
    expect(r.output[0]).toMatchObject({ type: 'message', role: 'assistant', status: 'completed', content: [{ type: 'output_text', annotations: [] }] });
    expect(r.instructions).toBe('Be brief.');
    expect(r.max_output_tokens).toBe(50);
    expect(r.usage).toMatchObject({
      input_tokens: expect.any(Number),
      output_tokens: 8,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens_details: { reasoning_tokens: 0 },
    });
    expect(r.usage!.total_tokens).toBe(r.usage!.input_tokens + r.usage!.output_tokens);

    // What the chat upstream got: instructions as the system message, the input as the user's,
    // max_output_tokens in the simulator's max-tokens field, no Responses-only fields.
    const sent = upstreamBody();
    expect(sent.messages).toEqual([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'What is a gateway?' },
    ]);
    expect(sent.model).toBe('sim-large');
    expect(sent.max_tokens).toBe(50);
    expect(sent.temperature).toBe(0.2);
    expect(sent.user).toBe('u-1');
    expect(sent).not.toHaveProperty('input');
    expect(sent).not.toHaveProperty('instructions');
    expect(sent).not.toHaveProperty('metadata');

    expect(response.headers.get('x-tollgate-route')).toBe('chat-default');
    const rec = await receipt(response.headers.get('x-tollgate-receipt-id'));
    expect(rec).toMatchObject({
      endpoint: '/v1/responses',
      status: 'ok',
      receipt_version: 2,
      feature: 'docs',
      end_user: 'u-1',
      completion_tokens: 8,
      prompt_tokens: r.usage!.input_tokens,
    });
    expect(rec.cost_usd).toBeGreaterThan(0);
  });

  it('translates message items, images, and a function-call history', async () => {
    const client = gw.client(key.secret);
    await client.responses.create({
      model: 'chat-default',
      input: [
        { role: 'developer', content: 'Answer in French.' },
        {
          role: 'user',
          content: [
            { type: 'input_text', text: 'Look: ' },
            { type: 'input_image', image_url: 'data:image/png;base64,iVBORw0KGgo=', detail: 'low' },
          ],
        },
        { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'Une image.' }] } as any,
        { type: 'function_call', call_id: 'call_1', name: 'get_weather', arguments: '{"city":"Paris"}' },
        { type: 'function_call_output', call_id: 'call_1', output: '{"temp":21}' },
        { role: 'user', content: 'And now?' },
      ],
      tools: [weather],
      tool_choice: 'auto',
      parallel_tool_calls: false,
    });
    const sent = upstreamBody();
    expect(sent.messages).toEqual([
      { role: 'system', content: 'Answer in French.' },
      {
        role: 'user',
        content: [
          { type: 'text', text: 'Look: ' },
          { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=', detail: 'low' } },
        ],
      },
      {
        role: 'assistant',
        content: 'Une image.',
        tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }],
      },
      { role: 'tool', tool_call_id: 'call_1', content: '{"temp":21}' },
      { role: 'user', content: 'And now?' },
    ]);
    expect(sent.tools).toEqual([
      { type: 'function', function: { name: 'get_weather', description: 'Weather in a city', parameters: weather.parameters, strict: true } },
    ]);
    expect(sent.tool_choice).toBe('auto');
    expect(sent.parallel_tool_calls).toBe(false);
  });

  it('structured output: text.format json_schema becomes response_format, and the answer parses', async () => {
    const client = gw.client(key.secret);
    const schema = {
      type: 'object',
      properties: { name: { type: 'string' }, age: { type: 'integer' } },
      required: ['name', 'age'],
      additionalProperties: false,
    };
    const r = await client.responses.create({
      model: 'chat-default',
      input: 'Extract the person.',
      text: { format: { type: 'json_schema', name: 'person', schema, strict: true } },
    });
    expect(upstreamBody().response_format).toEqual({ type: 'json_schema', json_schema: { name: 'person', schema, strict: true } });
    const person = JSON.parse(r.output_text);
    expect(typeof person.name).toBe('string');
    expect(Number.isInteger(person.age)).toBe(true);
    expect(r.text).toEqual({ format: { type: 'json_schema', name: 'person', schema, strict: true } });
  });

  it('a function-tool round trip with previous_response_id, then retrieve and delete', async () => {
    const client = gw.client(key.secret);
    const first = await client.responses.create({ model: 'chat-default', input: 'Please call get_weather for Oslo.', tools: [weather] });
    const call = first.output.find((o) => o.type === 'function_call');
    expect(call).toMatchObject({ type: 'function_call', name: 'get_weather', status: 'completed', call_id: expect.stringMatching(/^call_/) });
    const args = JSON.parse((call as any).arguments);
    expect(typeof args.city).toBe('string');

    const second = await client.responses.create({
      model: 'chat-default',
      previous_response_id: first.id,
      input: [{ type: 'function_call_output', call_id: (call as any).call_id, output: '{"temp":-3}' }],
      tools: [weather],
    });
    expect(second.previous_response_id).toBe(first.id);
    expect(second.output_text.length).toBeGreaterThan(0);
    // The upstream saw the whole conversation: the first turn's input and call, then the result.
    expect(upstreamBody().messages).toEqual([
      { role: 'user', content: 'Please call get_weather for Oslo.' },
      {
        role: 'assistant',
        content: null,
        tool_calls: [{ id: (call as any).call_id, type: 'function', function: { name: 'get_weather', arguments: (call as any).arguments } }],
      },
      { role: 'tool', tool_call_id: (call as any).call_id, content: '{"temp":-3}' },
    ]);

    const again = await client.responses.retrieve(second.id);
    expect(again).toMatchObject({ id: second.id, status: 'completed', output: second.output, usage: second.usage });
    // Another team's key reads it as missing.
    const stranger = await gw
      .client(other.secret)
      .responses.retrieve(second.id)
      .catch((e) => e);
    expect(stranger.status).toBe(404);
    const cont = await gw
      .client(other.secret)
      .responses.create({ model: 'chat-default', input: 'x', previous_response_id: second.id })
      .catch((e) => e);
    expect(cont.status).toBe(404);
    expect(cont.code).toBe('previous_response_not_found');

    const deleted = await client.responses.delete(second.id);
    expect(deleted).toEqual({ id: second.id, object: 'response', deleted: true });
    expect((await client.responses.retrieve(second.id).catch((e) => e)).status).toBe(404);
  });

  it('store: false keeps nothing', async () => {
    const client = gw.client(key.secret);
    const r = await client.responses.create({ model: 'chat-default', input: 'Forget me.', store: false });
    expect((r as { store?: boolean }).store).toBe(false);
    expect((await client.responses.retrieve(r.id).catch((e) => e)).status).toBe(404);
    const cont = await client.responses.create({ model: 'chat-default', input: 'x', previous_response_id: r.id }).catch((e) => e);
    expect(cont.status).toBe(404);
  });

  it('a built-in tool no upstream of the route can run is a 400 naming the tool, never dropped', async () => {
    const err: any = await gw
      .client(key.secret)
      .responses.create({ model: 'chat-default', input: 'What happened today?', tools: [{ type: 'web_search' } as any] })
      .catch((e) => e);
    expect(err.status).toBe(400);
    expect(err.message).toContain("'web_search'");
    expect(err.param).toBe('tools');
  });

  it('max_output_tokens reached: status incomplete with its reason', async () => {
    const r = await gw.client(key.secret).responses.create({ model: 'chat-default', input: 'Tell me everything.', max_output_tokens: 3 });
    expect(r.status).toBe('incomplete');
    expect(r.incomplete_details).toEqual({ reason: 'max_output_tokens' });
    expect(r.usage!.output_tokens).toBe(3);
  });
});

describe('openai SDK: streaming', () => {
  it('responses.stream: typed events in order with sequence numbers, deltas add up, finalResponse has usage', async () => {
    const client = gw.client(key.secret);
    const stream = client.responses.stream({ model: 'chat-default', input: 'Stream a short answer.' });
    const types: string[] = [];
    const seqs: number[] = [];
    let text = '';
    for await (const event of stream) {
      types.push(event.type);
      seqs.push(event.sequence_number);
      if (event.type === 'response.output_text.delta') text += event.delta;
    }
    const final = await stream.finalResponse();
    expect(seqs).toEqual(seqs.map((_, i) => i));
    expect(types.slice(0, 4)).toEqual(['response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added']);
    expect(types.slice(-4)).toEqual(['response.output_text.done', 'response.content_part.done', 'response.output_item.done', 'response.completed']);
    expect(types.filter((t) => t === 'response.output_text.delta')).toHaveLength(8);
    expect(final.output_text).toBe(text);
    expect(final.usage).toMatchObject({ output_tokens: 8, input_tokens: expect.any(Number) });
    expect(final.status).toBe('completed');
    // The upstream was asked for usage; the stream it answered carried it to the receipt.
    expect(upstreamBody().stream_options).toEqual({ include_usage: true });
  });

  it('streams a function call as function_call_arguments deltas', async () => {
    const stream = gw.client(key.secret).responses.stream({ model: 'chat-default', input: 'call get_weather please', tools: [weather] });
    let args = '';
    const types = new Set<string>();
    for await (const event of stream) {
      types.add(event.type);
      if (event.type === 'response.function_call_arguments.delta') args += event.delta;
    }
    const final = await stream.finalResponse();
    const call = final.output.find((o) => o.type === 'function_call') as any;
    expect(types.has('response.function_call_arguments.done')).toBe(true);
    expect(call.arguments).toBe(args);
    expect(JSON.parse(args)).toHaveProperty('city');
  });

  it('the raw stream has no [DONE] and ends with the receipt comment; the stored receipt bills the stream', async () => {
    const res = await fetch(`${gw.baseURL}/responses`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key.secret}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'chat-default', input: 'hi', stream: true }),
    });
    const text = await res.text();
    expect(text).not.toContain('[DONE]');
    const last = text.trimEnd().split('\n').at(-1)!;
    expect(last.startsWith(': tollgate-receipt ')).toBe(true);
    const trailer = JSON.parse(last.slice(': tollgate-receipt '.length));
    expect(trailer).toMatchObject({ receipt_id: res.headers.get('x-tollgate-receipt-id'), status: 'ok' });
    const rec = await receipt(trailer.receipt_id);
    expect(rec).toMatchObject({ stream: true, endpoint: '/v1/responses', completion_tokens: 8, usage_estimated: false });
    expect(rec.cost_usd).toBe(trailer.cost_usd);
    // The stored response is the one response.completed carried.
    const completed = text.split('\n\n').find((e) => e.startsWith('event: response.completed'))!;
    const response = JSON.parse(completed.split('\ndata: ')[1]!).response;
    const stored: any = await gw.client(key.secret).responses.retrieve(response.id);
    const { output_text: _sdkConvenience, ...storedFields } = stored;
    expect(storedFields).toEqual(response);
  });
});

describe('Vercel AI SDK (ai 6 + @ai-sdk/openai 3)', () => {
  const provider = () => createOpenAI({ baseURL: gw.baseURL, apiKey: key.secret });

  it('generateText with the default (Responses) provider', async () => {
    const r = await generateText({ model: provider()('chat-default'), prompt: 'Say something.' });
    expect(r.text.split(' ').length).toBeGreaterThan(3);
    expect(r.finishReason).toBe('stop');
    expect(r.usage.outputTokens).toBe(8);
    expect(gw.sim.requests.at(-1)!.path).toMatch(/chat\/completions$/);
  });

  it('streamText with the default provider and with .chat: no stream error, finish reason stop', async () => {
    for (const model of [provider()('chat-default'), provider().chat('chat-default')]) {
      const errors: unknown[] = [];
      const r = streamText({ model, prompt: 'Stream please.', onError: ({ error }) => void errors.push(error) });
      let text = '';
      for await (const part of r.textStream) text += part;
      expect(errors).toEqual([]);
      expect(await r.finishReason).toBe('stop');
      expect(text.length).toBeGreaterThan(0);
      expect((await r.usage).outputTokens).toBe(8);
    }
  });

  it('generateObject through json_schema', async () => {
    const { object } = await generateObject({
      model: provider()('chat-default'),
      schema: jsonSchema<{ title: string; tags: string[] }>({
        type: 'object',
        properties: { title: { type: 'string' }, tags: { type: 'array', items: { type: 'string' } } },
        required: ['title', 'tags'],
        additionalProperties: false,
      }),
      prompt: 'Make a title and tags.',
    });
    expect(typeof object.title).toBe('string');
    expect(Array.isArray(object.tags)).toBe(true);
    expect(upstreamBody().response_format.type).toBe('json_schema');
  });

  it('tools: the model calls one, the SDK runs it, and the loop ends with text', async () => {
    const calls: string[] = [];
    const r = await generateText({
      model: provider()('chat-default'),
      prompt: 'Use get_weather for Rome.',
      tools: {
        get_weather: tool({
          description: 'Weather in a city',
          inputSchema: jsonSchema<{ city: string }>({
            type: 'object',
            properties: { city: { type: 'string' } },
            required: ['city'],
            additionalProperties: false,
          }),
          execute: async ({ city }) => {
            calls.push(city);
            return { temp: 18 };
          },
        }),
      },
      stopWhen: ({ steps }) => steps.length >= 3,
    });
    expect(calls).toHaveLength(1);
    expect(r.steps.length).toBe(2);
    expect(r.text.length).toBeGreaterThan(0);
  });
});

describe('bad input on /v1/responses', () => {
  async function post(body: string | object) {
    const res = await fetch(`${gw.baseURL}/responses`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key.secret}`, 'content-type': 'application/json' },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
    return { status: res.status, json: (await res.json()) as any, receiptId: res.headers.get('x-tollgate-receipt-id') };
  }

  it('answers OpenAI-shaped errors naming the field, each with a receipt, and loses nothing', async () => {
    const before = (await storedReceipts(gw, key.teamId)).map((r) => r.receipt_id);
    const cases: Array<[string | object, number, string | null, string | null]> = [
      ['{"model": "chat-default", "input": ', 400, null, null],
      [{ model: 'chat-default' }, 400, 'input', 'missing_required_parameter'],
      [{ input: 'hi' }, 400, 'model', 'missing_required_parameter'],
      [{ model: 'chat-default', input: 5 }, 400, 'input', 'invalid_value'],
      [{ model: 'chat-default', input: [{ type: 'computer_call_output', call_id: 'x' }] }, 400, 'input[0].type', 'unsupported_value'],
      [{ model: 'chat-default', input: [{ role: 'robot', content: 'x' }] }, 400, 'input[0].role', 'invalid_value'],
      [
        { model: 'chat-default', input: [{ role: 'user', content: [{ type: 'input_file', file_id: 'f' }] }] },
        400,
        'input[0].content[0].type',
        'unsupported_value',
      ],
      [{ model: 'chat-default', input: 'x', temperature: 'hot' }, 400, 'temperature', 'invalid_value'],
      [{ model: 'chat-default', input: 'x', text: { format: { type: 'json_schema' } } }, 400, 'text.format.name', 'missing_required_parameter'],
      [{ model: 'chat-default', input: 'x', background: true }, 400, 'background', 'unsupported_parameter'],
      [{ model: 'no-such-route', input: 'x' }, 404, 'model', 'model_not_found'],
      [{ model: 'chat-default', input: 'x'.repeat(300 * 1024) }, 413, null, 'request_too_large'],
    ];
    const ids: string[] = [];
    for (const [body, status, param, code] of cases) {
      const r = await post(body);
      expect(r.status, JSON.stringify(r.json)).toBe(status);
      expect(r.json).toEqual({ error: { message: expect.any(String), type: 'invalid_request_error', param, code } });
      ids.push(r.receiptId!);
    }
    const stored = await expectOneReceiptEach(gw, key.teamId, [...before, ...ids]);
    const mine = stored.filter((s) => ids.includes(s.receipt_id));
    expect(mine.every((s) => s.endpoint === '/v1/responses' && s.status === 'rejected')).toBe(true);
  });
});

describe('429 semantics (DESIGN §4)', () => {
  it('every target rate limited: 429 with the smallest Retry-After, then the targets sit out without upstream calls', async () => {
    const store = gw.started.runtime.adminStore;
    await store.routing.upsertRoute({
      name: 'limited',
      strategy: 'PRIORITY',
      retries: 0,
      targets: [
        { provider: 'sim', model: 'rl-a' },
        { provider: 'sim-b', model: 'rl-b' },
      ],
    });
    await gw.started.runtime.app.catalog.refresh();
    gw.sim.behave('rl-a', { status: 429, retryAfterSeconds: 30 });
    gw.sim.behave('rl-b', { status: 429, retryAfterSeconds: 7 });
    const client = gw.client(key.secret);
    const first: any = await client.responses.create({ model: 'limited', input: 'x' }).catch((e) => e);
    expect(first.status).toBe(429);
    expect(first.code).toBe('rate_limit_exceeded');
    expect(first.headers.get('retry-after')).toBe('7');
    const calls = gw.sim.requests.length;
    expect(calls).toBe(2);
    // Within the wait every target is cooling: the client gets 429 again, the upstreams nothing.
    const second: any = await client.chat.completions.create({ model: 'limited', messages: [{ role: 'user', content: 'x' }] }).catch((e) => e);
    expect(second.status).toBe(429);
    expect(Number(second.headers.get('retry-after'))).toBeLessThanOrEqual(7);
    expect(gw.sim.requests.length).toBe(calls);
  });

  it('a mix of 429 and another failure is a 502', async () => {
    const store = gw.started.runtime.adminStore;
    await store.routing.upsertRoute({
      name: 'mixed',
      strategy: 'PRIORITY',
      retries: 0,
      targets: [
        { provider: 'sim', model: 'mx-a' },
        { provider: 'sim-b', model: 'mx-b' },
      ],
    });
    await gw.started.runtime.app.catalog.refresh();
    gw.sim.behave('mx-a', { status: 429, retryAfterSeconds: 5 });
    gw.sim.behave('mx-b', { status: 503 });
    const err: any = await gw
      .client(key.secret)
      .chat.completions.create({ model: 'mixed', messages: [{ role: 'user', content: 'x' }] })
      .catch((e) => e);
    expect(err.status).toBe(502);
    expect(err.code).toBe('upstream_error');
  });
});

describe('LangChain JS (@langchain/openai 1.4)', () => {
  it('ChatOpenAI over chat completions and over the Responses API, invoke and stream', async () => {
    const { ChatOpenAI } = await import('@langchain/openai');
    for (const useResponsesApi of [false, true]) {
      const model = new ChatOpenAI({ model: 'chat-default', apiKey: key.secret, configuration: { baseURL: gw.baseURL }, useResponsesApi, maxRetries: 0 });
      const answer = await model.invoke('Say hello.');
      expect(answer.text.split(' ').length, `useResponsesApi: ${useResponsesApi}`).toBeGreaterThan(3);
      expect(answer.usage_metadata?.output_tokens).toBe(8);
      let streamed = '';
      for await (const chunk of await model.stream('Stream hello.')) streamed += chunk.text;
      expect(streamed.length).toBeGreaterThan(0);
    }
    const paths = gw.sim.requests.map((r) => r.path);
    expect(paths.every((p) => p.endsWith('/chat/completions'))).toBe(true);
  });
});
