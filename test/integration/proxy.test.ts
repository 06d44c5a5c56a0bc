// The official `openai` client against Tollgate in front of the simulated provider.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../support/gateway.js';

let gw: TestGateway;
let secret: string;

beforeAll(async () => {
  gw = await startTestGateway();
  secret = (await gw.createKey('team-proxy')).secret;
});
afterAll(async () => {
  await gw?.close();
});

describe('chat completions', () => {
  it('answers JSON through a route alias with the contract headers', async () => {
    const client = gw.client(secret);
    const { data, response } = await client.chat.completions
      .create({ model: 'chat-default', messages: [{ role: 'user', content: 'Say hello' }] })
      .withResponse();
    expect(data.object).toBe('chat.completion');
    expect(data.choices[0]!.message.content).toBeTruthy();
    expect(data.usage!.prompt_tokens).toBeGreaterThan(0);
    expect(response.headers.get('x-tollgate-route')).toBe('chat-default');
    expect(response.headers.get('x-tollgate-provider')).toBe('sim');
    expect(response.headers.get('x-tollgate-model')).toBe('sim-large');
    expect(response.headers.get('x-tollgate-attempts')).toBe('1');
    expect(response.headers.get('x-tollgate-cache')).toBe('bypass');
    expect(response.headers.get('x-tollgate-receipt-id')).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-/);

    // The upstream got the mapped model and the provider's credential, never the client's key.
    const upstream = gw.sim.requests.at(-1)!;
    expect(upstream.body.model).toBe('sim-large');
    expect(upstream.headers.authorization).toBe('Bearer sim-upstream-secret');
  });

  it('streams chunk for chunk, hides the usage chunk unless asked, and ends with a receipt event', async () => {
    const client = gw.client(secret);
    const stream = await client.chat.completions.create({
      model: 'chat-default',
      stream: true,
      messages: [{ role: 'user', content: 'Count to five' }],
    });
    let text = '';
    let sawUsage = false;
    let chunks = 0;
    for await (const chunk of stream) {
      chunks++;
      text += chunk.choices[0]?.delta?.content ?? '';
      if (chunk.usage) sawUsage = true;
    }
    expect(text.length).toBeGreaterThan(0);
    expect(chunks).toBeGreaterThan(2);
    expect(sawUsage).toBe(false);
    // Tollgate asked the upstream for usage anyway, for the receipt.
    expect(gw.sim.requests.at(-1)!.body.stream_options).toEqual({ include_usage: true });

    const withUsage = await client.chat.completions.create({
      model: 'chat-default',
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: 'user', content: 'Count to five' }],
    });
    let usage: unknown = null;
    for await (const chunk of withUsage) if (chunk.usage) usage = chunk.usage;
    expect(usage).toMatchObject({ prompt_tokens: expect.any(Number), completion_tokens: expect.any(Number) });
  });

  it('ends the stream with the receipt as an SSE comment after [DONE], for clients that read on', async () => {
    const res = await fetch(`${gw.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'chat-default', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const text = await res.text();
    const done = text.indexOf('data: [DONE]');
    const receipt = text.indexOf('\n: tollgate-receipt ');
    expect(done).toBeGreaterThan(0);
    expect(receipt).toBeGreaterThan(done);
    expect(text.endsWith('\n\n')).toBe(true);
    expect(text.indexOf('event:')).toBe(-1); // nothing an SSE parser would hand to the application
    const payload = JSON.parse(text.slice(receipt + '\n: tollgate-receipt '.length).split('\n')[0]!);
    expect(payload.receipt_id).toBe(res.headers.get('x-tollgate-receipt-id'));
    expect(typeof payload.cost_usd).toBe('number');
  });

  it('passes tools and tool calls through', async () => {
    const client = gw.client(secret);
    const res = await client.chat.completions.create({
      model: 'chat-default',
      messages: [{ role: 'user', content: 'What is the weather in Paris?' }],
      tools: [
        {
          type: 'function',
          function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } },
        },
      ],
      tool_choice: 'required',
    });
    const call = res.choices[0]!.message.tool_calls?.[0];
    expect(call?.type).toBe('function');
    expect(call && 'function' in call ? call.function.name : null).toBe('get_weather');
    expect(() => JSON.parse(call && 'function' in call ? call.function.arguments : '')).not.toThrow();
    expect(gw.sim.requests.at(-1)!.body.tools[0].function.name).toBe('get_weather');
  });

  it('supports JSON mode', async () => {
    const client = gw.client(secret);
    const res = await client.chat.completions.create({
      model: 'chat-default',
      response_format: { type: 'json_object' },
      messages: [{ role: 'user', content: 'Give me a JSON object' }],
    });
    expect(() => JSON.parse(res.choices[0]!.message.content!)).not.toThrow();
    expect(gw.sim.requests.at(-1)!.body.response_format).toEqual({ type: 'json_object' });
  });

  it('pins a provider with provider/model', async () => {
    const client = gw.client(secret);
    const { data, response } = await client.chat.completions
      .create({ model: 'sim-b/some-model', messages: [{ role: 'user', content: 'pinned' }] })
      .withResponse();
    expect(data.model).toBe('some-model');
    expect(response.headers.get('x-tollgate-provider')).toBe('sim-b');
    expect(response.headers.get('x-tollgate-route')).toBe('sim-b/some-model');
    expect(gw.sim.requests.at(-1)!.headers.authorization).toBe('Bearer sim-upstream-secret-b');
  });

  it("keeps a base URL's query (Azure's api-version) on every call, and its credentials as Basic auth", async () => {
    const store = gw.started.runtime.adminStore;
    const base = new URL(gw.sim.url);
    await store.providers.upsertProvider({ name: 'azure-like', kind: 'OPENAI_COMPATIBLE', baseUrl: `${gw.sim.url}?api-version=2024-10-21` });
    await store.providers.upsertProvider({ name: 'basic', kind: 'OPENAI_COMPATIBLE', baseUrl: `http://gw%40user:p%3Ass@${base.host}${base.pathname}` });
    await gw.started.runtime.app.catalog.refresh();
    const client = gw.client(secret);
    await client.chat.completions.create({ model: 'azure-like/gpt', messages: [{ role: 'user', content: 'hi' }] });
    expect(gw.sim.requests.at(-1)).toMatchObject({ path: '/v1/chat/completions', query: 'api-version=2024-10-21' });
    await client.chat.completions.create({ model: 'basic/gpt', messages: [{ role: 'user', content: 'hi' }] });
    expect(gw.sim.requests.at(-1)!.headers.authorization).toBe(`Basic ${Buffer.from('gw@user:p:ss').toString('base64')}`);
  });

  it('honours n and passes attribution through headers and metadata', async () => {
    const client = gw.client(secret, { defaultHeaders: { 'x-tollgate-feature': 'search', 'x-tollgate-task-id': 'task-1' } });
    const { data, response } = await client.chat.completions
      .create({ model: 'chat-default', n: 2, messages: [{ role: 'user', content: 'two answers' }], metadata: { feature: 'ignored' } })
      .withResponse();
    expect(data.choices).toHaveLength(2);
    const receipt = await fetchReceipt(response.headers.get('x-tollgate-receipt-id')!);
    expect(receipt.feature).toBe('search');
    expect(receipt.task_id).toBe('task-1');
  });

  it('reads attribution from metadata and keeps it from the upstream (OpenAI refuses chat metadata without store)', async () => {
    const client = gw.client(secret);
    for (const stream of [false, true]) {
      const { response } = await client.chat.completions
        .create({
          model: 'chat-default',
          stream,
          messages: [{ role: 'user', content: 'hi' }],
          metadata: { feature: 'billing', task_id: 't-9', task_type: 'triage' },
        })
        .withResponse();
      expect(response.status).toBe(200);
      expect(gw.sim.requests.at(-1)!.body).not.toHaveProperty('metadata');
      const receipt = await fetchReceipt(response.headers.get('x-tollgate-receipt-id')!);
      expect([receipt.feature, receipt.task_id, receipt.task_type]).toEqual(['billing', 't-9', 'triage']);
    }
    // With store, the other keys are the client's own tags for an upstream that stores completions.
    await client.chat.completions.create({
      model: 'chat-default',
      store: true,
      messages: [{ role: 'user', content: 'hi' }],
      metadata: { feature: 'billing', run: '7' },
    });
    expect(gw.sim.requests.at(-1)!.body.metadata).toEqual({ run: '7' });
    // Without store, metadata is Tollgate's alone (attribution, routing rules).
    await client.chat.completions.create({ model: 'chat-default', messages: [{ role: 'user', content: 'hi' }], metadata: { run: '7' } });
    expect(gw.sim.requests.at(-1)!.body).not.toHaveProperty('metadata');
  });
});

describe('embeddings and models', () => {
  it('embeds with the SDK default (base64) and with floats', async () => {
    const client = gw.client(secret);
    const base64 = await client.embeddings.create({ model: 'embed-default', input: ['hello', 'world'] });
    expect(base64.data).toHaveLength(2);
    expect(base64.data[0]!.embedding.length).toBeGreaterThan(10);
    expect(gw.sim.requests.at(-1)!.body.encoding_format).toBe('base64');
    const floats = await client.embeddings.create({ model: 'embed-default', input: 'hello', encoding_format: 'float' });
    expect(gw.sim.requests.at(-1)!.body.encoding_format).toBe('float');
    // Same text, same vector, whichever encoding carried it.
    for (const [i, v] of floats.data[0]!.embedding.entries()) expect(v).toBeCloseTo(base64.data[0]!.embedding[i]!, 5);
  });

  it('skips targets that serve no embeddings (an Anthropic or OpenRouter target) for one that does', async () => {
    const store = gw.started.runtime.adminStore;
    await store.providers.upsertProvider({ name: 'claude-e', kind: 'ANTHROPIC', baseUrl: gw.sim.origin, apiKey: 'sk-ant' });
    await store.providers.upsertProvider({ name: 'router-e', kind: 'OPENROUTER', baseUrl: gw.sim.url, apiKey: 'sk-or' });
    await store.routing.upsertRoute({
      name: 'embed-mixed',
      strategy: 'PRIORITY',
      targets: [
        { provider: 'claude-e', model: 'c', priority: 0 },
        { provider: 'router-e', model: 'r', priority: 1 },
        { provider: 'sim', model: 'sim-embed', priority: 2 },
      ],
    });
    await store.routing.upsertRoute({ name: 'embed-none', strategy: 'PRIORITY', targets: [{ provider: 'claude-e', model: 'c' }] });
    await gw.started.runtime.app.catalog.refresh();
    const client = gw.client(secret);
    const { data, response } = await client.embeddings.create({ model: 'embed-mixed', input: 'hello' }).withResponse();
    expect(data.data).toHaveLength(1);
    expect(response.headers.get('x-tollgate-model')).toBe('sim-embed');
    const err: any = await client.embeddings.create({ model: 'embed-none', input: 'hello' }).catch((e) => e);
    expect(err.status).toBe(400);
    expect(err.error?.param ?? err.param).toBe('model');
  });

  it('lists the routes and pins the key may use', async () => {
    const client = gw.client(secret);
    const ids = (await client.models.list()).data.map((m) => m.id);
    expect(ids).toEqual(expect.arrayContaining(['chat-default', 'failover', 'embed-default', 'sim/sim-large', 'sim-b/backup']));

    const limited = await gw.createKey('team-proxy', { allowedRoutes: ['chat-default'] });
    const limitedIds = (await gw.client(limited.secret).models.list()).data.map((m) => m.id);
    expect(limitedIds).toEqual(['chat-default']);
  });
});

async function fetchReceipt(id: string) {
  const res = await fetch(`${gw.baseURL}/receipts/${id}`, { headers: { authorization: `Bearer ${secret}` } });
  expect(res.status).toBe(200);
  return (await res.json()) as Record<string, any>;
}

describe('an upstream that keeps its connection open after its end event', () => {
  it('an empty answer is answered when the end grace closes it, not failed over (the hold, 10 s, is longer than the grace)', async () => {
    // Nothing of it reaches the client before its end (message_start is held, the finish waits
    // for message_delta): closed by the end grace, it was taken for an empty stream.
    await gw.started.runtime.adminStore.routing.upsertRoute({
      name: 'empty-after-done',
      strategy: 'PRIORITY',
      targets: [
        { provider: 'sim', model: 'empty-first', priority: 0 },
        { provider: 'sim-b', model: 'empty-backup', priority: 1 },
      ],
    });
    await gw.started.runtime.app.catalog.refresh();
    gw.sim.behave('empty-first', { hang: 'after-done', content: '', completionTokens: 0, times: 1 });
    const res = await fetch(`${gw.url}/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': secret, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'empty-after-done', max_tokens: 16, stream: true, messages: [{ role: 'user', content: 'say nothing' }] }),
    });
    const text = await res.text();
    expect(res.headers.get('x-tollgate-model')).toBe('empty-first');
    expect(res.headers.get('x-tollgate-attempts')).toBe('1');
    expect(text).toContain('event: message_stop');
    expect(text).not.toContain('event: error');
  });
});
