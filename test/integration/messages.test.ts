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
  openai: { route: 'm-openai', provider: 'sim', model: 'gpt-sim', path: '/v1/chat/completions', cacheRead: 4, cacheWrite: 0, price: { in: 1, out: 2, cached: 0.5, write: null } },
  anthropic: { route: 'm-claude', provider: 'claude', model: 'claude-sim', path: '/v1/messages', cacheRead: 40, cacheWrite: 12, price: { in: 3, out: 15, cached: 0.3, write: 3.75 } },
} as const;
const ENDPOINTS: Record<Client, string> = { chat: '/v1/chat/completions', responses: '/v1/responses', messages: '/v1/messages' };

beforeAll(async () => {
  gw = await startTestGateway();
  const store = gw.started.runtime.adminStore;
  await store.providers.upsertProvider({ name: 'claude', kind: 'ANTHROPIC', baseUrl: gw.sim.origin, apiKey: 'sk-ant-upstream' });
  for (const u of Object.values(UPSTREAMS)) {
    await store.providers.upsertRoute({ name: u.route, strategy: 'PRIORITY', targets: [{ provider: u.provider, model: u.model }] });
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
        usage: { prompt: u.prompt_tokens, cached: u.prompt_tokens_details!.cached_tokens!, written: (u.prompt_tokens_details as any).cache_write_tokens ?? 0, completion: u.completion_tokens },
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
      usage: { prompt: usage.prompt_tokens, cached: usage.prompt_tokens_details.cached_tokens, written: usage.prompt_tokens_details.cache_write_tokens ?? 0, completion: usage.completion_tokens },
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
    text: message.content.map((b) => (b.type === 'text' ? b.text : '')).join(''),
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
  for (const client of ['chat', 'responses', 'messages'] as const) for (const up of ['openai', 'anthropic'] as const) for (const stream of [false, true]) cases.push([client, up, stream]);

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
