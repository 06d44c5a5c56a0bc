// POST /v1/messages on the shared pipeline, through the official @anthropic-ai/sdk: budgets
// (an Anthropic-shaped 429 with a receipt), live routing decisions on the GraphQL
// subscription, and the semantic cache answering a reworded question as a message — to an
// Anthropic upstream and to an OpenAI-compatible one; and the presets the environment creates
// (ZHIPU_API_KEY, QWEN_API_KEY over DASHSCOPE_API_KEY), reached by a Messages client.
import Anthropic from '@anthropic-ai/sdk';
import { type Client, createClient } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { bootstrap } from '../../src/bootstrap.js';
import { loadConfig } from '../../src/config.js';
import type { RoutingDecision } from '../../src/live/events.js';
import { PRICE_SNAPSHOT } from '../../src/pricing/snapshot.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { storedReceipts } from '../support/receipts.js';

let gw: TestGateway;
let key: { secret: string; id: string; teamId: string };
let claude: Anthropic;
const wsClients: Client[] = [];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(cond: () => boolean, timeoutMs = 5_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

const upstreamCalls = (model: string) => gw.sim.requests.filter((r) => r.body?.model === model).length;

async function receipt(id: string | null, secret = key.secret): Promise<any> {
  const res = await fetch(`${gw.baseURL}/receipts/${id}`, { headers: { authorization: `Bearer ${secret}` } });
  expect(res.status).toBe(200);
  return res.json();
}

async function ask(model: string, content: string, client = claude) {
  const { data, response } = await client.messages
    // temperature 0 makes the answer cacheable; this SDK version's types leave the field out.
    .create({ model, max_tokens: 64, temperature: 0, messages: [{ role: 'user', content }] } as Anthropic.MessageCreateParamsNonStreaming)
    .withResponse();
  return {
    message: data,
    cache: response.headers.get('x-tollgate-cache'),
    similarity: response.headers.get('x-tollgate-cache-similarity'),
    receiptId: response.headers.get('x-tollgate-receipt-id'),
    requestId: response.headers.get('x-request-id'),
  };
}

beforeAll(async () => {
  gw = await startTestGateway({ env: { TOLLGATE_FIRST_BYTE_TIMEOUT_MS: '1500', TOLLGATE_ANSWER_TIMEOUT_MS: '1500' } });
  const store = gw.started.runtime.adminStore;
  await store.providers.upsertProvider({ name: 'claude', kind: 'ANTHROPIC', baseUrl: gw.sim.origin, apiKey: 'sk-ant-upstream' });
  await store.routing.upsertRoute({ name: 'mp-claude', strategy: 'PRIORITY', retries: 0, targets: [{ provider: 'claude', model: 'claude-plain' }] });
  await store.routing.upsertRoute({
    name: 'mp-sem-claude',
    strategy: 'PRIORITY',
    targets: [{ provider: 'claude', model: 'claude-sem' }],
    cache: { mode: 'SEMANTIC', ttlSeconds: 600 } as any,
  });
  await store.routing.upsertRoute({
    name: 'mp-sem-openai',
    strategy: 'PRIORITY',
    targets: [{ provider: 'sim', model: 'gpt-sem' }],
    cache: { mode: 'SEMANTIC', ttlSeconds: 600 } as any,
  });
  await store.routing.upsertRoute({ name: 'mp-budget', strategy: 'PRIORITY', targets: [{ provider: 'claude', model: 'claude-budget' }] });
  await store.pricing.setPrice({ provider: 'claude', model: 'claude-sem', inputPerMTokUsd: 3, outputPerMTokUsd: 15 });
  await store.pricing.setPrice({ provider: 'claude', model: 'claude-budget', inputPerMTokUsd: 1000, outputPerMTokUsd: 1000 });
  await gw.started.runtime.app.catalog.refresh();
  key = await gw.createKey('team-msg-pipeline');
  claude = new Anthropic({ baseURL: gw.url, apiKey: key.secret, maxRetries: 0 });
}, 120_000);
afterAll(async () => {
  await Promise.all(wsClients.map((c) => c.dispose()));
  await gw?.close();
});

describe('an empty answer streamed from a chat upstream', () => {
  it('ends as a complete message (its finish writes nothing until the stream closes), not a failover', async () => {
    await gw.started.runtime.adminStore.routing.upsertRoute({ name: 'mp-empty', strategy: 'PRIORITY', targets: [{ provider: 'sim', model: 'gpt-empty' }] });
    await gw.started.runtime.app.catalog.refresh();
    gw.sim.behave('gpt-empty', { completionTokens: 0, finishReason: 'length', times: 1 });
    const stream = claude.messages.stream({ model: 'mp-empty', max_tokens: 16, messages: [{ role: 'user', content: 'think only' }] });
    const message = await stream.finalMessage();
    expect(message.stop_reason).toBe('max_tokens');
    expect(message.content).toEqual([]);
    const rec = await receipt((await stream.withResponse()).response.headers.get('x-tollgate-receipt-id'));
    expect(rec).toMatchObject({ status: 'ok', model: 'gpt-empty' });
    expect(rec.attempts).toHaveLength(1);
  });
});

describe('budgets on /v1/messages', () => {
  it('an exhausted budget is a 429 in Anthropic shape (rate_limit_error) with a receipt; the SDK raises RateLimitError; nothing goes upstream', async () => {
    const team = await gw.createKey('team-msg-budget');
    await gw.started.runtime.adminStore.pricing.setBudget({ scope: 'TEAM', teamId: team.teamId, period: 'DAY', limitUsd: 0.000001, action: 'BLOCK' });
    await gw.started.runtime.app.catalog.refresh();
    const body = { model: 'mp-budget', max_tokens: 16, messages: [{ role: 'user', content: 'over budget' }] };

    const raw = await fetch(`${gw.url}/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': team.secret, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    expect(raw.status).toBe(429);
    expect(await raw.json()).toEqual({ type: 'error', error: { type: 'rate_limit_error', message: expect.stringMatching(/budget is exhausted/) } });
    const rec = await receipt(raw.headers.get('x-tollgate-receipt-id'), team.secret);
    expect(rec).toMatchObject({ endpoint: '/v1/messages', status: 'rejected', http_status: 429, error_code: 'budget_exceeded', cost_usd: null });

    const client = new Anthropic({ baseURL: gw.url, apiKey: team.secret, maxRetries: 0 });
    const err: any = await client.messages.create(body as any).catch((e) => e);
    expect(err).toBeInstanceOf(Anthropic.RateLimitError);
    expect(err.status).toBe(429);
    expect(err.error).toEqual({ type: 'error', error: { type: 'rate_limit_error', message: expect.stringMatching(/budget is exhausted/) } });
    // The streaming form is refused the same way, before any event.
    const streamErr: any = await client.messages
      .stream(body as any)
      .finalMessage()
      .catch((e) => e);
    expect(streamErr).toBeInstanceOf(Anthropic.RateLimitError);
    expect(upstreamCalls('claude-budget')).toBe(0);
    const stored = await storedReceipts(gw, team.teamId);
    expect(stored.map((r) => [r.endpoint, r.error_code])).toEqual(Array(3).fill(['/v1/messages', 'budget_exceeded']));
  });
});

describe('live routing decisions for a Messages request', () => {
  it('an answered request and a budget refusal arrive on the routingDecisions subscription', async () => {
    const client = createClient({
      url: `${gw.url.replace(/^http/, 'ws')}/graphql`,
      webSocketImpl: WebSocket,
      connectionParams: { authorization: `Bearer ${gw.adminToken}` },
      retryAttempts: 0,
    });
    wsClients.push(client);
    const bus = gw.started.runtime.app.bus;
    const before = bus.subscriberCount;
    const events: RoutingDecision[] = [];
    const errors: unknown[] = [];
    const stop = client.subscribe<{ routingDecisions: RoutingDecision }>(
      {
        query:
          'subscription($f: DecisionFilter) { routingDecisions(filter: $f) { requestId receiptId teamId apiKeyId requestedModel route provider model attempt outcome reason } }',
        variables: { f: { routes: ['mp-claude', 'mp-budget'] } },
      },
      { next: (r) => (r.data ? events.push(r.data.routingDecisions) : errors.push(r.errors)), error: (e) => errors.push(e), complete: () => undefined },
    );
    await until(() => bus.subscriberCount > before || errors.length > 0, 5_000, 'subscription to open');

    const answered = await ask('mp-claude', 'Decide for me.');
    const blockedTeam = await gw.createKey('team-msg-budget-live');
    await gw.started.runtime.adminStore.pricing.setBudget({ scope: 'TEAM', teamId: blockedTeam.teamId, period: 'DAY', limitUsd: 0.000001, action: 'BLOCK' });
    await gw.started.runtime.app.catalog.refresh();
    const blocked: any = await new Anthropic({ baseURL: gw.url, apiKey: blockedTeam.secret, maxRetries: 0 }).messages
      .create({ model: 'mp-budget', max_tokens: 16, messages: [{ role: 'user', content: 'no' }] })
      .catch((e) => e);
    expect(blocked).toBeInstanceOf(Anthropic.RateLimitError);
    const blockedRequestId = blocked.headers.get('x-request-id');
    await until(() => events.some((e) => e.requestId === blockedRequestId), 5_000, 'the refusal decision');
    stop();
    expect(errors).toEqual([]);

    const mine = events.filter((e) => e.requestId === answered.requestId);
    expect(mine.map((e) => e.outcome)).toEqual(['ATTEMPT', 'SUCCESS']);
    for (const e of mine) {
      expect(e).toMatchObject({
        receiptId: answered.receiptId,
        teamId: key.teamId,
        apiKeyId: key.id,
        requestedModel: 'mp-claude',
        route: 'mp-claude',
        provider: 'claude',
        model: 'claude-plain',
        attempt: 1,
      });
    }
    expect(events.filter((e) => e.requestId === blockedRequestId)).toEqual([
      expect.objectContaining({
        outcome: 'REJECTED',
        reason: 'budget_exceeded',
        teamId: blockedTeam.teamId,
        receiptId: blocked.headers.get('x-tollgate-receipt-id'),
      }),
    ]);
    expect(await receipt(answered.receiptId)).toMatchObject({ endpoint: '/v1/messages', route: 'mp-claude', provider: 'claude' });
  });
});

describe('429 semantics on /v1/messages (DESIGN §4)', () => {
  async function twoTargets(name: string, a: string, b: string) {
    await gw.started.runtime.adminStore.routing.upsertRoute({
      name,
      strategy: 'PRIORITY',
      retries: 0,
      targets: [
        { provider: 'claude', model: a, priority: 0 },
        { provider: 'sim', model: b, priority: 1 },
      ],
    });
    await gw.started.runtime.app.catalog.refresh();
  }
  const send = (model: string) => claude.messages.create({ model, max_tokens: 16, messages: [{ role: 'user', content: 'x' }] }).catch((e) => e as any);

  it('one target 429, the last timing out: 504 api_error in Anthropic shape, no Retry-After, and a receipt', async () => {
    await twoTargets('mp-429-timeout', 'mt-a', 'mt-b');
    gw.sim.behave('mt-a', { status: 429, retryAfterSeconds: 5 });
    gw.sim.behave('mt-b', { hang: 'before-headers' });
    const err = await send('mp-429-timeout');
    expect(err).toBeInstanceOf(Anthropic.APIError);
    expect(err.status).toBe(504);
    expect(err.error).toEqual({ type: 'error', error: { type: 'api_error', message: expect.any(String) } });
    expect(err.headers.get('retry-after')).toBeNull();
    expect(upstreamCalls('mt-a') + upstreamCalls('mt-b')).toBe(2);
    expect(await receipt(err.headers.get('x-tollgate-receipt-id'))).toMatchObject({
      endpoint: '/v1/messages',
      status: 'error',
      http_status: 504,
      error_code: 'upstream_error',
    });
  });

  it('every target 429 (an Anthropic and an OpenAI-compatible one): 429 rate_limit_error with the smallest Retry-After; then they sit out', async () => {
    await twoTargets('mp-429-all', 'mt-c', 'mt-d');
    gw.sim.behave('mt-c', { status: 429, retryAfterSeconds: 8 });
    gw.sim.behave('mt-d', { status: 429, retryAfterSeconds: 3 });
    const err = await send('mp-429-all');
    expect(err).toBeInstanceOf(Anthropic.RateLimitError);
    expect(err.error).toEqual({ type: 'error', error: { type: 'rate_limit_error', message: expect.stringContaining('rate limited') } });
    expect(err.headers.get('retry-after')).toBe('3');
    const calls = upstreamCalls('mt-c') + upstreamCalls('mt-d');
    const again = await send('mp-429-all');
    expect(again).toBeInstanceOf(Anthropic.RateLimitError);
    expect(Number(again.headers.get('retry-after'))).toBeLessThanOrEqual(3);
    expect(upstreamCalls('mt-c') + upstreamCalls('mt-d')).toBe(calls);
  });
});

describe('semantic cache on /v1/messages', () => {
  for (const [upstream, route, model] of [
    ['an Anthropic', 'mp-sem-claude', 'claude-sem'],
    ['an OpenAI-compatible', 'mp-sem-openai', 'gpt-sem'],
  ] as const) {
    it(`a reworded question is answered from the cache as a message (${upstream} upstream), no upstream call, receipt semantic`, async () => {
      const first = await ask(route, 'What is the capital of France?');
      const calls = upstreamCalls(model);
      expect(calls).toBe(1);
      const reworded = await ask(route, 'hey, could you tell me what the capital of france is');
      expect([first.cache, reworded.cache]).toEqual(['miss', 'semantic']);
      expect(upstreamCalls(model)).toBe(calls);
      expect(Number(reworded.similarity)).toBeGreaterThan(0.9);
      expect(reworded.message).toMatchObject({
        type: 'message',
        role: 'assistant',
        content: first.message.content,
        stop_reason: first.message.stop_reason,
        usage: first.message.usage,
      });
      expect(reworded.message.id).toMatch(/^msg_[0-9a-f]{32}$/);
      expect(reworded.message.id).not.toBe(first.message.id);
      const rec = await receipt(reworded.receiptId);
      expect(rec).toMatchObject({ endpoint: '/v1/messages', cache_status: 'semantic', cost_usd: 0, model });
      expect(rec.cache_similarity).toBeGreaterThan(0.9);

      // Streamed, the hit replays as Anthropic's events and the SDK assembles the same message.
      const stream = claude.messages.stream({
        model: route,
        max_tokens: 64,
        temperature: 0,
        messages: [{ role: 'user', content: 'could you tell me the capital of France?' }],
      });
      const final = await stream.finalMessage();
      expect(stream.response!.headers.get('x-tollgate-cache')).toBe('semantic');
      expect(final.content).toEqual(first.message.content);
      expect(upstreamCalls(model)).toBe(calls);

      expect((await ask(route, 'What is the capital of Spain?')).cache).toBe('miss');
    });
  }
});

describe('cache on /v1/messages: what only Anthropic reads is part of the question', () => {
  it('requests that differ only in a document block, extended thinking or top_k are never answered from one another', async () => {
    const store = gw.started.runtime.adminStore;
    await store.routing.upsertRoute({
      name: 'mp-exact-claude',
      strategy: 'PRIORITY',
      targets: [{ provider: 'claude', model: 'claude-exact' }],
      cache: { mode: 'EXACT', cacheSampled: true } as any,
    });
    await store.routing.upsertRoute({
      name: 'mp-sem-native',
      strategy: 'PRIORITY',
      targets: [{ provider: 'claude', model: 'claude-sem-native' }],
      cache: { mode: 'SEMANTIC', cacheSampled: true } as any,
    });
    await gw.started.runtime.app.catalog.refresh();
    const doc = (text: string) => ({ type: 'document', source: { type: 'text', media_type: 'text/plain', data: text } });
    const question = { type: 'text', text: 'What does the document say the code is?' };
    const call = async (model: string, extra: Record<string, unknown>, content: unknown[]) => {
      const { response } = await claude.messages.create({ model, max_tokens: 2048, messages: [{ role: 'user', content }], ...extra } as any).withResponse();
      return response.headers.get('x-tollgate-cache');
    };
    for (const [route, model] of [
      ['mp-exact-claude', 'claude-exact'],
      ['mp-sem-native', 'claude-sem-native'],
    ] as const) {
      const before = upstreamCalls(model);
      // Each native-only request goes upstream and is not kept: the cache says bypass.
      const a = await call(route, {}, [doc('The code is 1111.'), question]);
      const b = await call(route, {}, [doc('The code is 2222.'), question]);
      const again = await call(route, {}, [doc('The code is 1111.'), question]);
      const thinking = await call(route, { thinking: { type: 'enabled', budget_tokens: 1024 } }, [question]);
      const topK = await call(route, { top_k: 5 }, [question]);
      expect({ a, b, again, thinking, topK }, route).toEqual({ a: 'bypass', b: 'bypass', again: 'bypass', thinking: 'bypass', topK: 'bypass' });
      // The plain question was never stored by them.
      expect(await call(route, {}, [question]), route).toBe('miss');
      expect(upstreamCalls(model) - before).toBe(6);
    }
    // A plain question on the same route still caches.
    expect(await call('mp-exact-claude', {}, [{ type: 'text', text: 'Plain and cacheable.' }])).toBe('miss');
    expect(await call('mp-exact-claude', {}, [{ type: 'text', text: 'Plain and cacheable.' }])).toBe('exact');
  });
});

describe('beta features on /v1/messages', () => {
  it('a beta request passed through to an Anthropic upstream keeps its anthropic-beta header; one translated does not send it', async () => {
    const betas = ['context-management-2025-06-27', 'interleaved-thinking-2025-05-14'];
    const create = (model: string) =>
      claude.beta.messages.create({ model, max_tokens: 32, betas, messages: [{ role: 'user', content: 'beta please' }] } as any);
    await create('mp-claude');
    const passed = gw.sim.requests.at(-1)!;
    expect(passed.path).toBe('/v1/messages');
    expect(passed.headers['anthropic-beta']).toBe(betas.join(','));
    expect(passed.headers['anthropic-version']).toBe('2023-06-01'); // the provider's own
    await create('chat-default');
    const translated = gw.sim.requests.at(-1)!;
    expect(translated.path).toBe('/v1/chat/completions');
    expect(translated.headers['anthropic-beta']).toBeUndefined();
  });
});

describe('presets from the environment (DESIGN §5 Providers)', () => {
  /** What a start with these variables does: loadConfig reads them, bootstrap creates the presets. */
  async function startWith(env: Record<string, string>) {
    const config = loadConfig({ TOLLGATE_DATA_DIR: gw.dataDir, ...env });
    const done = await bootstrap(config, gw.started.runtime.adminStore);
    await gw.started.runtime.app.catalog.refresh();
    return { config, done };
  }
  const provider = (name: string) => gw.started.runtime.app.catalog.catalog.providers.get(name);

  it('QWEN_API_KEY wins over DASHSCOPE_API_KEY; DASHSCOPE_API_KEY alone is the Qwen key', () => {
    expect(loadConfig({ QWEN_API_KEY: 'sk-qwen', DASHSCOPE_API_KEY: 'sk-dash' }).presetKeys.qwen).toBe('sk-qwen');
    expect(loadConfig({ DASHSCOPE_API_KEY: 'sk-dash' }).presetKeys.qwen).toBe('sk-dash');
    expect(loadConfig({}).presetKeys.qwen).toBeUndefined();
    expect(loadConfig({ ZHIPU_API_KEY: 'sk-zhipu' }).presetKeys.zhipu).toBe('sk-zhipu');
  });

  it('ZHIPU_API_KEY and QWEN_API_KEY (beside DASHSCOPE_API_KEY) create zhipu and qwen with their base URLs, Bearer keys and snapshot prices', async () => {
    const { done } = await startWith({ ZHIPU_API_KEY: 'sk-zhipu-test', QWEN_API_KEY: 'sk-qwen-test', DASHSCOPE_API_KEY: 'sk-dashscope-ignored' });
    expect(done).toEqual(expect.arrayContaining(['provider qwen (from environment)', 'provider zhipu (from environment)']));
    expect(done.some((d) => d.includes('prices for') && d.includes('qwen') && d.includes('zhipu'))).toBe(true);
    expect(provider('zhipu')).toMatchObject({
      kind: 'ZHIPU',
      origin: 'https://open.bigmodel.cn',
      basePath: '/api/paas/v4',
      headers: { authorization: 'Bearer sk-zhipu-test' },
    });
    expect(provider('qwen')).toMatchObject({
      kind: 'QWEN',
      origin: 'https://dashscope.aliyuncs.com',
      basePath: '/compatible-mode/v1',
      headers: { authorization: 'Bearer sk-qwen-test' },
    });
    expect(JSON.stringify(provider('qwen'))).not.toContain('sk-dashscope-ignored');

    const prices = await gw.started.runtime.adminStore.pricing.currentPrices();
    const kindCount = (kind: string) => PRICE_SNAPSHOT.entries.filter((e) => e.kind === kind).length;
    expect(kindCount('ZHIPU')).toBeGreaterThan(0);
    expect(prices.filter((p) => p.provider === 'zhipu')).toHaveLength(kindCount('ZHIPU'));
    expect(prices.filter((p) => p.provider === 'qwen')).toHaveLength(kindCount('QWEN'));
    expect(prices.find((p) => p.provider === 'zhipu' && p.model === 'glm-4.5')!.source).toContain(PRICE_SNAPSHOT.asOf);
  });

  it('a Messages client reaches the zhipu preset (pointed at the simulator) with its key, billed at the snapshot price', async () => {
    // Same preset, its base URL moved to the simulator (which takes its key again): the prices stay.
    await gw.started.runtime.adminStore.providers.upsertProvider({ name: 'zhipu', kind: 'ZHIPU', baseUrl: gw.sim.url, apiKey: 'sk-zhipu-test' });
    await gw.started.runtime.app.catalog.refresh();
    const { data, response } = await claude.messages
      .create({ model: 'zhipu/glm-4.5', max_tokens: 32, messages: [{ role: 'user', content: 'Hello GLM.' }] })
      .withResponse();
    expect(data).toMatchObject({ type: 'message', role: 'assistant', stop_reason: 'end_turn' });
    const sent = gw.sim.requests.at(-1)!;
    expect(sent.path).toBe('/v1/chat/completions');
    expect(sent.headers.authorization).toBe('Bearer sk-zhipu-test');
    expect(sent.body.model).toBe('glm-4.5');
    const price = (await gw.started.runtime.adminStore.pricing.currentPrices()).find((p) => p.provider === 'zhipu' && p.model === 'glm-4.5')!;
    const rec = await receipt(response.headers.get('x-tollgate-receipt-id'));
    expect(rec).toMatchObject({
      endpoint: '/v1/messages',
      provider: 'zhipu',
      model: 'glm-4.5',
      price_version: price.version,
      prompt_tokens: data.usage.input_tokens,
      completion_tokens: data.usage.output_tokens,
    });
    expect(rec.cost_usd).toBeCloseTo((data.usage.input_tokens * price.inputPerMTokUsd + data.usage.output_tokens * price.outputPerMTokUsd) / 1e6, 12);
    expect(rec.cost_usd).toBeGreaterThan(0);
  });
});
