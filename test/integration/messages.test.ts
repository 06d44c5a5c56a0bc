// POST /v1/messages and the Anthropic upstream, driven by the official clients against a
// running Tollgate: every client protocol (chat completions, Responses, Messages) reaches
// both upstream kinds (OpenAI-compatible, Anthropic) through one route each, streaming and
// not, and each answer is checked field by field against what the simulator sent — text,
// tool calls, stop reasons, usage (DESIGN §6 normalisation) and the receipt's cost.
import Anthropic from '@anthropic-ai/sdk';
import type OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { estimatePromptTokens } from '../../src/gateway/usage.js';
import { parseMessagesRequest } from '../../src/protocols/messages/request.js';
import { scanPrompt } from '../../src/sim/answer.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';

let gw: TestGateway;
let key: { secret: string; id: string; teamId: string };
let openai: OpenAI;
let claude: Anthropic;

type Upstream = 'openai' | 'anthropic';
type Client = 'chat' | 'responses' | 'messages';

const TEXT = 'Hello from the simulator.';
const WORDS = 4; // the simulator answers a fixed text one word per token
const UPSTREAMS = {
  openai: {
    route: 'm-openai',
    provider: 'sim',
    model: 'gpt-sim',
    path: '/v1/chat/completions',
    cacheRead: 4,
    cacheWrite: 0,
    price: { in: 1, out: 2, cached: 0.5, write: null },
  },
  anthropic: {
    route: 'm-claude',
    provider: 'claude',
    model: 'claude-sim',
    path: '/v1/messages',
    cacheRead: 40,
    cacheWrite: 12,
    price: { in: 3, out: 15, cached: 0.3, write: 3.75 },
  },
} as const;
const ENDPOINTS: Record<Client, string> = { chat: '/v1/chat/completions', responses: '/v1/responses', messages: '/v1/messages' };

beforeAll(async () => {
  gw = await startTestGateway();
  const store = gw.started.runtime.adminStore;
  await store.providers.upsertProvider({ name: 'claude', kind: 'ANTHROPIC', baseUrl: gw.sim.origin, apiKey: 'sk-ant-upstream' });
  for (const u of Object.values(UPSTREAMS)) {
    await store.routing.upsertRoute({ name: u.route, strategy: 'PRIORITY', targets: [{ provider: u.provider, model: u.model }] });
    await store.pricing.setPrice({
      provider: u.provider,
      model: u.model,
      inputPerMTokUsd: u.price.in,
      outputPerMTokUsd: u.price.out,
      cachedInputPerMTokUsd: u.price.cached,
      cacheWritePerMTokUsd: u.price.write,
    });
    gw.sim.behave(u.model, { content: TEXT, cacheReadTokens: u.cacheRead, cacheWriteTokens: u.cacheWrite });
  }
  await gw.started.runtime.app.catalog.refresh();
  key = await gw.createKey('team-messages');
  openai = gw.client(key.secret);
  claude = new Anthropic({ baseURL: gw.url, apiKey: key.secret, maxRetries: 0 });
});
afterAll(async () => {
  await gw?.close();
});

async function receipt(id: string | null): Promise<any> {
  const res = await fetch(`${gw.baseURL}/receipts/${id}`, { headers: { authorization: `Bearer ${key.secret}` } });
  expect(res.status).toBe(200);
  return res.json();
}

/** What the simulator reported for the last upstream request, normalised (DESIGN §6). */
function upstreamUsage(up: Upstream, completion = WORDS) {
  const body = gw.sim.requests.at(-1)!.body;
  const estimate = scanPrompt(body.messages, body.tools, body.system).tokens;
  const u = UPSTREAMS[up];
  return { prompt: estimate + u.cacheRead + u.cacheWrite, cached: u.cacheRead, written: u.cacheWrite, completion };
}

function expectedCost(up: Upstream, usage: ReturnType<typeof upstreamUsage>): number {
  const p = UPSTREAMS[up].price;
  return ((usage.prompt - usage.cached - usage.written) * p.in + usage.cached * p.cached + usage.written * (p.write ?? p.in) + usage.completion * p.out) / 1e6;
}

interface Answer {
  text: string;
  stop: string | null | undefined;
  /** The usage the client saw, normalised back to prompt/cached/written/completion. */
  usage: { prompt: number; cached: number; written: number; completion: number };
  receiptId: string | null;
}

const prompt = 'Say hello to the gateway';

async function ask(client: Client, up: Upstream, stream: boolean): Promise<Answer> {
  const model = UPSTREAMS[up].route;
  if (client === 'chat') {
    if (!stream) {
      const { data, response } = await openai.chat.completions.create({ model, messages: [{ role: 'user', content: prompt }] }).withResponse();
      const u = data.usage!;
      return {
        text: data.choices[0]!.message.content!,
        stop: data.choices[0]!.finish_reason,
        usage: {
          prompt: u.prompt_tokens,
          cached: u.prompt_tokens_details!.cached_tokens!,
          written: (u.prompt_tokens_details as any).cache_write_tokens ?? 0,
          completion: u.completion_tokens,
        },
        receiptId: response.headers.get('x-tollgate-receipt-id'),
      };
    }
    const { data, response } = await openai.chat.completions
      .create({ model, stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: prompt }] })
      .withResponse();
    let text = '';
    let stop: string | null = null;
    let usage: any;
    for await (const chunk of data) {
      text += chunk.choices[0]?.delta.content ?? '';
      stop = chunk.choices[0]?.finish_reason ?? stop;
      if (chunk.usage) usage = chunk.usage;
    }
    return {
      text,
      stop,
      usage: {
        prompt: usage.prompt_tokens,
        cached: usage.prompt_tokens_details.cached_tokens,
        written: usage.prompt_tokens_details.cache_write_tokens ?? 0,
        completion: usage.completion_tokens,
      },
      receiptId: response.headers.get('x-tollgate-receipt-id'),
    };
  }
  if (client === 'responses') {
    let r: OpenAI.Responses.Response;
    let receiptId: string | null;
    if (!stream) {
      const { data, response } = await openai.responses.create({ model, input: prompt }).withResponse();
      r = data;
      receiptId = response.headers.get('x-tollgate-receipt-id');
    } else {
      const { data, response } = await openai.responses.create({ model, input: prompt, stream: true }).withResponse();
      let final: OpenAI.Responses.Response | undefined;
      let deltas = '';
      for await (const e of data) {
        if (e.type === 'response.output_text.delta') deltas += e.delta;
        if (e.type === 'response.completed') final = e.response;
      }
      r = final!;
      // Raw events carry no output_text convenience field: it is the message items' text.
      const items = r.output.flatMap((item) => (item.type === 'message' ? item.content : []));
      r.output_text = items.map((c) => (c.type === 'output_text' ? c.text : '')).join('');
      expect(deltas).toBe(r.output_text);
      receiptId = response.headers.get('x-tollgate-receipt-id');
    }
    return {
      text: r.output_text,
      stop: r.status,
      usage: { prompt: r.usage!.input_tokens, cached: r.usage!.input_tokens_details.cached_tokens, written: 0, completion: r.usage!.output_tokens },
      receiptId,
    };
  }
  const params = { model, max_tokens: 256, messages: [{ role: 'user' as const, content: prompt }] };
  const { data, response } = stream ? await claude.messages.stream(params).withResponse() : await claude.messages.create(params).withResponse();
  const message = stream ? await (data as ReturnType<typeof claude.messages.stream>).finalMessage() : (data as Anthropic.Message);
  const u = message.usage;
  return {
    text: message.content.map((b: Anthropic.ContentBlock) => (b.type === 'text' ? b.text : '')).join(''),
    stop: message.stop_reason,
    usage: {
      prompt: u.input_tokens + (u.cache_read_input_tokens ?? 0) + (u.cache_creation_input_tokens ?? 0),
      cached: u.cache_read_input_tokens ?? 0,
      written: u.cache_creation_input_tokens ?? 0,
      completion: u.output_tokens,
    },
    receiptId: response.headers.get('x-tollgate-receipt-id'),
  };
}

const STOP: Record<Client, string> = { chat: 'stop', responses: 'completed', messages: 'end_turn' };

describe('every client protocol reaches every upstream kind', () => {
  const cases: Array<[Client, Upstream, boolean]> = [];
  for (const client of ['chat', 'responses', 'messages'] as const)
    for (const up of ['openai', 'anthropic'] as const) for (const stream of [false, true]) cases.push([client, up, stream]);

  it.each(cases)('%s client → %s upstream (stream: %s)', async (client, up, stream) => {
    const answer = await ask(client, up, stream);
    const upstream = gw.sim.requests.at(-1)!;
    const u = UPSTREAMS[up];
    // The upstream got its own protocol, its own credential and the mapped model.
    expect(upstream.path).toBe(u.path);
    expect(upstream.body.model).toBe(u.model);
    if (up === 'anthropic') {
      expect(upstream.headers['x-api-key']).toBe('sk-ant-upstream');
      expect(upstream.headers['anthropic-version']).toBe('2023-06-01');
      expect(upstream.headers.authorization).toBeUndefined();
      expect(upstream.body.max_tokens).toBe(client === 'messages' ? 256 : 4096);
    } else expect(upstream.headers.authorization).toBe('Bearer sim-upstream-secret');
    expect(upstream.body.stream === true).toBe(stream);

    const usage = upstreamUsage(up);
    expect(answer.text).toBe(TEXT);
    expect(answer.stop).toBe(STOP[client]);
    // Responses reports no cache writes: its input_tokens still counts them.
    expect(answer.usage).toEqual(client === 'responses' ? { ...usage, written: 0 } : usage);

    const r = await receipt(answer.receiptId);
    expect(r).toMatchObject({
      endpoint: ENDPOINTS[client],
      status: 'ok',
      stream,
      provider: u.provider,
      model: u.model,
      route: u.route,
      team_id: key.teamId,
      prompt_tokens: usage.prompt,
      cached_tokens: usage.cached,
      completion_tokens: usage.completion,
      usage_estimated: false,
    });
    expect(r.cost_usd).toBeCloseTo(expectedCost(up, usage), 12);
  });
});

// ── Tools: a call, then its result sent back, through every client × upstream ──────────────

const WEATHER = {
  name: 'get_weather',
  description: 'Weather for a city',
  schema: { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer', minimum: 1 } }, required: ['city', 'days'] },
};
const CALL_PROMPT = 'Please call get_weather for Paris';
const RESULT = 'Sunny, 21 °C';

interface ToolRound {
  call: { id: string; name: string; args: Record<string, unknown> };
  stop: string | null | undefined;
  /** Sends the tool's result back; resolves with the final answer's text and stop reason. */
  reply(result: string): Promise<{ text: string; stop: string | null | undefined }>;
}

async function chatRound(model: string, stream: boolean): Promise<ToolRound> {
  const tools: OpenAI.Chat.ChatCompletionTool[] = [
    { type: 'function', function: { name: WEATHER.name, description: WEATHER.description, parameters: WEATHER.schema } },
  ];
  const send = async (messages: OpenAI.Chat.ChatCompletionMessageParam[]) => {
    if (!stream) {
      const c = await openai.chat.completions.create({ model, tools, messages });
      return { message: c.choices[0]!.message, stop: c.choices[0]!.finish_reason };
    }
    const s = await openai.chat.completions.create({ model, tools, messages, stream: true });
    const message: OpenAI.Chat.ChatCompletionMessage = { role: 'assistant', content: null, refusal: null };
    let stop: string | null = null;
    for await (const chunk of s) {
      const d = chunk.choices[0]?.delta;
      if (d?.content) message.content = (message.content ?? '') + d.content;
      for (const tc of d?.tool_calls ?? []) {
        const calls = (message.tool_calls ??= []);
        const call = (calls[tc.index] ??= {
          id: '',
          type: 'function',
          function: { name: '', arguments: '' },
        }) as OpenAI.Chat.ChatCompletionMessageFunctionToolCall;
        if (tc.id) call.id = tc.id;
        if (tc.function?.name) call.function.name += tc.function.name;
        if (tc.function?.arguments) call.function.arguments += tc.function.arguments;
      }
      stop = chunk.choices[0]?.finish_reason ?? stop;
    }
    return { message, stop };
  };
  const user: OpenAI.Chat.ChatCompletionMessageParam = { role: 'user', content: CALL_PROMPT };
  const first = await send([user]);
  const call = first.message.tool_calls![0] as OpenAI.Chat.ChatCompletionMessageFunctionToolCall;
  return {
    call: { id: call.id, name: call.function.name, args: JSON.parse(call.function.arguments) },
    stop: first.stop,
    async reply(result) {
      const second = await send([
        user,
        { role: 'assistant', content: null, tool_calls: first.message.tool_calls },
        { role: 'tool', tool_call_id: call.id, content: result },
      ]);
      return { text: second.message.content ?? '', stop: second.stop };
    },
  };
}

async function responsesRound(model: string, stream: boolean): Promise<ToolRound> {
  const tools: OpenAI.Responses.Tool[] = [
    { type: 'function', name: WEATHER.name, description: WEATHER.description, parameters: WEATHER.schema, strict: false },
  ];
  const send = async (input: OpenAI.Responses.ResponseInput): Promise<OpenAI.Responses.Response> => {
    if (!stream) return openai.responses.create({ model, tools, input });
    let final: OpenAI.Responses.Response | undefined;
    for await (const e of await openai.responses.create({ model, tools, input, stream: true })) if (e.type === 'response.completed') final = e.response;
    return final!;
  };
  const user: OpenAI.Responses.ResponseInputItem = { role: 'user', content: CALL_PROMPT };
  const first = await send([user]);
  const call = first.output.find((i) => i.type === 'function_call') as OpenAI.Responses.ResponseFunctionToolCall;
  return {
    call: { id: call.call_id, name: call.name, args: JSON.parse(call.arguments) },
    stop: first.status,
    async reply(result) {
      const second = await send([
        user,
        { type: 'function_call', call_id: call.call_id, name: call.name, arguments: call.arguments },
        { type: 'function_call_output', call_id: call.call_id, output: result },
      ]);
      const text = second.output
        .flatMap((i) => (i.type === 'message' ? i.content : []))
        .map((c) => (c.type === 'output_text' ? c.text : ''))
        .join('');
      return { text, stop: second.status };
    },
  };
}

async function messagesRound(model: string, stream: boolean): Promise<ToolRound> {
  const tools: Anthropic.Tool[] = [{ name: WEATHER.name, description: WEATHER.description, input_schema: WEATHER.schema as Anthropic.Tool.InputSchema }];
  const send = (messages: Anthropic.MessageParam[]) => {
    const params = { model, max_tokens: 256, tools, messages };
    return stream ? claude.messages.stream(params).finalMessage() : claude.messages.create(params);
  };
  const user: Anthropic.MessageParam = { role: 'user', content: CALL_PROMPT };
  const first = await send([user]);
  const use = first.content.find((b) => b.type === 'tool_use') as Anthropic.ToolUseBlock;
  return {
    call: { id: use.id, name: use.name, args: use.input as Record<string, unknown> },
    stop: first.stop_reason,
    async reply(result) {
      const second = await send([
        user,
        { role: 'assistant', content: first.content },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: result }] },
      ]);
      return { text: second.content.map((b) => (b.type === 'text' ? b.text : '')).join(''), stop: second.stop_reason };
    },
  };
}

const ROUNDS = { chat: chatRound, responses: responsesRound, messages: messagesRound };
const TOOL_STOP: Record<Client, string> = { chat: 'tool_calls', responses: 'completed', messages: 'tool_use' };

describe('tool calls round trip through every client × upstream', () => {
  const cases: Array<[Client, Upstream, boolean]> = [];
  for (const client of ['chat', 'responses', 'messages'] as const)
    for (const up of ['openai', 'anthropic'] as const) for (const stream of [false, true]) cases.push([client, up, stream]);

  it.each(cases)('%s client → %s upstream (stream: %s)', async (client, up, stream) => {
    const round = await ROUNDS[client](UPSTREAMS[up].route, stream);
    expect(round.stop).toBe(TOOL_STOP[client]);
    expect(round.call).toEqual({
      id: expect.stringMatching(up === 'anthropic' ? /^toolu_sim/ : /^call_sim/),
      name: 'get_weather',
      args: { city: expect.any(String), days: 1 },
    });
    const callRequest = gw.sim.requests.at(-1)!.body;
    // The tool reached the upstream in its own protocol.
    if (up === 'anthropic') expect(callRequest.tools).toEqual([{ name: WEATHER.name, description: WEATHER.description, input_schema: WEATHER.schema }]);
    else
      expect(callRequest.tools).toEqual([
        {
          type: 'function',
          function: { name: WEATHER.name, description: WEATHER.description, parameters: WEATHER.schema, ...(client === 'responses' ? { strict: false } : {}) },
        },
      ]);

    const final = await round.reply(RESULT);
    expect(final).toEqual({ text: TEXT, stop: STOP[client] });
    // The call and its result went back upstream as that protocol's history.
    const history = gw.sim.requests.at(-1)!.body.messages;
    if (up === 'anthropic') {
      expect(history.slice(-2)).toEqual([
        { role: 'assistant', content: [{ type: 'tool_use', id: round.call.id, name: 'get_weather', input: round.call.args }] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: round.call.id, content: RESULT }] },
      ]);
    } else {
      expect(history.at(-2)).toMatchObject({ role: 'assistant', tool_calls: [{ id: round.call.id, type: 'function', function: { name: 'get_weather' } }] });
      expect(JSON.parse(history.at(-2).tool_calls[0].function.arguments)).toEqual(round.call.args);
      expect(history.at(-1)).toEqual({ role: 'tool', tool_call_id: round.call.id, content: RESULT });
    }
  });
});

// ── What only the Messages client and the Anthropic upstream do ───────────────────────────

/** A raw POST to /v1/messages; the SSE text or the JSON, and the receipt id. */
async function postMessages(body: object, headers: Record<string, string> = {}) {
  const res = await fetch(`${gw.url}/v1/messages`, {
    method: 'POST',
    headers: { 'x-api-key': key.secret, 'anthropic-version': '2023-06-01', 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  return {
    status: res.status,
    text,
    json: res.headers.get('content-type') === 'application/json' ? JSON.parse(text) : null,
    receiptId: res.headers.get('x-tollgate-receipt-id'),
  };
}

describe('Messages client to an Anthropic upstream: a passthrough', () => {
  it('forwards the body as sent (model replaced, metadata reduced to user_id) and attributes from metadata', async () => {
    const body = {
      model: 'm-claude',
      max_tokens: 100,
      top_k: 5,
      thinking: { type: 'enabled', budget_tokens: 1024 },
      system: [{ type: 'text', text: 'Be brief.', cache_control: { type: 'ephemeral' } }],
      metadata: { user_id: 'user-42', feature: 'passthrough' },
      messages: [
        {
          role: 'user',
          content: [
            { type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'A memo.' } },
            { type: 'text', text: 'Summarise.' },
          ],
        },
      ],
    };
    const a = await postMessages(body);
    expect(a.status).toBe(200);
    expect(gw.sim.requests.at(-1)!.body).toEqual({ ...body, model: 'claude-sim', metadata: { user_id: 'user-42' } });
    // The upstream's own message, untouched.
    expect(a.json).toMatchObject({
      id: expect.stringMatching(/^msg_sim/),
      type: 'message',
      model: 'claude-sim',
      content: [{ type: 'text', text: TEXT }],
      stop_reason: 'end_turn',
    });
    expect(await receipt(a.receiptId)).toMatchObject({ endpoint: '/v1/messages', feature: 'passthrough', end_user: 'user-42', status: 'ok' });
  });

  it('relays the event stream unchanged, message_stop after the receipt is written, then the receipt comment', async () => {
    const a = await postMessages({ model: 'm-claude', max_tokens: 100, stream: true, messages: [{ role: 'user', content: 'hi' }] });
    const names = [...a.text.matchAll(/^event: (\w+)$/gm)].map((m) => m[1]);
    expect(names).toEqual([
      'message_start',
      'ping',
      'content_block_start',
      ...Array(WORDS).fill('content_block_delta'),
      'content_block_stop',
      'message_delta',
      'message_stop',
    ]);
    expect(a.text).toMatch(/^event: message_start\ndata: \{"type":"message_start","message":\{"id":"msg_sim/);
    expect(a.text).toMatch(
      /event: message_stop\ndata: \{"type":"message_stop"\}\n\n: tollgate-receipt \{"receipt_id":"[0-9a-f-]{36}","cost_usd":[0-9.e-]+,"status":"ok"\}\n\n$/,
    );
  });

  it('keeps the stop reason only Anthropic knows (stop_sequence); translated answers say end_turn', async () => {
    const body = { max_tokens: 100, stop_sequences: ['simulator'], messages: [{ role: 'user' as const, content: 'hi' }] };
    const native = await claude.messages.create({ ...body, model: 'm-claude' });
    expect(native).toMatchObject({ stop_reason: 'stop_sequence', stop_sequence: 'simulator', content: [{ type: 'text', text: 'Hello from the ' }] });
    const translated = await claude.messages.create({ ...body, model: 'm-openai' });
    expect(gw.sim.requests.at(-1)!.body.stop).toEqual(['simulator']);
    expect(translated).toMatchObject({ stop_reason: 'end_turn', stop_sequence: null, content: [{ type: 'text', text: 'Hello from the ' }] });
    const chat = await openai.chat.completions.create({ model: 'm-claude', stop: 'simulator', messages: [{ role: 'user', content: 'hi' }] });
    expect(gw.sim.requests.at(-1)!.body.stop_sequences).toEqual(['simulator']);
    expect(chat.choices[0]).toMatchObject({ finish_reason: 'stop', message: { content: 'Hello from the ' } });
  });

  it('maps max_tokens both ways: length ↔ max_tokens', async () => {
    for (const model of ['m-claude', 'm-openai']) {
      const m = await claude.messages.create({ model, max_tokens: 2, messages: [{ role: 'user', content: 'hi' }] });
      expect(m).toMatchObject({ stop_reason: 'max_tokens', content: [{ type: 'text', text: 'Hello from' }], usage: { output_tokens: 2 } });
    }
    const chat = await openai.chat.completions.create({ model: 'm-claude', max_tokens: 2, messages: [{ role: 'user', content: 'hi' }] });
    expect(gw.sim.requests.at(-1)!.body.max_tokens).toBe(2);
    expect(chat.choices[0]!.finish_reason).toBe('length');
  });
});

describe('what an OpenAI-compatible upstream cannot do is refused, naming the field', () => {
  it.each([
    ['extended thinking', { thinking: { type: 'enabled', budget_tokens: 1024 } }, 'thinking'],
    ['top_k', { top_k: 5 }, 'top_k'],
    ['a server tool', { tools: [{ type: 'web_search_20250305', name: 'web_search' }] }, 'tools[0].type'],
    [
      'a document block',
      { messages: [{ role: 'user', content: [{ type: 'document', source: { type: 'url', url: 'https://example.com/a.pdf' } }] }] },
      'messages[0].content[0].type',
    ],
    [
      'a prefilled answer',
      {
        messages: [
          { role: 'user', content: 'hi' },
          { role: 'assistant', content: 'Sure:' },
        ],
      },
      'messages[1]',
    ],
  ])('%s', async (_what, extra, field) => {
    const before = gw.sim.requests.length;
    const a = await postMessages({ model: 'm-openai', max_tokens: 100, messages: [{ role: 'user', content: 'hi' }], ...extra });
    expect(a.status).toBe(400);
    expect(a.json).toEqual({
      type: 'error',
      error: { type: 'invalid_request_error', message: expect.stringContaining("The route 'm-openai' cannot serve this request") },
    });
    expect(a.json.error.message).toContain('Anthropic Messages API');
    expect(a.json.error.message.startsWith(`${field}: `)).toBe(true);
    expect(gw.sim.requests.length).toBe(before);
    expect(await receipt(a.receiptId)).toMatchObject({ status: 'rejected', http_status: 400 });
    // …while the Anthropic route takes it as it is.
    const b = await postMessages({ model: 'm-claude', max_tokens: 100, messages: [{ role: 'user', content: 'hi' }], ...extra });
    expect(b.status).toBe(200);
  });
});

describe('count_tokens', () => {
  const body = {
    model: 'm-openai',
    system: 'You are terse.',
    tools: [{ name: WEATHER.name, description: WEATHER.description, input_schema: WEATHER.schema as Anthropic.Tool.InputSchema }],
    messages: [{ role: 'user' as const, content: 'How many tokens is this question, roughly?' }],
  };

  it('counts with the gateway tokenizer, without an upstream call or a receipt', async () => {
    await gw.started.runtime.journal.flush();
    const receiptsBefore = await receiptCount(key.teamId);
    const upstreamBefore = gw.sim.requests.length;
    const counted = await claude.messages.countTokens(body);
    expect(counted).toEqual({ input_tokens: await estimatePromptTokens(parseMessagesRequest(body, true).chat) });
    const longer = await claude.messages.countTokens({
      ...body,
      messages: [...body.messages, { role: 'assistant', content: 'About ten.' }, { role: 'user', content: 'And now?' }],
    });
    expect(longer.input_tokens).toBeGreaterThan(counted.input_tokens);
    expect(gw.sim.requests.length).toBe(upstreamBefore);
    await gw.started.runtime.journal.flush();
    expect(await receiptCount(key.teamId)).toBe(receiptsBefore);
  });

  it('answers errors in Anthropic shape: bad key, unknown model, bad body', async () => {
    const bad = await new Anthropic({ baseURL: gw.url, apiKey: 'tg-wrong', maxRetries: 0 }).messages.countTokens(body).catch((e) => e);
    expect(bad).toBeInstanceOf(Anthropic.AuthenticationError);
    expect(bad.error).toEqual({ type: 'error', error: { type: 'authentication_error', message: expect.any(String) } });
    const unknown = await claude.messages.countTokens({ ...body, model: 'no-such-route' }).catch((e) => e);
    expect(unknown).toBeInstanceOf(Anthropic.NotFoundError);
    const invalid = await claude.messages.countTokens({ ...body, messages: [{ role: 'user', content: [{ type: 'bogus' }] }] } as any).catch((e) => e);
    expect(invalid).toBeInstanceOf(Anthropic.BadRequestError);
    expect(invalid.error.error.message).toMatch(/^messages\[0\]\.content\[0\]\.type: Content blocks of type 'bogus' are not supported/);
  });

  it("is held to the key's RPM, in a window of its own (messages keep theirs)", async () => {
    const limited = await gw.createKey('team-count-limit', { rpmLimit: 2 });
    const counter = new Anthropic({ baseURL: gw.url, apiKey: limited.secret, maxRetries: 0 });
    for (let i = 0; i < 2; i++) await counter.messages.countTokens(body);
    const refused = await counter.messages.countTokens(body).catch((e) => e);
    expect(refused).toBeInstanceOf(Anthropic.RateLimitError);
    expect(refused.error).toEqual({ type: 'error', error: { type: 'rate_limit_error', message: expect.stringMatching(/2 requests per minute/) } });
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    // The key's messages still have their own two a minute.
    expect((await counter.messages.create({ model: 'm-openai', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] })).type).toBe('message');
  });
});

async function receiptCount(teamId: string): Promise<number> {
  const rs = await gw.started.runtime.clickhouse.client.query({
    query: 'SELECT count() AS n FROM receipts WHERE team_id = {team:String}',
    query_params: { team: teamId },
    format: 'JSONEachRow',
  });
  const [row] = await rs.json<{ n: string | number }>();
  return Number(row!.n);
}

describe('cache: one canonical answer serves every protocol', () => {
  it('a Messages request is answered from the cache as a message, JSON and streamed', async () => {
    const store = gw.started.runtime.adminStore;
    await store.routing.upsertRoute({
      name: 'm-cached',
      strategy: 'PRIORITY',
      targets: [{ provider: 'claude', model: 'claude-sim' }],
      cache: { mode: 'EXACT', cacheSampled: true } as any,
    });
    await gw.started.runtime.app.catalog.refresh();
    const params = { model: 'm-cached', max_tokens: 100, messages: [{ role: 'user' as const, content: 'cache me' }] };
    const first = await claude.messages.create(params).withResponse();
    expect(first.response.headers.get('x-tollgate-cache')).toBe('miss');
    const upstreamCalls = gw.sim.requests.length;
    const hit = await claude.messages.create(params).withResponse();
    expect(hit.response.headers.get('x-tollgate-cache')).toBe('exact');
    expect(hit.data).toMatchObject({ type: 'message', content: [{ type: 'text', text: TEXT }], stop_reason: 'end_turn', usage: first.data.usage });
    expect(hit.data.id).toMatch(/^msg_[0-9a-f]{32}$/);
    const streamed = await claude.messages.stream({ ...params, stream: true } as any).withResponse();
    expect(streamed.response.headers.get('x-tollgate-cache')).toBe('exact');
    const message = await streamed.data.finalMessage();
    expect(message).toMatchObject({ content: [{ type: 'text', text: TEXT }], stop_reason: 'end_turn', usage: first.data.usage });
    expect(gw.sim.requests.length).toBe(upstreamCalls);
    expect(await receipt(hit.response.headers.get('x-tollgate-receipt-id'))).toMatchObject({ endpoint: '/v1/messages', cache_status: 'exact', cost_usd: 0 });
  });
});
