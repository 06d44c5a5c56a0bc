// POST /v1/responses on the shared pipeline, through the official openai client: what the
// chat path does applies here too — exact and semantic cache (an answer from the cache is
// still a Responses object), budgets (OpenAI-shaped 429 with a receipt), live routing
// decisions on the GraphQL subscription, broken and truncated streams, stored responses
// (retention, team scope, no receipts), the 429 rule (DESIGN §4), and the AI SDK on `.chat`.
import { createOpenAI } from '@ai-sdk/openai';
import { generateObject, generateText, jsonSchema, tool } from 'ai';
import { type Client, createClient } from 'graphql-ws';
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
  const { data, response } = await gw
    .client(secret)
    .responses.create({ temperature: 0, ...body } as any)
    .withResponse();
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

/** Short, so that a test can wait it out (chDB allows one gateway per test process). */
const RETENTION_MS = 4_000;

beforeAll(async () => {
  gw = await startTestGateway({
    env: { TOLLGATE_FIRST_BYTE_TIMEOUT_MS: '1500', TOLLGATE_ANSWER_TIMEOUT_MS: '1500' },
    config: { responsesRetentionMs: RETENTION_MS },
  });
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

describe('cache details on /v1/responses', () => {
  it('different instructions, or a different earlier conversation, are misses; the same conversation by previous_response_id is a hit', async () => {
    const input = 'What is the tallest mountain?';
    expect((await create({ model: 'r-sem', input })).cache).toBe('miss');
    expect((await create({ model: 'r-sem', instructions: 'Answer in French.', input })).cache).toBe('miss');
    // A conversation continued from a stored response carries its history into the question.
    const earlier = await create({ model: 'r-exact', input: 'My name is Ada.' });
    const continued = await create({ model: 'r-exact', input: 'What is my name?', previous_response_id: earlier.r.id });
    expect(continued.cache).toBe('miss');
    expect((await create({ model: 'r-exact', input: 'What is my name?' })).cache).toBe('miss');
    expect((await create({ model: 'r-exact', input: 'What is my name?', previous_response_id: earlier.r.id })).cache).toBe('exact');
  });

  it('x-tollgate-cache: no-store answers without storing; store: false on a hit keeps no stored response', async () => {
    const input = 'Directive on responses.';
    const noStore = await gw
      .client(key.secret, { defaultHeaders: { 'x-tollgate-cache': 'no-store' } })
      .responses.create({ model: 'r-exact', input, temperature: 0 })
      .withResponse();
    expect(noStore.response.headers.get('x-tollgate-cache')).toBe('bypass');
    expect((await create({ model: 'r-exact', input })).cache).toBe('miss');
    const hit = await create({ model: 'r-exact', input, store: false });
    expect(hit.cache).toBe('exact');
    expect((hit.r as { store?: boolean }).store).toBe(false);
    expect(
      (
        await gw
          .client(key.secret)
          .responses.retrieve(hit.r.id)
          .catch((e) => e)
      ).status,
    ).toBe(404);
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
    expect(await raw.json()).toEqual({
      error: { message: expect.stringMatching(/budget is exhausted/), type: 'insufficient_quota', param: null, code: 'budget_exceeded' },
    });
    const rec = await receipt(raw.headers.get('x-tollgate-receipt-id'), team.secret);
    expect(rec).toMatchObject({
      endpoint: '/v1/responses',
      status: 'rejected',
      http_status: 429,
      error_code: 'budget_exceeded',
      cost_usd: null,
      provider: null,
    });

    // The SDK raises its rate-limit class with the same body; and the upstream heard nothing.
    const err: any = await gw
      .client(team.secret)
      .responses.create({ model: 'r-budget', input: 'again', max_output_tokens: 16 })
      .catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    expect(err.code).toBe('budget_exceeded');
    expect(err.type).toBe('insufficient_quota');
    // Streamed, the refusal comes before any event: the SDK's stream helper raises the same error.
    const streamErr: any = await gw
      .client(team.secret)
      .responses.stream({ model: 'r-budget', input: 'stream it', max_output_tokens: 16 })
      .finalResponse()
      .catch((e) => e);
    expect(streamErr).toBeInstanceOf(OpenAI.RateLimitError);
    expect(streamErr.code).toBe('budget_exceeded');
    expect(upstreamCalls('rp-budget')).toBe(0);
    expect((await storedReceipts(gw, team.teamId)).map((r) => [r.endpoint, r.error_code])).toEqual(Array(3).fill(['/v1/responses', 'budget_exceeded']));
  });
});

describe('budget accounting on /v1/responses', () => {
  it('an answered, a cached, a broken-stream and an incomplete request each settle their reservation: spend = the receipts, nothing left reserved', async () => {
    const team = await gw.createKey('team-resp-spend');
    await route('r-spend', 'rp-spend', { cache: { mode: 'EXACT', ttlSeconds: 600 } });
    await gw.started.runtime.adminStore.pricing.setPrice({ provider: 'sim', model: 'rp-spend', inputPerMTokUsd: 10, outputPerMTokUsd: 40 });
    const budget = await gw.started.runtime.adminStore.pricing.setBudget({ scope: 'TEAM', teamId: team.teamId, period: 'DAY', limitUsd: 100, action: 'BLOCK' });
    await gw.started.runtime.app.catalog.refresh();

    const answered = await create({ model: 'r-spend', input: 'Spend a little.' }, team.secret);
    const cached = await create({ model: 'r-spend', input: 'Spend a little.' }, team.secret);
    expect(cached.cache).toBe('exact');
    gw.sim.behave('rp-spend', { breakAfterChunks: 2, times: 1 });
    const broken = await rawStream({ model: 'r-spend', input: 'Break and bill.' }, team.secret);
    expect(broken.trailer.status).toBe('partial');
    gw.sim.behave('rp-spend', { finishReason: 'length', times: 1 });
    const cut = await rawStream({ model: 'r-spend', input: 'Cut me short.' }, team.secret);
    expect(cut.events.at(-1)!.type).toBe('response.incomplete');

    const receipts = await storedReceipts(gw, team.teamId);
    expect(receipts.map((r) => r.receipt_id)).toEqual([answered.receiptId, cached.receiptId, broken.receiptId, cut.receiptId]);
    expect(receipts.map((r) => r.cost_usd! > 0)).toEqual([true, false, true, true]);
    const billed = receipts.reduce((sum, r) => sum + (r.cost_usd ?? 0), 0);
    const record = gw.started.runtime.app.catalog.budgets.find((b) => b.id === budget.id)!;
    const status = await gw.started.runtime.app.budgets!.status(record);
    expect(status.reservedUsd).toBe(0);
    expect(status.spentUsd).toBeCloseTo(billed, 9);
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
      {
        query: 'subscription { routingDecisions { requestId receiptId teamId apiKeyId requestedModel route strategy attempt provider model outcome reason } }',
      },
      { next: (r) => (r.data ? events.push(r.data.routingDecisions) : errors.push(r.errors)), error: (e) => errors.push(e), complete: () => undefined },
    );
    await until(() => bus.subscriberCount > before || errors.length > 0, 5_000, 'subscription to open');

    const answered = await create({ model: 'chat-default', input: 'Decide for me.', temperature: 0.5 });
    const cachedInput = 'Decide from the cache.';
    await create({ model: 'r-exact', input: cachedInput });
    const hit = await create({ model: 'r-exact', input: cachedInput });
    gw.sim.behave('primary', { status: 500, times: 1 });
    const failedOver = await create({ model: 'failover', input: 'Fail over for me.', temperature: 0.5 });
    await until(
      () =>
        [hit.requestId, failedOver.requestId].every((id) => events.some((e) => e.requestId === id && (e.outcome === 'SUCCESS' || e.outcome === 'CACHE_HIT'))),
      5_000,
      'the last decisions',
    );
    stop();
    expect(errors).toEqual([]);

    const mine = events.filter((e) => e.requestId === answered.requestId);
    expect(mine.map((e) => e.outcome)).toEqual(['ATTEMPT', 'SUCCESS']);
    for (const e of mine) {
      expect(e).toMatchObject({
        receiptId: answered.receiptId,
        teamId: key.teamId,
        apiKeyId: key.id,
        requestedModel: 'chat-default',
        route: 'chat-default',
        provider: 'sim',
        model: 'sim-large',
        attempt: 1,
      });
    }
    expect(events.filter((e) => e.requestId === hit.requestId)).toEqual([
      expect.objectContaining({ outcome: 'CACHE_HIT', reason: 'cache_exact', route: 'r-exact', receiptId: hit.receiptId }),
    ]);
    expect(events.filter((e) => e.requestId === failedOver.requestId).map((e) => `${e.outcome}:${e.provider}/${e.model}`)).toEqual([
      'ATTEMPT:sim/primary',
      'FAILOVER:sim/primary',
      'ATTEMPT:sim-b/backup',
      'SUCCESS:sim-b/backup',
    ]);
    // The decision's receipt is the Responses request's.
    expect(await receipt(answered.receiptId)).toMatchObject({ endpoint: '/v1/responses', route: 'chat-default' });
  });
});

/** A raw streamed Responses request: its typed events (type + data) and the receipt trailer. */
async function rawStream(body: Record<string, unknown>, secret = key.secret) {
  const res = await fetch(`${gw.baseURL}/responses`, {
    method: 'POST',
    headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
    body: JSON.stringify({ ...body, stream: true }),
  });
  expect(res.status).toBe(200);
  const text = await res.text();
  const events = text
    .split('\n\n')
    .filter((block) => block.startsWith('event: '))
    .map((block) => {
      const [head, data] = block.split('\ndata: ');
      return { type: head!.slice('event: '.length), data: JSON.parse(data!) };
    });
  const trailerLine = text.trimEnd().split('\n').at(-1)!;
  expect(trailerLine.startsWith(': tollgate-receipt ')).toBe(true);
  const trailer = JSON.parse(trailerLine.slice(': tollgate-receipt '.length));
  return { events, trailer, receiptId: res.headers.get('x-tollgate-receipt-id'), text };
}

describe('/v1/responses streams that do not complete', () => {
  it('an upstream break mid-stream ends with response.failed after the deltas sent, and exactly one partial receipt', async () => {
    const team = await gw.createKey('team-resp-break');
    // A backup target: after the first byte the stream never fails over to it.
    await gw.started.runtime.adminStore.routing.upsertRoute({
      name: 'r-break-two',
      strategy: 'PRIORITY',
      retries: 0,
      targets: [
        { provider: 'sim', model: 'rp-break', priority: 0 },
        { provider: 'sim-b', model: 'rp-break-backup', priority: 1 },
      ],
    });
    await gw.started.runtime.adminStore.pricing.setPrice({ provider: 'sim', model: 'rp-break', inputPerMTokUsd: 1, outputPerMTokUsd: 4 });
    await gw.started.runtime.app.catalog.refresh();
    gw.sim.behave('rp-break', { breakAfterChunks: 3, completionTokens: 8, times: 1 });
    const { events, trailer, receiptId, text } = await rawStream({ model: 'r-break-two', input: 'Break while streaming.' }, team.secret);
    const types = events.map((e) => e.type);
    expect(types.slice(0, 2)).toEqual(['response.created', 'response.in_progress']);
    expect(types.filter((t) => t === 'response.output_text.delta')).toHaveLength(3);
    expect(types.at(-1)).toBe('response.failed');
    expect(types).not.toContain('response.completed');
    expect(text).not.toContain('[DONE]');
    expect(events.map((e) => e.data.sequence_number)).toEqual(events.map((_, i) => i));
    const failed = events.at(-1)!.data.response;
    expect(failed).toMatchObject({
      object: 'response',
      status: 'failed',
      error: { code: expect.any(String), message: expect.stringContaining('upstream stream broke') },
    });
    expect(failed.id).toBe(events[0]!.data.response.id);
    expect(trailer).toMatchObject({ receipt_id: receiptId, status: 'partial' });

    const stored = await storedReceipts(gw, team.teamId);
    expect(stored).toHaveLength(1);
    expect(stored[0]).toMatchObject({
      receipt_id: receiptId,
      endpoint: '/v1/responses',
      status: 'partial',
      stream: true,
      error_code: 'upstream_stream_interrupted',
    });
    // Billed for what was delivered (estimated: the upstream never sent its usage), as the trailer said.
    expect(stored[0]!.usage_estimated).toBe(true);
    expect(stored[0]!.completion_tokens).toBeGreaterThan(0);
    expect(stored[0]!.completion_tokens).toBeLessThan(8);
    expect(stored[0]!.cost_usd).toBeGreaterThan(0);
    expect(trailer.cost_usd).toBe(stored[0]!.cost_usd);
    expect(upstreamCalls('rp-break-backup')).toBe(0);
    // A failed stream is not kept for previous_response_id.
    expect(
      (
        await gw
          .client(team.secret)
          .responses.retrieve(failed.id)
          .catch((e) => e)
      ).status,
    ).toBe(404);
  });

  it('the openai SDK surfaces the break: responses.stream yields response.failed and its final response has status failed', async () => {
    await route('r-break', 'rp-break');
    gw.sim.behave('rp-break', { breakAfterChunks: 2, completionTokens: 8, times: 1 });
    const stream = gw.client(key.secret).responses.stream({ model: 'r-break', input: 'Break the SDK stream.' });
    const seen: string[] = [];
    let text = '';
    let failedEvent: any = null;
    stream.on('response.output_text.delta', (e) => void (text += e.delta));
    for await (const e of stream) {
      seen.push(e.type);
      if (e.type === 'response.failed') failedEvent = e;
    }
    expect(seen.at(-1)).toBe('response.failed');
    expect(failedEvent.response.error.message).toContain('upstream stream broke');
    const final = await stream.finalResponse();
    expect(final.status).toBe('failed');
    expect(final.error).toMatchObject({ message: expect.stringContaining('upstream stream broke') });
    expect(text.length).toBeGreaterThan(0);
  });

  it('upstream finish_reason length streamed: response.incomplete with incomplete_details, usage, and an ok receipt', async () => {
    await route('r-length', 'rp-length');
    gw.sim.behave('rp-length', { finishReason: 'length', completionTokens: 5 });
    const { events, trailer, receiptId } = await rawStream({ model: 'r-length', input: 'Run out of tokens.' });
    const types = events.map((e) => e.type);
    expect(types.at(-1)).toBe('response.incomplete');
    expect(types).not.toContain('response.completed');
    expect(types).not.toContain('response.failed');
    const done = events.find((e) => e.type === 'response.output_item.done')!.data.item;
    expect(done).toMatchObject({ type: 'message', status: 'incomplete' });
    const response = events.at(-1)!.data.response;
    expect(response).toMatchObject({ status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' }, usage: { output_tokens: 5 } });
    expect(response.output[0].content[0].text.length).toBeGreaterThan(0);
    expect(trailer).toMatchObject({ receipt_id: receiptId, status: 'ok' });
    expect(await receipt(receiptId)).toMatchObject({ endpoint: '/v1/responses', status: 'ok', completion_tokens: 5 });

    // The SDK's stream helper ends on it and hands back the incomplete response.
    const stream = gw.client(key.secret).responses.stream({ model: 'r-length', input: 'Run out of tokens again.' });
    let incomplete: any = null;
    for await (const e of stream) if (e.type === 'response.incomplete') incomplete = e;
    expect(incomplete).not.toBeNull();
    const final = await stream.finalResponse();
    expect(final).toMatchObject({ status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' } });
    expect(final.output_text.length).toBeGreaterThan(0);
    // Kept like any answer: the stored one says incomplete too.
    expect(await gw.client(key.secret).responses.retrieve(final.id)).toMatchObject({
      status: 'incomplete',
      incomplete_details: { reason: 'max_output_tokens' },
    });
  });
});

describe('stored responses: team scope, and no receipts for GET and DELETE', () => {
  it("another team's DELETE is a 404 and the owner still retrieves it; GET and DELETE write no receipt", async () => {
    const owner = await gw.createKey('team-resp-owner');
    const stranger = await gw.createKey('team-resp-stranger');
    const created = await create({ model: 'chat-default', input: 'Keep me.' }, owner.secret);
    const ownerReceipts = (await storedReceipts(gw, owner.teamId)).length;
    expect(ownerReceipts).toBe(1);

    const del = await fetch(`${gw.baseURL}/responses/${created.r.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${stranger.secret}` } });
    expect(del.status).toBe(404);
    expect(await del.json()).toEqual({ error: { message: expect.any(String), type: 'invalid_request_error', param: 'response_id', code: 'not_found' } });
    expect(del.headers.get('x-tollgate-receipt-id')).toBeNull();
    const sdkDel: any = await gw
      .client(stranger.secret)
      .responses.delete(created.r.id)
      .catch((e) => e);
    expect(sdkDel).toBeInstanceOf(OpenAI.NotFoundError);

    const kept = await gw.client(owner.secret).responses.retrieve(created.r.id);
    expect(kept).toMatchObject({ id: created.r.id, status: 'completed', output_text: created.r.output_text });
    const get = await fetch(`${gw.baseURL}/responses/${created.r.id}`, { headers: { authorization: `Bearer ${owner.secret}` } });
    expect(get.status).toBe(200);
    expect(get.headers.get('x-tollgate-receipt-id')).toBeNull();
    expect(await gw.client(owner.secret).responses.delete(created.r.id)).toEqual({ id: created.r.id, object: 'response', deleted: true });
    expect(
      (
        await gw
          .client(owner.secret)
          .responses.retrieve(created.r.id)
          .catch((e) => e)
      ).status,
    ).toBe(404);
    expect(
      (
        await gw
          .client(owner.secret)
          .responses.delete(created.r.id)
          .catch((e) => e)
      ).status,
    ).toBe(404);

    // Only the create left a receipt, for either team.
    expect(await storedReceipts(gw, owner.teamId)).toHaveLength(ownerReceipts);
    expect(await storedReceipts(gw, stranger.teamId)).toHaveLength(0);
  });
});

describe('stored responses expire after the retention', () => {
  it('within the retention a response is retrievable and continuable; after it, GET and DELETE are 404 and previous_response_id is 404 previous_response_not_found', async () => {
    const k = await gw.createKey('team-resp-retention');
    const client = gw.client(k.secret);
    const r = await client.responses.create({ model: 'chat-default', input: 'Remember me briefly.' });
    const created = Date.now();
    expect((await client.responses.retrieve(r.id)).id).toBe(r.id);
    const cont = await client.responses.create({ model: 'chat-default', input: 'Go on.', previous_response_id: r.id });
    expect(cont.previous_response_id).toBe(r.id);

    await sleep(Math.max(0, created + RETENTION_MS + 300 - Date.now()));
    const gone: any = await client.responses.retrieve(r.id).catch((e) => e);
    expect(gone).toBeInstanceOf(OpenAI.NotFoundError);
    expect(gone.code).toBe('not_found');
    const expired: any = await client.responses.create({ model: 'chat-default', input: 'Still there?', previous_response_id: r.id }).catch((e) => e);
    expect(expired.status).toBe(404);
    expect(expired.code).toBe('previous_response_not_found');
    expect(expired.param).toBe('previous_response_id');
    expect((await client.responses.delete(r.id).catch((e) => e)).status).toBe(404);
    // A chain whose newest turn expired is gone too (the continuation was created a moment later).
    await sleep(300);
    expect((await client.responses.create({ model: 'chat-default', input: 'x', previous_response_id: cont.id }).catch((e) => e)).status).toBe(404);
  });
});

describe('429 semantics on /v1/responses (DESIGN §4)', () => {
  async function twoTargets(name: string, a: string, b: string) {
    await gw.started.runtime.adminStore.routing.upsertRoute({
      name,
      strategy: 'PRIORITY',
      retries: 0,
      targets: [
        { provider: 'sim', model: a, priority: 0 },
        { provider: 'sim-b', model: b, priority: 1 },
      ],
    });
    await gw.started.runtime.app.catalog.refresh();
  }
  const fail = (model: string) =>
    gw
      .client(key.secret)
      .responses.create({ model, input: 'x' })
      .catch((e) => e as any);

  it('one target 429, the last timing out: 504 api_error / upstream_error, no Retry-After', async () => {
    await twoTargets('r-429-timeout', 'rt-a', 'rt-b');
    gw.sim.behave('rt-a', { status: 429, retryAfterSeconds: 5 });
    gw.sim.behave('rt-b', { hang: 'before-headers' });
    const err = await fail('r-429-timeout');
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect(err.status).toBe(504);
    expect(err.error).toMatchObject({ type: 'api_error', code: 'upstream_error' });
    expect(err.headers.get('retry-after')).toBeNull();
    expect(upstreamCalls('rt-a') + upstreamCalls('rt-b')).toBe(2);
    expect(await receipt(err.headers.get('x-tollgate-receipt-id'))).toMatchObject({ endpoint: '/v1/responses', status: 'error', http_status: 504 });
  });

  it('a timeout first and a 429 last: 502 (the last failure was not a timeout)', async () => {
    await twoTargets('r-timeout-429', 'rt-c', 'rt-d');
    gw.sim.behave('rt-c', { hang: 'before-headers' });
    gw.sim.behave('rt-d', { status: 429, retryAfterSeconds: 5 });
    const err = await fail('r-timeout-429');
    expect(err.status).toBe(502);
    expect(err.error).toMatchObject({ type: 'api_error', code: 'upstream_error' });
  });

  it('every target 429 without a Retry-After hint: 429 rate_limit_exceeded, Retry-After the implied 1 s cool-down, during which no upstream is called', async () => {
    await twoTargets('r-429-nohint', 'rt-e', 'rt-f');
    gw.sim.behave('rt-e', { status: 429 });
    gw.sim.behave('rt-f', { status: 429 });
    const post = () =>
      fetch(`${gw.baseURL}/responses`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key.secret}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'r-429-nohint', input: 'x' }),
      });
    const res = await post();
    expect(res.status).toBe(429);
    expect(await res.json()).toEqual({
      error: { message: expect.stringContaining('rate limited'), type: 'rate_limit_error', param: null, code: 'rate_limit_exceeded' },
    });
    expect(res.headers.get('retry-after')).toBe('1');
    expect(await receipt(res.headers.get('x-tollgate-receipt-id'))).toMatchObject({
      endpoint: '/v1/responses',
      http_status: 429,
      error_code: 'rate_limit_exceeded',
    });
    const calls = upstreamCalls('rt-e') + upstreamCalls('rt-f');
    expect(calls).toBe(2);
    // Within the second both targets sit out; after it they are tried again.
    expect((await post()).status).toBe(429);
    expect(upstreamCalls('rt-e') + upstreamCalls('rt-f')).toBe(calls);
    await sleep(1_100);
    gw.sim.behave('rt-e', {});
    const after = await create({ model: 'r-429-nohint', input: 'x' });
    expect(after.r.status).toBe('completed');
    expect(upstreamCalls('rt-e')).toBe(2);
  });

  it('every target 429 on a stream request: the 429 comes before any event, and the SDK raises RateLimitError with Retry-After', async () => {
    await twoTargets('r-429-stream', 'rt-g', 'rt-h');
    gw.sim.behave('rt-g', { status: 429, retryAfterSeconds: 9 });
    gw.sim.behave('rt-h', { status: 429, retryAfterSeconds: 4 });
    const stream = gw.client(key.secret).responses.stream({ model: 'r-429-stream', input: 'x' });
    const err: any = await stream.finalResponse().catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    expect(err.code).toBe('rate_limit_exceeded');
    expect(err.headers.get('retry-after')).toBe('4');
  });
});

describe('Vercel AI SDK (ai 6 + @ai-sdk/openai 3) on .chat', () => {
  const chatModel = () => createOpenAI({ baseURL: gw.baseURL, apiKey: key.secret }).chat('chat-default');
  const lastChatBody = () => gw.sim.requests.filter((r) => r.path.endsWith('/chat/completions')).at(-1)!.body;

  it('generateText: text, finish reason, usage and the receipt of a chat completions request', async () => {
    const r = await generateText({ model: chatModel(), system: 'Be brief.', prompt: 'Say something.' });
    expect(r.text.split(' ').length).toBeGreaterThan(3);
    expect(r.finishReason).toBe('stop');
    expect(r.usage.outputTokens).toBe(8);
    expect(lastChatBody().messages).toEqual([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Say something.' },
    ]);
    const receiptId = r.response.headers?.['x-tollgate-receipt-id'];
    expect(await receipt(receiptId ?? null)).toMatchObject({ endpoint: '/v1/chat/completions', completion_tokens: 8, status: 'ok' });
  });

  it('generateObject: a json_schema response_format upstream, an object that fits the schema back', async () => {
    const schema = {
      type: 'object',
      properties: { title: { type: 'string' }, year: { type: 'integer' } },
      required: ['title', 'year'],
      additionalProperties: false,
    } as const;
    const { object, finishReason } = await generateObject({
      model: chatModel(),
      schema: jsonSchema<{ title: string; year: number }>(schema as any),
      schemaName: 'film',
      prompt: 'Name a film.',
    });
    expect(finishReason).toBe('stop');
    expect(typeof object.title).toBe('string');
    expect(Number.isInteger(object.year)).toBe(true);
    expect(lastChatBody().response_format).toMatchObject({
      type: 'json_schema',
      json_schema: { name: 'film', schema: expect.objectContaining({ required: ['title', 'year'] }) },
    });
  });

  it('tools: the model calls one, the SDK runs it, the result goes back as a tool message, and the loop ends with text', async () => {
    const calls: string[] = [];
    const r = await generateText({
      model: chatModel(),
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
    expect(r.steps.map((s) => s.finishReason)).toEqual(['tool-calls', 'stop']);
    expect(r.text.length).toBeGreaterThan(0);
    const second = lastChatBody();
    const toolMessage = second.messages.find((m: any) => m.role === 'tool');
    expect(JSON.parse(toolMessage.content)).toEqual({ temp: 18 });
    const assistant = second.messages.find((m: any) => m.role === 'assistant');
    expect(assistant.tool_calls[0]).toMatchObject({ id: toolMessage.tool_call_id, type: 'function', function: { name: 'get_weather' } });
    expect(JSON.parse(assistant.tool_calls[0].function.arguments)).toEqual({ city: calls[0] });
  });
});
