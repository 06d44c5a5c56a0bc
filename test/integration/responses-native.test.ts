// POST /v1/responses passed through to an upstream that speaks the Responses API natively (a
// provider of kind OPENAI, here pointed at the simulator's /v1/responses), driven by the
// official openai client: the upstream receives the Responses body (never a chat one), the
// client gets the upstream's answer and events under the gateway's resp_ id, receipts bill the
// upstream's usage, conversations move between native and translated upstreams, built-in tools
// (web_search) run only on a native target, and failover, broken streams and hangs behave as
// on every other wire.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { scanPrompt } from '../../src/sim/answer.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { expectOneReceiptEach } from '../support/receipts.js';

let gw: TestGateway;
let key: { secret: string; id: string; teamId: string };

const PRICE = { in: 1, out: 2, cached: 0.5 };

beforeAll(async () => {
  gw = await startTestGateway({ env: { TOLLGATE_FIRST_BYTE_TIMEOUT_MS: '500', TOLLGATE_ANSWER_TIMEOUT_MS: '500', TOLLGATE_IDLE_TIMEOUT_MS: '500' } });
  const store = gw.started.runtime.adminStore;
  await store.providers.upsertProvider({ name: 'oai', kind: 'OPENAI', baseUrl: gw.sim.url, apiKey: 'sk-oai-upstream' });
  await store.routing.upsertRoute({ name: 'r-native', strategy: 'PRIORITY', targets: [{ provider: 'oai', model: 'gpt-native' }] });
  await store.routing.upsertRoute({
    name: 'r-mixed',
    strategy: 'PRIORITY',
    retries: 0,
    targets: [
      { provider: 'oai', model: 'native-first', priority: 0 },
      { provider: 'sim-b', model: 'chat-backup', priority: 1 },
    ],
  });
  await store.routing.upsertRoute({
    name: 'r-mixed-2',
    strategy: 'PRIORITY',
    retries: 0,
    targets: [
      { provider: 'oai', model: 'native-second', priority: 0 },
      { provider: 'sim-b', model: 'chat-backup', priority: 1 },
    ],
  });
  await store.routing.upsertRoute({
    name: 'r-cached',
    strategy: 'PRIORITY',
    targets: [{ provider: 'oai', model: 'gpt-cached' }],
    cache: { mode: 'EXACT', ttlSeconds: 600 } as any,
  });
  await store.routing.upsertRoute({ name: 'r-hang', strategy: 'PRIORITY', retries: 0, targets: [{ provider: 'oai', model: 'native-hang' }] });
  for (const model of ['gpt-native', 'gpt-cached', 'native-first', 'native-hang']) {
    await store.pricing.setPrice({ provider: 'oai', model, inputPerMTokUsd: PRICE.in, outputPerMTokUsd: PRICE.out, cachedInputPerMTokUsd: PRICE.cached });
  }
  await store.pricing.setPrice({ provider: 'sim-b', model: 'chat-backup', inputPerMTokUsd: 0.5, outputPerMTokUsd: 1.5 });
  await gw.started.runtime.app.catalog.load();
  key = await gw.createKey('team-native');
}, 120_000);
afterAll(async () => {
  await gw?.close();
});
beforeEach(() => gw.sim.reset());

const upstreamCalls = (path: string) => gw.sim.requests.filter((r) => r.path === path);
const responsesCalls = () => upstreamCalls('/v1/responses');
const chatCalls = () => upstreamCalls('/v1/chat/completions');

async function receipt(id: string | null, secret = key.secret): Promise<any> {
  const res = await fetch(`${gw.baseURL}/receipts/${id}`, { headers: { authorization: `Bearer ${secret}` } });
  expect(res.status).toBe(200);
  return res.json();
}

const gatewayId = (receiptId: string | null) => `resp_${receiptId!.replaceAll('-', '')}`;

/** The simulator's prompt estimate for a Responses body (what it reports as input_tokens, before cache reads). */
function promptEstimate(body: any): number {
  const messages = [
    ...(body.instructions ? [{ role: 'system', content: body.instructions }] : []),
    ...(typeof body.input === 'string' ? [{ role: 'user', content: body.input }] : body.input),
  ];
  return scanPrompt(messages, body.tools).tokens;
}

const rawStream = (model: string, input: string, extra: Record<string, unknown> = {}, secret = key.secret) =>
  fetch(`${gw.baseURL}/responses`, {
    method: 'POST',
    headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model, input, stream: true, ...extra }),
  });

describe('native passthrough', () => {
  it('JSON: the upstream gets the Responses body, the client its answer under the gateway id, the receipt its usage and cost', async () => {
    gw.sim.behave('gpt-native', { cacheReadTokens: 4, reasoningTokens: 5 });
    const { data: r, response } = await gw
      .client(key.secret)
      .responses.create({ model: 'r-native', instructions: 'Be brief.', input: 'What is a gateway?', max_output_tokens: 50, metadata: { feature: 'docs' } })
      .withResponse();

    // One upstream call, on the Responses wire, with the client's body (model retargeted).
    expect(chatCalls()).toHaveLength(0);
    expect(responsesCalls()).toHaveLength(1);
    const sent = responsesCalls()[0]!;
    expect(sent.headers.authorization).toBe('Bearer sk-oai-upstream');
    expect(sent.body).toEqual({
      model: 'gpt-native',
      instructions: 'Be brief.',
      input: 'What is a gateway?',
      max_output_tokens: 50,
      // metadata.feature is Tollgate's attribution, not the upstream's
    });

    // The upstream's answer (its item ids, its model), under the gateway's id.
    const receiptId = response.headers.get('x-tollgate-receipt-id');
    expect(r.id).toBe(gatewayId(receiptId));
    // The client's metadata, as it sent it (OpenAI echoes a request's metadata).
    expect(r.metadata).toEqual({ feature: 'docs' });
    expect(r.model).toBe('gpt-native');
    expect(r.output).toHaveLength(1);
    expect(r.output[0]).toMatchObject({ type: 'message', id: expect.stringMatching(/^msg_sim/), role: 'assistant', status: 'completed' });
    expect(r.output_text.split(' ')).toHaveLength(8);
    const input = promptEstimate(sent.body) + 4;
    expect(r.usage).toMatchObject({
      input_tokens: input,
      input_tokens_details: { cached_tokens: 4 },
      output_tokens: 13,
      output_tokens_details: { reasoning_tokens: 5 },
    });
    expect(response.headers.get('x-tollgate-provider')).toBe('oai');
    expect(response.headers.get('x-tollgate-model')).toBe('gpt-native');

    const rec = await receipt(receiptId);
    expect(rec).toMatchObject({
      endpoint: '/v1/responses',
      status: 'ok',
      feature: 'docs',
      prompt_tokens: input,
      cached_tokens: 4,
      completion_tokens: 13,
      reasoning_tokens: 5,
      usage_estimated: false,
    });
    // Reasoning is billed as output (it is part of output_tokens).
    expect(rec.cost_usd).toBeCloseTo(((input - 4) * PRICE.in + 4 * PRICE.cached + 13 * PRICE.out) / 1e6, 12);

    // Stored as the client got it: GET /v1/responses/{id} answers the same object.
    const { output_text: _convenience, ...stored } = (await gw.client(key.secret).responses.retrieve(r.id)) as any;
    const { output_text: _also, ...answered } = r as any;
    expect(stored).toEqual(answered);
  });

  it('stream: the upstream events are relayed (gateway id, sequence numbers), usage billed, receipt comment last', async () => {
    const stream = gw.client(key.secret).responses.stream({ model: 'r-native', input: 'Stream a short answer.' });
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
    expect(types[0]).toBe('response.created');
    expect(types.at(-1)).toBe('response.completed');
    expect(types.filter((t) => t === 'response.output_text.delta')).toHaveLength(8);
    expect(final.id).toMatch(/^resp_[0-9a-f]{32}$/);
    expect(final.output[0]!.id).toMatch(/^msg_sim/);
    expect(final.output_text).toBe(text);
    expect(final.usage!.output_tokens).toBe(8);
    const sent = responsesCalls()[0]!.body;
    expect(sent).toEqual({ model: 'gpt-native', input: 'Stream a short answer.', stream: true });
    expect(chatCalls()).toHaveLength(0);

    // Raw: no [DONE], the receipt comment last, and the receipt bills the upstream's usage.
    const res = await rawStream('r-native', 'Raw stream please.', { metadata: { feature: 'raw', ticket: 't-1' } });
    const raw = await res.text();
    expect(raw).not.toContain('[DONE]');
    const events = raw.trimEnd().split('\n\n');
    expect(events.at(-2)!.startsWith('event: response.completed\n')).toBe(true);
    const last = events.at(-1)!;
    expect(last.startsWith(': tollgate-receipt ')).toBe(true);
    const trailer = JSON.parse(last.slice(': tollgate-receipt '.length));
    const receiptId = res.headers.get('x-tollgate-receipt-id');
    expect(trailer).toMatchObject({ receipt_id: receiptId, status: 'ok' });
    const completed = JSON.parse(events.at(-2)!.split('\ndata: ')[1]!).response;
    expect(completed.id).toBe(gatewayId(receiptId));
    expect(completed.metadata).toEqual({ feature: 'raw', ticket: 't-1' });
    expect(responsesCalls().at(-1)!.body.metadata).toEqual({ ticket: 't-1' });
    const input = promptEstimate(responsesCalls().at(-1)!.body);
    expect(completed.usage).toMatchObject({ input_tokens: input, output_tokens: 8 });
    const rec = await receipt(receiptId);
    expect(rec).toMatchObject({ stream: true, endpoint: '/v1/responses', prompt_tokens: input, completion_tokens: 8, usage_estimated: false });
    expect(rec.cost_usd).toBeCloseTo((input * PRICE.in + 8 * PRICE.out) / 1e6, 12);
    expect(rec.cost_usd).toBe(trailer.cost_usd);
    // The response.completed the client got is what is stored.
    const { output_text: _convenience, ...stored } = (await gw.client(key.secret).responses.retrieve(completed.id)) as any;
    expect(stored).toEqual(completed);
  });

  it('a function call passes through, and its output continues the conversation by previous_response_id', async () => {
    const weather = {
      type: 'function' as const,
      name: 'get_weather',
      strict: true,
      parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false },
    };
    const client = gw.client(key.secret);
    const first = await client.responses.create({ model: 'r-native', input: 'Please call get_weather for Oslo.', tools: [weather] });
    const call = first.output.find((o) => o.type === 'function_call') as any;
    expect(call).toMatchObject({ type: 'function_call', name: 'get_weather', id: expect.stringMatching(/^fc_sim/) });
    expect(JSON.parse(call.arguments)).toHaveProperty('city');
    expect(responsesCalls()[0]!.body.tools).toEqual([weather]);

    // Streamed: the arguments arrive as the upstream's deltas, and add up to the final call.
    const stream = client.responses.stream({ model: 'r-native', input: 'Please call get_weather for Bergen.', tools: [weather], store: false });
    let args = '';
    for await (const event of stream) if (event.type === 'response.function_call_arguments.delta') args += event.delta;
    const streamedResponse = await stream.finalResponse();
    const streamed = streamedResponse.output.find((o) => o.type === 'function_call') as any;
    expect(streamed.arguments).toBe(args);
    expect(JSON.parse(args)).toHaveProperty('city');
    expect(streamedResponse.id).toMatch(/^resp_[0-9a-f]{32}$/);
    expect((await client.responses.retrieve(streamedResponse.id).catch((e) => e)).status).toBe(404); // store: false
    expect((await client.responses.retrieve(first.id)).id).toBe(first.id);

    const second = await client.responses.create({
      model: 'r-native',
      previous_response_id: first.id,
      input: [{ type: 'function_call_output', call_id: call.call_id, output: '{"temp":-3}' }],
      tools: [weather],
    });
    expect(second.previous_response_id).toBe(first.id);
    expect(second.output_text.length).toBeGreaterThan(0);
    // The upstream never saw the gateway's id: it got the conversation as input items.
    const sent = responsesCalls()[2]!.body;
    expect(sent).not.toHaveProperty('previous_response_id');
    expect(sent.input).toEqual([
      { type: 'message', role: 'user', content: 'Please call get_weather for Oslo.' },
      { type: 'function_call', call_id: call.call_id, name: 'get_weather', arguments: call.arguments, status: 'completed' },
      { type: 'function_call_output', call_id: call.call_id, output: '{"temp":-3}' },
    ]);
  });

  it('a conversation moves between a native and a translated upstream, both ways', async () => {
    const client = gw.client(key.secret);
    const first = await client.responses.create({ model: 'chat-default', input: 'My name is Ada.' });
    const second = await client.responses.create({ model: 'r-native', previous_response_id: first.id, input: 'What is my name?' });
    const third = await client.responses.create({ model: 'chat-default', previous_response_id: second.id, input: 'Thanks.' });
    expect([second.previous_response_id, third.previous_response_id]).toEqual([first.id, second.id]);

    // Native turn: the translated turn's items as input (their gateway-minted ids left out).
    expect(responsesCalls()[0]!.body.input).toEqual([
      { type: 'message', role: 'user', content: 'My name is Ada.' },
      { type: 'message', role: 'assistant', status: 'completed', content: [{ type: 'output_text', text: first.output_text, annotations: [], logprobs: [] }] },
      { type: 'message', role: 'user', content: 'What is my name?' },
    ]);
    // Translated turn after a native one: the whole conversation as chat messages.
    expect(chatCalls().at(-1)!.body.messages).toEqual([
      { role: 'user', content: 'My name is Ada.' },
      { role: 'assistant', content: first.output_text },
      { role: 'user', content: 'What is my name?' },
      { role: 'assistant', content: second.output_text },
      { role: 'user', content: 'Thanks.' },
    ]);

    // And a streamed native turn continues it too: its response objects name the client's previous id.
    const stream = client.responses.stream({ model: 'r-native', previous_response_id: third.id, input: 'Bye.' });
    let created: any = null;
    for await (const event of stream) if (event.type === 'response.created') created = event.response;
    const fourth = await stream.finalResponse();
    expect(created).toMatchObject({ id: fourth.id, previous_response_id: third.id });
    expect(fourth.previous_response_id).toBe(third.id);
    const sent = responsesCalls().at(-1)!.body;
    expect(sent).not.toHaveProperty('previous_response_id');
    expect(sent.input.map((i: any) => [i.role, typeof i.content === 'string' ? i.content : i.content[0].text])).toEqual([
      ['user', 'My name is Ada.'],
      ['assistant', first.output_text],
      ['user', 'What is my name?'],
      ['assistant', second.output_text],
      ['user', 'Thanks.'],
      ['assistant', third.output_text],
      ['user', 'Bye.'],
    ]);
    expect((await client.responses.retrieve(fourth.id)).previous_response_id).toBe(third.id);
  });
});

describe('cache', () => {
  it('a native answer is cached like a translated one; a built-in tool request bypasses the cache', async () => {
    const client = gw.client(key.secret);
    const ask = (extra: Record<string, unknown> = {}) =>
      client.responses.create({ model: 'r-cached', input: 'Cache me.', temperature: 0, ...extra } as any).withResponse();
    const first = await ask();
    const second = await ask();
    expect([first.response.headers.get('x-tollgate-cache'), second.response.headers.get('x-tollgate-cache')]).toEqual(['miss', 'exact']);
    expect(second.data.output_text).toBe(first.data.output_text);
    expect(second.data.id).toBe(gatewayId(second.response.headers.get('x-tollgate-receipt-id')));
    expect(second.data.usage).toMatchObject({ input_tokens: first.data.usage!.input_tokens, output_tokens: 8 });
    expect(responsesCalls()).toHaveLength(1);

    // Same question with web_search: not the cached answer, and not cached either.
    const searched = await ask({ tools: [{ type: 'web_search' }] });
    const again = await ask({ tools: [{ type: 'web_search' }] });
    for (const r of [searched, again]) {
      expect(r.response.headers.get('x-tollgate-cache')).toBe('bypass');
      expect(r.data.output[0]!.type).toBe('web_search_call');
    }
    expect(responsesCalls()).toHaveLength(3);

    // What the chat form does not carry but the native upstream gets is part of the key:
    // another verbosity is another answer, the same one again a hit; what a cached answer
    // cannot give back (`include`d extras) is not cached at all.
    const terse = await ask({ text: { verbosity: 'low' } });
    const verbose = await ask({ text: { verbosity: 'high' } });
    const terseAgain = await ask({ text: { verbosity: 'low' } });
    const logprobs = await ask({ include: ['message.output_text.logprobs'] });
    const logprobsAgain = await ask({ include: ['message.output_text.logprobs'] });
    expect([terse, verbose, terseAgain, logprobs, logprobsAgain].map((r) => r.response.headers.get('x-tollgate-cache'))).toEqual([
      'miss',
      'miss',
      'exact',
      'bypass',
      'bypass',
    ]);
    expect(responsesCalls()).toHaveLength(7);
  });
});

describe('built-in tools', () => {
  it('web_search runs on a native target (JSON and stream), and a translated turn can follow it', async () => {
    const client = gw.client(key.secret);
    const r = await client.responses.create({ model: 'r-native', input: 'What happened today?', tools: [{ type: 'web_search' }] });
    expect(r.output.map((o) => o.type)).toEqual(['web_search_call', 'message']);
    expect(r.output[0]).toMatchObject({ status: 'completed', action: { type: 'search', query: 'What happened today?' } });
    expect(r.output_text.split(' ')).toHaveLength(8);
    expect(responsesCalls()[0]!.body.tools).toEqual([{ type: 'web_search' }]);

    const stream = client.responses.stream({ model: 'r-native', input: 'And yesterday?', tools: [{ type: 'web_search' }] });
    const types: string[] = [];
    for await (const event of stream) types.push(event.type);
    expect(types).toContain('response.web_search_call.completed');
    expect((await stream.finalResponse()).output.map((o) => o.type)).toEqual(['web_search_call', 'message']);

    // The search item in the history means nothing to a chat upstream: its message carries what it found.
    await client.responses.create({ model: 'chat-default', previous_response_id: r.id, input: 'Summarise.' });
    expect(chatCalls().at(-1)!.body.messages).toEqual([
      { role: 'user', content: 'What happened today?' },
      { role: 'assistant', content: r.output_text },
      { role: 'user', content: 'Summarise.' },
    ]);
  });

  it('still a 400 on a route without a native target; on a mixed route only the native target is tried', async () => {
    const client = gw.client(key.secret);
    const err: any = await client.responses.create({ model: 'chat-default', input: 'What happened today?', tools: [{ type: 'web_search' }] }).catch((e) => e);
    expect(err.status).toBe(400);
    expect(err.message).toContain("'web_search'");
    expect(err.param).toBe('tools');
    expect(gw.sim.requests).toHaveLength(0);

    const r = await client.responses.create({ model: 'r-mixed', input: 'Search for news.', tools: [{ type: 'web_search' }] });
    expect(r.output[0]!.type).toBe('web_search_call');

    // The native target failing leaves nothing that can run the tool: 502, the chat target never called.
    gw.sim.behave('native-first', { status: 500, times: 1 });
    const failed: any = await client.responses.create({ model: 'r-mixed', input: 'Search again.', tools: [{ type: 'web_search' }] }).catch((e) => e);
    expect(failed.status).toBe(502);
    expect(chatCalls()).toHaveLength(0);
  });
});

describe('what only a native upstream takes', () => {
  const fileInput = [
    {
      role: 'user' as const,
      content: [
        { type: 'input_text' as const, text: 'Summarise this file.' },
        { type: 'input_file' as const, file_id: 'file-abc' },
      ],
    },
  ];

  it('files, images by file id, computer items and allowed_tools pass through to a native target as sent', async () => {
    const client = gw.client(key.secret);
    const r = await client.responses.create({ model: 'r-native', input: fileInput });
    expect(r.status).toBe('completed');
    expect(responsesCalls()[0]!.body.input).toEqual(fileInput);

    const image = [{ role: 'user' as const, content: [{ type: 'input_image' as const, file_id: 'file-img', detail: 'auto' as const }] }];
    await client.responses.create({
      model: 'r-native',
      input: image,
      tool_choice: { type: 'allowed_tools', mode: 'auto', tools: [{ type: 'web_search' }] },
      tools: [{ type: 'web_search' }],
    } as any);
    expect(responsesCalls()[1]!.body).toMatchObject({ input: image, tool_choice: { type: 'allowed_tools' } });

    // On a mixed route such a request skips the chat target.
    await client.responses.create({
      model: 'r-mixed',
      input: [{ type: 'computer_call_output', call_id: 'c1', output: { type: 'computer_screenshot', image_url: 'data:image/png;base64,AA==' } }],
    } as any);
    expect(responsesCalls().at(-1)!.body.model).toBe('native-first');
    expect(chatCalls()).toHaveLength(0);
  });

  it('is a 400 naming the field on a route without a native target, and keeps a continued conversation native', async () => {
    const client = gw.client(key.secret);
    const err: any = await client.responses.create({ model: 'chat-default', input: fileInput }).catch((e) => e);
    expect(err.status).toBe(400);
    expect(err.param).toBe('input[0].content[1].type');
    expect(err.message).toContain('input_file');

    // A stored turn holding a file input: continuing it needs a native upstream as well.
    const first = await client.responses.create({ model: 'r-native', input: fileInput });
    const cont: any = await client.responses.create({ model: 'chat-default', previous_response_id: first.id, input: 'And the second page?' }).catch((e) => e);
    expect(cont.status).toBe(400);
    expect(cont.param).toBe('previous_response_id[0].content[1].type');
    const native = await client.responses.create({ model: 'r-native', previous_response_id: first.id, input: 'And the second page?' });
    expect(native.previous_response_id).toBe(first.id);
    expect(responsesCalls().at(-1)!.body.input).toEqual([
      ...fileInput,
      expect.objectContaining({ type: 'message', role: 'assistant' }),
      { type: 'message', role: 'user', content: 'And the second page?' },
    ]);
    expect(chatCalls()).toHaveLength(0);
  });
});

describe('failures', () => {
  it('a native target answering 500 fails over to a chat-only target, translated (JSON and stream)', async () => {
    const client = gw.client(key.secret);
    gw.sim.behave('native-first', { status: 500, times: 2 });
    const { data: r, response } = await client.responses.create({ model: 'r-mixed', input: 'Fail over please.' }).withResponse();
    expect(response.headers.get('x-tollgate-model')).toBe('chat-backup');
    expect(r.id).toBe(gatewayId(response.headers.get('x-tollgate-receipt-id')));
    expect(r.output[0]!.id).not.toMatch(/^msg_sim/); // rendered by the gateway, not relayed
    expect(response.headers.get('x-tollgate-attempts')).toBe('2');
    expect(responsesCalls().map((c) => c.body.model)).toEqual(['native-first']);
    expect(chatCalls().map((c) => c.body.model)).toEqual(['chat-backup']);
    const rec = await receipt(response.headers.get('x-tollgate-receipt-id'));
    expect(rec.attempts).toMatchObject([
      { provider: 'oai', model: 'native-first', status: 500, error: 'network_error' },
      { provider: 'sim-b', model: 'chat-backup', status: 200, error: null },
    ]);
    expect(rec).toMatchObject({ status: 'ok', completion_tokens: 8, usage_estimated: false });

    const stream = client.responses.stream({ model: 'r-mixed', input: 'Stream it over.' });
    let text = '';
    for await (const event of stream) if (event.type === 'response.output_text.delta') text += event.delta;
    const final = await stream.finalResponse();
    expect(final.output_text).toBe(text);
    expect(chatCalls().at(-1)!.body.stream).toBe(true);
  });

  it("a native target's 4xx comes back to the client without failover; its 429 fails over", async () => {
    const client = gw.client(key.secret);
    gw.sim.behave('native-second', { status: 404, times: 1 });
    const err: any = await client.responses.create({ model: 'r-mixed-2', input: 'Which model?' }).catch((e) => e);
    expect(err.status).toBe(404);
    expect(err.code).toBe('model_not_found');
    expect(chatCalls()).toHaveLength(0);

    gw.sim.behave('native-second', { status: 429, retryAfterSeconds: 1, times: 1 });
    const { data: r, response } = await client.responses.create({ model: 'r-mixed-2', input: 'Rate limited?' }).withResponse();
    expect(r.status).toBe('completed');
    expect(response.headers.get('x-tollgate-model')).toBe('chat-backup');
    expect(responsesCalls()).toHaveLength(2);
    expect(chatCalls()).toHaveLength(1);
  });

  it('a stream that breaks mid-way ends with response.failed and exactly one partial receipt', async () => {
    const team = await gw.createKey('team-native-break');
    gw.sim.behave('gpt-native', { breakAfterChunks: 3, completionTokens: 20, times: 1 });
    const res = await rawStream('r-native', 'Tell me a long story.', {}, team.secret);
    const text = await res.text();
    const deltas = text.split('\n\n').filter((e) => e.startsWith('event: response.output_text.delta'));
    expect(deltas).toHaveLength(3);
    expect(text).not.toContain('event: response.completed');
    const failed = text.split('\n\n').find((e) => e.startsWith('event: response.failed'))!;
    const data = JSON.parse(failed.split('\ndata: ')[1]!);
    expect(data.response).toMatchObject({ id: gatewayId(res.headers.get('x-tollgate-receipt-id')), status: 'failed', error: { code: 'server_error' } });
    expect(data.sequence_number).toBeGreaterThan(JSON.parse(deltas.at(-1)!.split('\ndata: ')[1]!).sequence_number);
    expect(text.trimEnd().split('\n').at(-1)!.startsWith(': tollgate-receipt ')).toBe(true);

    // The official client raises it, after the deltas it did get.
    gw.sim.behave('gpt-native', { breakAfterChunks: 3, completionTokens: 20, times: 1 });
    const { data: stream, response } = await gw.client(team.secret).responses.create({ model: 'r-native', input: 'Again, long.', stream: true }).withResponse();
    const types: string[] = [];
    for await (const event of stream) types.push(event.type);
    expect(types.filter((t) => t === 'response.output_text.delta')).toHaveLength(3);
    // The SDK hands response.failed over as the last event (no response.completed).
    expect(types.at(-1)).toBe('response.failed');
    expect(types).not.toContain('response.completed');

    const receipts = await expectOneReceiptEach(gw, team.teamId, [res.headers.get('x-tollgate-receipt-id'), response.headers.get('x-tollgate-receipt-id')]);
    for (const r of receipts) {
      expect(r).toMatchObject({ status: 'partial', error_code: 'upstream_stream_interrupted' });
      expect(r.completion_tokens).toBeGreaterThan(0);
      expect(r.completion_tokens).toBeLessThan(20);
    }
    expect(responsesCalls()).toHaveLength(2); // never failed over after the first byte
  });

  it('an upstream that hangs times out: 504 for JSON and for a stream that never started', async () => {
    const client = gw.client(key.secret);
    gw.sim.behave('native-hang', { hang: 'before-headers', times: 1 });
    const t0 = Date.now();
    const err: any = await client.responses.create({ model: 'r-hang', input: 'Hello?' }).catch((e) => e);
    expect(err.status).toBe(504);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(450);
    const rec = await receipt(err.headers?.get?.('x-tollgate-receipt-id') ?? err.headers?.['x-tollgate-receipt-id']);
    expect(rec.attempts).toMatchObject([{ provider: 'oai', model: 'native-hang', status: 0, error: 'timeout_first_byte' }]);

    gw.sim.behave('native-hang', { hang: 'after-headers', times: 1 });
    const streamErr: any = await client.responses.create({ model: 'r-hang', input: 'Hello again?', stream: true }).catch((e) => e);
    expect(streamErr.status).toBe(504);
    expect(responsesCalls()).toHaveLength(2);
  });
});
