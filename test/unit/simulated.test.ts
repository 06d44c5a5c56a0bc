// The simulated provider driven by the official OpenAI SDK: if the SDK accepts what it sends,
// so will the gateway's clients. Retries are off so every status reaches the test as-is.
import OpenAI from 'openai';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SIM_EMBEDDING_DIMS, type SimulatedProvider, startSimulatedProvider } from '../../src/sim/simulated.js';

let sim: SimulatedProvider;
let client: OpenAI;

beforeAll(async () => {
  sim = await startSimulatedProvider();
  client = new OpenAI({ baseURL: sim.url, apiKey: 'sk-test', maxRetries: 0 });
});
afterAll(() => sim.close());
afterEach(() => sim.reset());

const ask = (content: string) => [{ role: 'user' as const, content }];

async function collect(stream: AsyncIterable<OpenAI.Chat.Completions.ChatCompletionChunk>) {
  const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return chunks;
}

const contentOf = (chunks: OpenAI.Chat.Completions.ChatCompletionChunk[]) =>
  chunks.filter((c) => typeof c.choices[0]?.delta.content === 'string' && c.choices[0].delta.content !== '');

function cosine(a: number[], b: number[]): number {
  let dot = 0;
  for (let i = 0; i < a.length; i++) dot += a[i] * b[i];
  return dot; // unit vectors
}

async function waitFor(cond: () => boolean, ms = 1000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('chat completions', () => {
  it('answers JSON deterministically, echoes the model and reports usage', async () => {
    const a = await client.chat.completions.create({ model: 'sim-chat', messages: ask('What is a gateway?') });
    const b = await client.chat.completions.create({ model: 'sim-chat', messages: ask('What is a gateway?') });
    const c = await client.chat.completions.create({ model: 'other-model', messages: ask('Something else entirely') });

    expect(a.object).toBe('chat.completion');
    expect(a.model).toBe('sim-chat');
    expect(c.model).toBe('other-model');
    expect(a.id).not.toBe(b.id);
    expect(a.choices).toHaveLength(1);
    expect(a.choices[0].finish_reason).toBe('stop');
    const text = a.choices[0].message.content!;
    expect(text.split(' ')).toHaveLength(8); // default completionTokens, one word each
    expect(b.choices[0].message.content).toBe(text);
    expect(c.choices[0].message.content).not.toBe(text);
    // ceil(18 chars / 4) = 5
    expect(a.usage).toMatchObject({ prompt_tokens: 5, completion_tokens: 8, total_tokens: 13, prompt_tokens_details: { cached_tokens: 0 } });

    expect(sim.requests).toHaveLength(3);
    expect(sim.requests[0]).toMatchObject({ method: 'POST', path: '/v1/chat/completions', body: { model: 'sim-chat' } });
    expect(sim.requests[0].headers.authorization).toBe('Bearer sk-test');
  });

  it('streams one chunk per token, usage only when asked, same text as JSON', async () => {
    sim.behave('sim-chat', { completionTokens: 5 });
    const json = await client.chat.completions.create({ model: 'sim-chat', messages: ask('stream me') });

    const plain = await collect(await client.chat.completions.create({ model: 'sim-chat', messages: ask('stream me'), stream: true }));
    expect(plain[0].choices[0].delta.role).toBe('assistant');
    expect(plain.every((c) => c.object === 'chat.completion.chunk' && c.model === 'sim-chat')).toBe(true);
    expect(contentOf(plain)).toHaveLength(5);
    expect(plain.at(-1)!.choices[0].finish_reason).toBe('stop');
    expect(plain.some((c) => c.usage)).toBe(false);
    expect(plain.map((c) => c.choices[0].delta.content ?? '').join('')).toBe(json.choices[0].message.content);

    const withUsage = await collect(
      await client.chat.completions.create({
        model: 'sim-chat',
        messages: ask('stream me'),
        stream: true,
        stream_options: { include_usage: true },
      }),
    );
    const last = withUsage.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage).toMatchObject({ completion_tokens: 5, prompt_tokens: 3, total_tokens: 8 });
    expect(withUsage).toHaveLength(plain.length + 1);

    sim.behave('sim-chat', { completionTokens: 5, omitUsage: true });
    const omitted = await collect(
      await client.chat.completions.create({ model: 'sim-chat', messages: ask('x'), stream: true, stream_options: { include_usage: true } }),
    );
    expect(omitted.some((c) => c.usage)).toBe(false);
  });

  it('honours n, fixed content and max_tokens', async () => {
    const two = await client.chat.completions.create({ model: 'sim-chat', messages: ask('two please'), n: 2 });
    expect(two.choices.map((c) => c.index)).toEqual([0, 1]);
    expect(two.choices[0].message.content).not.toBe(two.choices[1].message.content);
    expect(two.usage!.completion_tokens).toBe(16);

    sim.behave('fixed', { content: 'Hello there, world!' });
    const fixed = await collect(await client.chat.completions.create({ model: 'fixed', messages: ask('hi'), stream: true }));
    expect(contentOf(fixed).map((c) => c.choices[0].delta.content)).toEqual(['Hello', ' there,', ' world!']);

    const cut = await client.chat.completions.create({ model: 'sim-chat', messages: ask('long'), max_tokens: 3 });
    expect(cut.choices[0].finish_reason).toBe('length');
    expect(cut.usage!.completion_tokens).toBe(3);
  });

  const weatherTool: OpenAI.Chat.Completions.ChatCompletionTool = {
    type: 'function',
    function: {
      name: 'get_weather',
      parameters: {
        type: 'object',
        properties: {
          city: { type: 'string' },
          unit: { type: 'string', enum: ['celsius', 'fahrenheit'] },
          days: { type: 'integer', minimum: 1 },
        },
        required: ['city', 'unit', 'days'],
      },
    },
  };

  it('calls tools with valid JSON arguments (required, named, or mentioned by the user)', async () => {
    const required = await client.chat.completions.create({
      model: 'sim-chat',
      messages: ask('hello'),
      tools: [weatherTool],
      tool_choice: 'required',
    });
    const choice = required.choices[0];
    expect(choice.finish_reason).toBe('tool_calls');
    expect(choice.message.content).toBeNull();
    const call = choice.message.tool_calls![0] as OpenAI.Chat.Completions.ChatCompletionMessageFunctionToolCall;
    expect(call.function.name).toBe('get_weather');
    const args = JSON.parse(call.function.arguments);
    expect(typeof args.city).toBe('string');
    expect(args.unit).toBe('celsius');
    expect(Number.isInteger(args.days) && args.days >= 1).toBe(true);

    const mentioned = await client.chat.completions.create({ model: 'sim-chat', messages: ask('Please call get_weather for Paris'), tools: [weatherTool] });
    expect(mentioned.choices[0].finish_reason).toBe('tool_calls');
    const notMentioned = await client.chat.completions.create({ model: 'sim-chat', messages: ask('Just chat'), tools: [weatherTool] });
    expect(notMentioned.choices[0].finish_reason).toBe('stop');
    expect(notMentioned.choices[0].message.tool_calls).toBeUndefined();

    const streamed = await collect(
      await client.chat.completions.create({
        model: 'sim-chat',
        messages: ask('hello'),
        tools: [weatherTool],
        tool_choice: { type: 'function', function: { name: 'get_weather' } },
        stream: true,
      }),
    );
    const argText = streamed.map((c) => c.choices[0]?.delta.tool_calls?.[0]?.function?.arguments ?? '').join('');
    expect(streamed[0].choices[0].delta.tool_calls![0].function!.name).toBe('get_weather');
    expect(JSON.parse(argText)).toEqual(args);
    expect(streamed.at(-1)!.choices[0].finish_reason).toBe('tool_calls');
  });

  it('returns valid JSON content for json_object and json_schema', async () => {
    const obj = await client.chat.completions.create({ model: 'sim-chat', messages: ask('json'), response_format: { type: 'json_object' } });
    expect(typeof JSON.parse(obj.choices[0].message.content!).answer).toBe('string');
    expect(obj.usage!.completion_tokens).toBe(8);

    const schema = await client.chat.completions.create({
      model: 'sim-chat',
      messages: ask('structured'),
      response_format: {
        type: 'json_schema',
        json_schema: {
          name: 'person',
          strict: true,
          schema: {
            type: 'object',
            properties: { name: { type: 'string' }, age: { type: 'number' }, tags: { type: 'array', items: { type: 'string' } } },
            required: ['name', 'age', 'tags'],
            additionalProperties: false,
          },
        },
      },
    });
    const value = JSON.parse(schema.choices[0].message.content!);
    expect(Object.keys(value).sort()).toEqual(['age', 'name', 'tags']);
    expect(typeof value.name).toBe('string');
    expect(typeof value.age).toBe('number');
    expect(Array.isArray(value.tags)).toBe(true);
  });
});

describe('embeddings', () => {
  it('returns deterministic unit vectors, identical as float and base64 (SDK default)', async () => {
    const floats = await client.embeddings.create({ model: 'sim-embed', input: ['the cat sat', 'stock prices fell'], encoding_format: 'float' });
    const decoded = await client.embeddings.create({ model: 'sim-embed', input: ['the cat sat', 'stock prices fell'] });
    expect(sim.requests.at(-1)!.body.encoding_format).toBe('base64'); // what the SDK really asked for

    expect(floats.data).toHaveLength(2);
    const v = floats.data[0].embedding;
    expect(v).toHaveLength(SIM_EMBEDDING_DIMS);
    expect(cosine(v, v)).toBeCloseTo(1, 5);
    expect(decoded.data[0].embedding).toEqual(v);
    expect(decoded.data[1].embedding).toEqual(floats.data[1].embedding);
    expect(floats.usage.prompt_tokens).toBeGreaterThan(0);

    // Word overlap drives similarity: what a semantic cache test needs.
    const [a, b, c] = (
      await client.embeddings.create({
        model: 'sim-embed',
        input: ['What is the capital of France?', 'what is the capital of france', 'Quarterly revenue grew sharply'],
        encoding_format: 'float',
      })
    ).data.map((d) => d.embedding);
    expect(cosine(a, b)).toBeGreaterThan(0.99);
    expect(cosine(a, c)).toBeLessThan(0.5);

    const tokens = await client.embeddings.create({ model: 'sim-embed', input: [[1, 2, 3]], dimensions: 16, encoding_format: 'float' });
    expect(tokens.data[0].embedding).toHaveLength(16);
    expect(tokens.usage.prompt_tokens).toBe(3);
  });
});

describe('behaviours', () => {
  it('answers an injected 500 in OpenAI shape', async () => {
    sim.behave('sim-chat', { status: 500 });
    const err = await client.chat.completions.create({ model: 'sim-chat', messages: ask('x') }).catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.InternalServerError);
    expect(err.status).toBe(500);
    expect(err.type).toBe('server_error');
  });

  it('sends Retry-After with 429', async () => {
    sim.behave('sim-chat', { status: 429, retryAfterSeconds: 7 });
    const err = await client.chat.completions.create({ model: 'sim-chat', messages: ask('x') }).catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    expect(err.headers.get('retry-after')).toBe('7');
    expect(err.code).toBe('rate_limit_exceeded');
  });

  it('runs `times` behaviours in order, then falls back', async () => {
    sim.behave('sim-chat', { status: 503, times: 1 });
    sim.behave('sim-chat', { status: 400, times: 2 });
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await client.chat.completions.create({ model: 'sim-chat', messages: ask('x') }).then(
        () => 200,
        (e) => e.status,
      );
      statuses.push(r);
    }
    expect(statuses).toEqual([503, 400, 400, 200]);
    // Another model was never affected.
    sim.behave('sim-chat', { status: 500, times: 1 });
    await expect(client.chat.completions.create({ model: 'sim-chat-mini', messages: ask('x') })).resolves.toBeTruthy();
  });

  it('hangs before headers until the client gives up', async () => {
    sim.behave('stuck', { hang: 'before-headers' });
    const started = performance.now();
    const err = await client.chat.completions.create({ model: 'stuck', messages: ask('x') }, { timeout: 150 }).catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.APIConnectionTimeoutError);
    expect(performance.now() - started).toBeGreaterThanOrEqual(140);
    expect(sim.requests.at(-1)!.body.model).toBe('stuck'); // it did arrive
  });

  it('breaks the connection after N chunks', async () => {
    sim.behave('flaky', { breakAfterChunks: 3, completionTokens: 10 });
    const seen: string[] = [];
    const err = await (async () => {
      const stream = await client.chat.completions.create({ model: 'flaky', messages: ask('x'), stream: true });
      for await (const chunk of stream) if (chunk.choices[0]?.delta.content) seen.push(chunk.choices[0].delta.content);
    })().catch((e) => e);
    expect(err).toBeInstanceOf(Error);
    expect(seen).toHaveLength(3);
  });

  it('paces a slow drip and tokensPerSecond measurably', async () => {
    sim.behave('drip', { dripMs: 40, completionTokens: 3 });
    const times: number[] = [];
    const start = performance.now();
    for await (const _ of await client.chat.completions.create({ model: 'drip', messages: ask('x'), stream: true })) times.push(performance.now());
    // [role, tok0] → tok1 → tok2 → [finish]: three waits of 40 ms.
    expect(times.at(-1)! - start).toBeGreaterThanOrEqual(115);
    expect(times[3] - times[2]).toBeGreaterThanOrEqual(35); // tok1 → tok2

    sim.behave('paced', { tokensPerSecond: 100, completionTokens: 6 });
    const t0 = performance.now();
    await collect(await client.chat.completions.create({ model: 'paced', messages: ask('x'), stream: true }));
    expect(performance.now() - t0).toBeGreaterThanOrEqual(45); // 5 gaps of 10 ms
  });

  it('rejects a wrong API key, bad JSON and unknown paths in OpenAI shape; bounds the recording', async () => {
    const locked = await startSimulatedProvider({ requireApiKey: 'sk-right', maxRecorded: 2 });
    try {
      const wrong = new OpenAI({ baseURL: locked.url, apiKey: 'sk-wrong', maxRetries: 0 });
      const err = await wrong.models.list().catch((e) => e);
      expect(err).toBeInstanceOf(OpenAI.AuthenticationError);
      expect(err.code).toBe('invalid_api_key');
      expect(JSON.stringify(err.error)).not.toContain('sk-wrong');

      const right = new OpenAI({ baseURL: locked.url, apiKey: 'sk-right', maxRetries: 0 });
      const models = await right.models.list();
      expect(models.data.map((m) => m.id)).toContain('sim-chat');

      const headers = { authorization: 'Bearer sk-right', 'content-type': 'application/json' };
      const bad = await fetch(`${locked.url}/chat/completions`, { method: 'POST', headers, body: '{nope' });
      expect(bad.status).toBe(400);
      expect(((await bad.json()) as any).error.type).toBe('invalid_request_error');
      const missing = await fetch(`${locked.url}/nowhere`, { headers });
      expect(missing.status).toBe(404);
      expect(((await missing.json()) as any).error).toMatchObject({ message: 'Invalid URL (GET /v1/nowhere)', param: null, code: null });

      expect(locked.requests.map((r) => r.path)).toEqual(['/v1/chat/completions', '/v1/nowhere']); // last 2 of 4
    } finally {
      await locked.close();
    }
  });

  it('close() ends hung requests and open sockets', async () => {
    const own = await startSimulatedProvider({ defaults: { hang: 'before-headers' } });
    const c = new OpenAI({ baseURL: own.url, apiKey: 'x', maxRetries: 0 });
    // JSON, not a stream: a stream torn down under the SDK surfaces its error twice (once
    // through the iterator, once unhandled from fetch internals), which is not what is tested.
    const pending = c.chat.completions.create({ model: 'm', messages: ask('x') }).then(
      () => 'finished',
      (e) => e,
    );
    await waitFor(() => own.requests.length === 1);
    expect(own.connections()).toBe(1);
    const closedAt = performance.now();
    await own.close();
    const outcome = await pending.catch((e) => e);
    expect(outcome).toBeInstanceOf(Error);
    expect(performance.now() - closedAt).toBeLessThan(1000);
    expect(own.connections()).toBe(0);
  });
});
