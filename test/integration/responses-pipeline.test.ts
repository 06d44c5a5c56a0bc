// POST /v1/responses on the shared pipeline, through the official openai client: what the
// chat path does applies here too — exact and semantic cache (an answer from the cache is
// still a Responses object), budgets (OpenAI-shaped 429 with a receipt), live routing
// decisions on the GraphQL subscription, broken and truncated streams, stored responses
// (retention, team scope, no receipts), the 429 rule (DESIGN §4), and the AI SDK on `.chat`.
import { createOpenAI } from '@ai-sdk/openai';
import { generateObject, generateText, jsonSchema, tool } from 'ai';
import { createClient, type Client } from 'graphql-ws';
import OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { RoutingDecision } from '../../src/live/events.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { storedReceipts } from '../support/receipts.js';

let gw: TestGateway;
let key: { secret: string; id: string; teamId: string };
const wsClients: Client[] = [];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(cond: () => boolean, timeoutMs = 5_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

async function route(name: string, model: string, extra: Record<string, unknown> = {}) {
  await gw.started.runtime.adminStore.routing.upsertRoute({ name, strategy: 'PRIORITY', retries: 0, targets: [{ provider: 'sim', model }], ...extra } as any);
  await gw.started.runtime.app.catalog.refresh();
}

const upstreamCalls = (model: string) => gw.sim.requests.filter((r) => r.body?.model === model).length;

async function receipt(id: string | null, secret = key.secret): Promise<any> {
  const res = await fetch(`${gw.baseURL}/receipts/${id}`, { headers: { authorization: `Bearer ${secret}` } });
  expect(res.status).toBe(200);
  return res.json();
}

/** One Responses call: the response object and the gateway's headers. */
async function create(body: Record<string, unknown>, secret = key.secret) {
  const { data, response } = await gw.client(secret).responses.create({ temperature: 0, ...body } as any).withResponse();
  return {
    r: data as OpenAI.Responses.Response,
    cache: response.headers.get('x-tollgate-cache'),
    similarity: response.headers.get('x-tollgate-cache-similarity'),
    receiptId: response.headers.get('x-tollgate-receipt-id'),
    requestId: response.headers.get('x-request-id'),
  };
}

/** An output item without its per-response ids, to compare two answers' shapes. */
const withoutIds = (output: unknown[]) => JSON.parse(JSON.stringify(output, (k, v) => (k === 'id' ? undefined : v)));

beforeAll(async () => {
  gw = await startTestGateway();
  key = await gw.createKey('team-resp-pipeline');
  await route('r-exact', 'rp-exact', { cache: { mode: 'EXACT', ttlSeconds: 600 } });
  await route('r-sem', 'rp-sem', { cache: { mode: 'SEMANTIC', ttlSeconds: 600 } });
  await gw.started.runtime.adminStore.pricing.setPrice({ provider: 'sim', model: 'rp-exact', inputPerMTokUsd: 2, outputPerMTokUsd: 8 });
  await gw.started.runtime.app.catalog.refresh();
}, 120_000);
afterAll(async () => {
  await Promise.all(wsClients.map((c) => c.dispose()));
  await gw?.close();
});
beforeEach(() => gw.sim.reset());

describe('cache on /v1/responses', () => {
  it('exact hit: the repeat is answered from the cache as a Responses object, no upstream call, a receipt that says exact', async () => {
    const input = 'What is a monad, in one line?';
    const first = await create({ model: 'r-exact', instructions: 'Be brief.', input });
    const calls = upstreamCalls('rp-exact');
    expect(calls).toBe(1);
    const second = await create({ model: 'r-exact', instructions: 'Be brief.', input });
    expect([first.cache, second.cache]).toEqual(['miss', 'exact']);
    expect(upstreamCalls('rp-exact')).toBe(calls);

    // The same answer in the same shape, under its own id.
    expect(second.r.object).toBe('response');
    expect(second.r.id).toMatch(/^resp_[0-9a-f]{32}$/);
    expect(second.r.id).not.toBe(first.r.id);
    expect(second.r.status).toBe('completed');
    expect(second.r.output_text).toBe(first.r.output_text);
    expect(second.r.output[0]).toMatchObject({ type: 'message', role: 'assistant', status: 'completed', content: [{ type: 'output_text', annotations: [] }] });
    expect(withoutIds(second.r.output)).toEqual(withoutIds(first.r.output));
    expect(second.r.usage).toEqual(first.r.usage);
    expect(second.r.instructions).toBe('Be brief.');

    const [missReceipt, hitReceipt] = [await receipt(first.receiptId), await receipt(second.receiptId)];
    expect(missReceipt).toMatchObject({ endpoint: '/v1/responses', cache_status: 'miss', status: 'ok' });
    expect(missReceipt.cost_usd).toBeGreaterThan(0);
    expect(hitReceipt).toMatchObject({ endpoint: '/v1/responses', cache_status: 'exact', status: 'ok', cost_usd: 0, provider: 'sim', model: 'rp-exact' });
    expect(hitReceipt.saved_cost_usd).toBeCloseTo(missReceipt.cost_usd, 12);
  });

  it('exact hit on a streamed request: the typed events replay the cached answer, and responses.stream parses it', async () => {
    const input = 'Stream something cacheable.';
    const first = await create({ model: 'r-exact', input });
    const calls = upstreamCalls('rp-exact');
    const stream = gw.client(key.secret).responses.stream({ model: 'r-exact', input, temperature: 0 });
    const types: string[] = [];
    for await (const e of stream) types.push(e.type);
    const final = await stream.finalResponse();
    expect(upstreamCalls('rp-exact')).toBe(calls);
    expect(types[0]).toBe('response.created');
    expect(types.at(-1)).toBe('response.completed');
    expect(final.output_text).toBe(first.r.output_text);
    expect(final.id).not.toBe(first.r.id);
    expect(final.usage).toMatchObject({ output_tokens: first.r.usage!.output_tokens, input_tokens: first.r.usage!.input_tokens });
  });

  it('semantic hit: a reworded question is answered from the cache, with its similarity, as a Responses object', async () => {
    const first = await create({ model: 'r-sem', input: 'What is the capital of France?' });
    const calls = upstreamCalls('rp-sem');
    const reworded = await create({ model: 'r-sem', input: 'hey, could you tell me what the capital of france is' });
    expect([first.cache, reworded.cache]).toEqual(['miss', 'semantic']);
    expect(upstreamCalls('rp-sem')).toBe(calls);
    expect(Number(reworded.similarity)).toBeGreaterThan(0.9);
    expect(reworded.r).toMatchObject({ object: 'response', status: 'completed', output_text: first.r.output_text, usage: first.r.usage });
    expect(reworded.r.id).toMatch(/^resp_[0-9a-f]{32}$/);
    expect(withoutIds(reworded.r.output)).toEqual(withoutIds(first.r.output));
    const rec = await receipt(reworded.receiptId);
    expect(rec).toMatchObject({ endpoint: '/v1/responses', cache_status: 'semantic', cost_usd: 0 });
    expect(rec.cache_similarity).toBeGreaterThan(0.9);
    // A different detail is still a miss.
    expect((await create({ model: 'r-sem', input: 'What is the capital of Spain?' })).cache).toBe('miss');
  });

  it('a cache hit is stored like any answer: retrievable and continuable with previous_response_id', async () => {
    const input = 'Cache and continue.';
    await create({ model: 'r-exact', input });
    const hit = await create({ model: 'r-exact', input });
    expect(hit.cache).toBe('exact');
    const again = await gw.client(key.secret).responses.retrieve(hit.r.id);
    expect(again).toMatchObject({ id: hit.r.id, output: hit.r.output });
    await create({ model: 'r-exact', input: 'And then?', previous_response_id: hit.r.id });
    const sent = gw.sim.requests.filter((r) => r.body?.model === 'rp-exact').at(-1)!.body;
    expect(sent.messages).toEqual([
      { role: 'user', content: input },
      { role: 'assistant', content: hit.r.output_text },
      { role: 'user', content: 'And then?' },
    ]);
  });
});

describe('budgets on /v1/responses', () => {
  it('an exhausted budget is an OpenAI-shaped 429 insufficient_quota / budget_exceeded with a receipt, and nothing goes upstream', async () => {
    const team = await gw.createKey('team-resp-budget');
    await route('r-budget', 'rp-budget');
    await gw.started.runtime.adminStore.pricing.setPrice({ provider: 'sim', model: 'rp-budget', inputPerMTokUsd: 1000, outputPerMTokUsd: 1000 });
    await gw.started.runtime.adminStore.pricing.setBudget({ scope: 'TEAM', teamId: team.teamId, period: 'DAY', limitUsd: 0.000001, action: 'BLOCK' });
    await gw.started.runtime.app.catalog.refresh();

    const raw = await fetch(`${gw.baseURL}/responses`, {
      method: 'POST',
      headers: { authorization: `Bearer ${team.secret}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'r-budget', input: 'over budget', max_output_tokens: 16 }),
    });
    expect(raw.status).toBe(429);
    expect(await raw.json()).toEqual({ error: { message: expect.stringMatching(/budget is exhausted/), type: 'insufficient_quota', param: null, code: 'budget_exceeded' } });
    const rec = await receipt(raw.headers.get('x-tollgate-receipt-id'), team.secret);
    expect(rec).toMatchObject({ endpoint: '/v1/responses', status: 'rejected', http_status: 429, error_code: 'budget_exceeded', cost_usd: null, provider: null });

    // The SDK raises its rate-limit class with the same body; and the upstream heard nothing.
    const err: any = await gw.client(team.secret).responses.create({ model: 'r-budget', input: 'again', max_output_tokens: 16 }).catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    expect(err.code).toBe('budget_exceeded');
    expect(err.type).toBe('insufficient_quota');
    expect(upstreamCalls('rp-budget')).toBe(0);
    expect((await storedReceipts(gw, team.teamId)).map((r) => r.error_code)).toEqual(['budget_exceeded', 'budget_exceeded']);
  });
});

describe('live routing decisions for a Responses request', () => {
  it('arrive on the routingDecisions subscription with route, model and the receipt of the /v1/responses answer', async () => {
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
      { query: 'subscription { routingDecisions { requestId receiptId teamId apiKeyId requestedModel route strategy attempt provider model outcome reason } }' },
      { next: (r) => (r.data ? events.push(r.data.routingDecisions) : errors.push(r.errors)), error: (e) => errors.push(e), complete: () => undefined },
    );
    await until(() => bus.subscriberCount > before || errors.length > 0, 5_000, 'subscription to open');

    const answered = await create({ model: 'chat-default', input: 'Decide for me.', temperature: 0.5 });
    const cachedInput = 'Decide from the cache.';
    await create({ model: 'r-exact', input: cachedInput });
    const hit = await create({ model: 'r-exact', input: cachedInput });
    await until(() => events.some((e) => e.requestId === hit.requestId), 5_000, 'the cache hit decision');
    stop();
    expect(errors).toEqual([]);

    const mine = events.filter((e) => e.requestId === answered.requestId);
    expect(mine.map((e) => e.outcome)).toEqual(['ATTEMPT', 'SUCCESS']);
    for (const e of mine) {
      expect(e).toMatchObject({ receiptId: answered.receiptId, teamId: key.teamId, apiKeyId: key.id, requestedModel: 'chat-default', route: 'chat-default', provider: 'sim', model: 'sim-large', attempt: 1 });
    }
    expect(events.filter((e) => e.requestId === hit.requestId)).toEqual([expect.objectContaining({ outcome: 'CACHE_HIT', reason: 'cache_exact', route: 'r-exact', receiptId: hit.receiptId })]);
    // The decision's receipt is the Responses request's.
    expect(await receipt(answered.receiptId)).toMatchObject({ endpoint: '/v1/responses', route: 'chat-default' });
  });
});
