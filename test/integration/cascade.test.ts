// CASCADE routes (DESIGN §5) through the official openai client: a cheap step answers first,
// its answer is held against the route's acceptance checks, and only a rejected answer climbs
// to the strong step. Every kind of bad answer the checks know (invalid JSON, JSON against its
// schema, truncation, emptiness, refusals, bad tool arguments) climbs; the controls do not.
// Failures fail over, 4xx go back, everything rejected ends in the last answer marked not
// accepted. One receipt per request, with the steps' tokens and costs added up.
import Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { periodWindow } from '../../src/budgets/periods.js';
import { spentInWindow } from '../../src/budgets/spend.js';
import { maxCostOf } from '../../src/gateway/usage.js';
import type { RoutingDecision } from '../../src/live/events.js';
import type { Receipt } from '../../src/receipts/receipt.js';
import type { SimBehaviour } from '../../src/sim/behaviour.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { gqlOk } from '../support/graphql.js';
import { expectOneReceiptEach, storedReceipts } from '../support/receipts.js';

let gw: TestGateway;
let key: { secret: string; id: string; teamId: string };
const CHEAP = { provider: 'sim', model: 'cheap' };
const STRONG = { provider: 'sim-b', model: 'strong' };
const ALL_CHECKS = ['JSON', 'TOOL_ARGS', 'NOT_TRUNCATED', 'NON_EMPTY', 'NOT_REFUSED'] as const;
const receiptIds: string[] = [];

beforeAll(async () => {
  gw = await startTestGateway();
  key = await gw.createKey('team-cascade');
  const store = gw.started.runtime.adminStore;
  await store.routing.upsertRoute({ name: 'smart', strategy: 'CASCADE', accept: [...ALL_CHECKS], targets: [CHEAP, STRONG], cache: { mode: 'EXACT' } as any });
  await store.routing.upsertRoute({ name: 'strong-only', strategy: 'PRIORITY', targets: [STRONG] });
  await store.routing.upsertRoute({ name: 'lenient', strategy: 'CASCADE', accept: ['NON_EMPTY'], targets: [CHEAP, STRONG] });
  await store.pricing.setPrice({ ...CHEAP, inputPerMTokUsd: 1, outputPerMTokUsd: 2 });
  await store.pricing.setPrice({ ...STRONG, inputPerMTokUsd: 10, outputPerMTokUsd: 30 });
  await gw.started.runtime.app.catalog.refresh();
}, 120_000);

beforeEach(() => gw.sim.reset());

afterAll(async () => {
  // Every request of this file left exactly one receipt, and each verifies.
  if (gw) await expectOneReceiptEach(gw, key.teamId, receiptIds);
  await gw?.close();
});

const upstreamModels = () => gw.sim.requests.filter((r) => r.path.endsWith('/chat/completions')).map((r) => r.body.model as string);

async function receiptOf(id: string): Promise<Receipt> {
  const r = (await storedReceipts(gw, key.teamId)).find((x) => x.receipt_id === id);
  if (!r) throw new Error(`no receipt ${id}`);
  return r;
}

/** One chat request (x-tollgate-cache: no-store unless said otherwise, so cases do not answer each other). */
async function ask(body: Record<string, unknown>, headers: Record<string, string> = { 'x-tollgate-cache': 'no-store' }) {
  const { data, response } = await gw
    .client(key.secret, { defaultHeaders: headers })
    .chat.completions.create({ model: 'smart', messages: [{ role: 'user', content: 'Where is the Eiffel tower?' }], ...body } as any)
    .withResponse();
  const receiptId = response.headers.get('x-tollgate-receipt-id')!;
  receiptIds.push(receiptId);
  return {
    data: data as any,
    model: response.headers.get('x-tollgate-model'),
    attempts: response.headers.get('x-tollgate-attempts'),
    accepted: response.headers.get('x-tollgate-accepted'),
    cache: response.headers.get('x-tollgate-cache'),
    receiptId,
  };
}

/** One plain request to the 'lenient' route (checks only NON_EMPTY), through the official client; its answer and receipt. */
async function askLenient(content: string) {
  const { data, response } = await gw
    .client(key.secret)
    .chat.completions.create({ model: 'lenient', messages: [{ role: 'user', content }] })
    .withResponse();
  const id = response.headers.get('x-tollgate-receipt-id')!;
  receiptIds.push(id);
  return { data, receipt: await receiptOf(id) };
}

const CITY_SCHEMA = { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false };
const WEATHER_TOOL = {
  type: 'function',
  function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } },
};

/** Each kind of answer the checks reject: the request, what the cheap step answers, why it climbs. */
const REJECTIONS: Array<{ name: string; body: Record<string, unknown>; cheap: SimBehaviour; reason: RegExp; valid: (d: any) => void }> = [
  {
    name: 'invalid JSON for a JSON-mode request',
    body: { response_format: { type: 'json_object' } },
    cheap: { content: 'Paris, I think' },
    reason: /^json: the content is not valid JSON$/,
    valid: (d) => expect(() => JSON.parse(d.choices[0].message.content)).not.toThrow(),
  },
  {
    name: 'JSON that breaks the request schema',
    body: { response_format: { type: 'json_schema', json_schema: { name: 'place', schema: CITY_SCHEMA } } },
    cheap: { content: '{"town":"Paris"}' },
    reason: /^json: .*(required|additional)/,
    valid: (d) => expect(typeof JSON.parse(d.choices[0].message.content).city).toBe('string'),
  },
  {
    name: 'a truncated answer',
    body: {},
    cheap: { finishReason: 'length' },
    reason: /^not_truncated: /,
    valid: (d) => expect(d.choices[0].finish_reason).toBe('stop'),
  },
  {
    name: 'an empty answer',
    body: {},
    cheap: { content: '   ' },
    reason: /^non_empty: /,
    valid: (d) => expect(d.choices[0].message.content.trim()).not.toBe(''),
  },
  {
    name: 'a refusal',
    body: {},
    cheap: { refusal: "I can't help with that." },
    reason: /^not_refused: the model refused$/,
    valid: (d) => expect(d.choices[0].message.refusal ?? null).toBeNull(),
  },
  {
    name: 'a content filter stop',
    body: {},
    cheap: { finishReason: 'content_filter' },
    reason: /^not_refused: stopped by a content filter$/,
    valid: (d) => expect(d.choices[0].finish_reason).toBe('stop'),
  },
  {
    name: 'tool arguments that break the tool schema',
    body: { tools: [WEATHER_TOOL], tool_choice: 'required' },
    cheap: { toolArguments: '{"city": 5}' },
    reason: /^tool_args: get_weather: \/city must be string$/,
    valid: (d) => expect(typeof JSON.parse(d.choices[0].message.tool_calls[0].function.arguments).city).toBe('string'),
  },
  {
    name: 'tool arguments that are not JSON',
    body: { tools: [WEATHER_TOOL], tool_choice: 'required' },
    cheap: { toolArguments: '{"city": "Par' },
    reason: /^tool_args: get_weather: the arguments are not valid JSON$/,
    valid: (d) => expect(JSON.parse(d.choices[0].message.tool_calls[0].function.arguments)).toHaveProperty('city'),
  },
];

describe('a cheap-first cascade', () => {
  it('stops at the first step whose answer passes: one call, its cost', async () => {
    const r = await ask({ response_format: { type: 'json_object' } });
    expect(upstreamModels()).toEqual(['cheap']);
    expect(r).toMatchObject({ model: 'cheap', attempts: '1', accepted: null });
    expect(() => JSON.parse(r.data.choices[0].message.content)).not.toThrow();
    const receipt = await receiptOf(r.receiptId);
    expect(receipt).toMatchObject({ status: 'ok', strategy: 'CASCADE', model: 'cheap', accepted: true });
    expect(receipt.attempts).toHaveLength(1);
    expect(receipt.attempts[0]).toMatchObject({ model: 'cheap', accepted: true, reject_reason: null });
    expect(receipt.cost_usd).toBeGreaterThan(0);
    expect(receipt.cost_usd).toBeCloseTo(receipt.attempts[0].cost_usd!, 12);
    expect(receipt.prompt_tokens).toBe(receipt.attempts[0].prompt_tokens);
  });

  for (const c of REJECTIONS) {
    it(`climbs past ${c.name}`, async () => {
      gw.sim.behave('cheap', { ...c.cheap, times: 1 });
      const r = await ask(c.body);
      expect(upstreamModels()).toEqual(['cheap', 'strong']);
      expect(r).toMatchObject({ model: 'strong', attempts: '2', accepted: null });
      c.valid(r.data);
      const receipt = await receiptOf(r.receiptId);
      expect(receipt).toMatchObject({ status: 'ok', provider: 'sim-b', model: 'strong', accepted: true });
      const [first, second] = receipt.attempts;
      expect(first).toMatchObject({ model: 'cheap', status: 200, error: null, accepted: false });
      expect(first.reject_reason).toMatch(c.reason);
      expect(second).toMatchObject({ model: 'strong', status: 200, error: null, accepted: true, reject_reason: null });
      // The receipt bills both steps: tokens and cost are their sums; the price is the last one's.
      expect(receipt.prompt_tokens).toBe(first.prompt_tokens! + second.prompt_tokens!);
      expect(receipt.completion_tokens).toBe(first.completion_tokens! + second.completion_tokens!);
      expect(first.cost_usd).toBeGreaterThan(0);
      expect(second.cost_usd).toBeGreaterThan(first.cost_usd!);
      expect(receipt.cost_usd).toBeCloseTo(first.cost_usd! + second.cost_usd!, 12);
      expect(receipt.price_version).not.toBeNull();
    });
  }

  it('does not climb when a check does not apply, or the route does not ask for it', async () => {
    // Not JSON, but the request did not ask for JSON: the json check has nothing to say.
    gw.sim.behave('cheap', { content: 'Paris, I think', times: 1 });
    const plain = await ask({});
    expect(plain).toMatchObject({ model: 'cheap', attempts: '1' });
    expect(plain.data.choices[0].message.content).toBe('Paris, I think');
    // A truncated answer on a route that only checks for emptiness.
    gw.sim.reset();
    gw.sim.behave('cheap', { finishReason: 'length', times: 1 });
    const { data, receipt } = await askLenient('hello');
    expect(upstreamModels()).toEqual(['cheap']);
    expect(data.choices[0].finish_reason).toBe('length');
    expect(receipt.accepted).toBe(true);
  });

  it('reads a step whose content is a list of text parts as its text, and checks it like any other', async () => {
    gw.sim.behave('cheap', { content: 'Paris.', contentParts: true, times: 1 });
    const { data, receipt } = await askLenient('parts');
    expect(upstreamModels()).toEqual(['cheap']);
    expect(data.choices[0].message.content).toBe('Paris.');
    expect(receipt.accepted).toBe(true);
  });

  it('every step rejected: the last answer with x-tollgate-accepted: false, status ok, and nothing cached', async () => {
    gw.sim.behave('cheap', { content: 'not json' });
    gw.sim.behave('strong', { content: 'still not json' });
    const body = { temperature: 0, response_format: { type: 'json_object' }, messages: [{ role: 'user', content: 'all rejected' }] };
    const r = await ask(body, {});
    expect(upstreamModels()).toEqual(['cheap', 'strong']);
    expect(r).toMatchObject({ model: 'strong', attempts: '2', accepted: 'false', cache: 'miss' });
    expect(r.data.choices[0].message.content).toBe('still not json');
    const receipt = await receiptOf(r.receiptId);
    expect(receipt).toMatchObject({ status: 'ok', http_status: 200, accepted: false, model: 'strong' });
    expect(receipt.attempts.map((a) => a.accepted)).toEqual([false, false]);
    expect(receipt.cost_usd).toBeCloseTo(receipt.attempts[0].cost_usd! + receipt.attempts[1].cost_usd!, 12);
    // Not accepted, so not remembered: the same question goes upstream again.
    const again = await ask(body, {});
    expect(again.cache).toBe('miss');
    expect(upstreamModels()).toEqual(['cheap', 'strong', 'cheap', 'strong']);
  });

  it('an accepted answer is cached, and the hit costs nothing', async () => {
    gw.sim.behave('cheap', { content: 'nope', times: 1 });
    const body = { temperature: 0, response_format: { type: 'json_object' }, messages: [{ role: 'user', content: 'cache the climb' }] };
    const first = await ask(body, {});
    expect(first).toMatchObject({ model: 'strong', cache: 'miss' });
    const second = await ask(body, {});
    expect(second).toMatchObject({ model: 'strong', cache: 'exact' });
    expect(second.data.choices[0].message.content).toBe(first.data.choices[0].message.content);
    expect(upstreamModels()).toEqual(['cheap', 'strong']);
    const [climbed, hit] = [await receiptOf(first.receiptId), await receiptOf(second.receiptId)];
    expect(hit.cost_usd).toBe(0);
    expect(hit.saved_cost_usd).toBeCloseTo(climbed.cost_usd!, 12); // what the climb cost
  });

  it('a step that fails fails over; a 4xx goes back to the client without climbing', async () => {
    gw.sim.behave('cheap', { status: 503, times: 1 });
    const r = await ask({});
    expect(upstreamModels()).toEqual(['cheap', 'strong']);
    const receipt = await receiptOf(r.receiptId);
    expect(receipt.attempts[0]).toMatchObject({ model: 'cheap', status: 503, error: 'network_error', cost_usd: null, accepted: null });
    expect(receipt.attempts[1]).toMatchObject({ model: 'strong', accepted: true });
    expect(receipt.cost_usd).toBeCloseTo(receipt.attempts[1].cost_usd!, 12);

    gw.sim.reset();
    gw.sim.behave('cheap', { status: 400, times: 1 });
    const err = await ask({}).catch((e) => e);
    expect(err.status).toBe(400);
    expect(upstreamModels()).toEqual(['cheap']);
    const id = err.headers.get('x-tollgate-receipt-id');
    receiptIds.push(id);
    expect(await receiptOf(id)).toMatchObject({ status: 'error', http_status: 400, accepted: null });
  });

  it('a 4xx after a rejected step still bills the step that answered', async () => {
    gw.sim.behave('cheap', { content: '', times: 1 });
    gw.sim.behave('strong', { status: 422, times: 1 });
    const err = await ask({}).catch((e) => e);
    expect(err.status).toBe(422);
    const id = err.headers.get('x-tollgate-receipt-id');
    receiptIds.push(id);
    const receipt = await receiptOf(id);
    expect(receipt).toMatchObject({ status: 'error', http_status: 422 });
    expect(receipt.attempts[0]).toMatchObject({ model: 'cheap', accepted: false });
    expect(receipt.cost_usd).toBeCloseTo(receipt.attempts[0].cost_usd!, 12);
    expect(receipt.cost_usd).toBeGreaterThan(0);
  });

  it('streams: each step is fetched whole and checked, then the accepted answer is streamed', async () => {
    gw.sim.behave('cheap', { content: 'not json', times: 1 });
    const { data: stream, response } = await gw
      .client(key.secret, { defaultHeaders: { 'x-tollgate-cache': 'no-store' } })
      .chat.completions.create({
        model: 'smart',
        stream: true,
        stream_options: { include_usage: true },
        response_format: { type: 'json_object' },
        messages: [{ role: 'user', content: 'stream it' }],
      })
      .withResponse();
    let text = '';
    let usage: any = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? '';
      usage = chunk.usage ?? usage;
    }
    const id = response.headers.get('x-tollgate-receipt-id')!;
    receiptIds.push(id);
    expect(() => JSON.parse(text)).not.toThrow();
    expect(response.headers.get('x-tollgate-model')).toBe('strong');
    expect(gw.sim.requests.map((r) => r.body.stream ?? false)).toEqual([false, false]);
    const receipt = await receiptOf(id);
    expect(receipt).toMatchObject({ stream: true, status: 'ok', accepted: true });
    expect(receipt.attempts).toHaveLength(2);
    expect(usage).not.toBeNull();
  });

  it('the Responses API climbs too', async () => {
    gw.sim.behave('cheap', { content: 'not json', times: 1 });
    const { data, response } = await gw
      .client(key.secret, { defaultHeaders: { 'x-tollgate-cache': 'no-store' } })
      .responses.create({ model: 'smart', input: 'Answer in JSON', text: { format: { type: 'json_object' } } })
      .withResponse();
    receiptIds.push(response.headers.get('x-tollgate-receipt-id')!);
    expect(upstreamModels()).toEqual(['cheap', 'strong']);
    expect(() => JSON.parse(data.output_text)).not.toThrow();
  });

  it('Anthropic Messages climb too', async () => {
    gw.sim.behave('cheap', { refusal: 'I would rather not.', times: 1 });
    const claude = new Anthropic({ baseURL: gw.url, apiKey: key.secret, maxRetries: 0, defaultHeaders: { 'x-tollgate-cache': 'no-store' } });
    const { data, response } = await claude.messages
      .create({ model: 'smart', max_tokens: 64, messages: [{ role: 'user', content: 'Say hello' }] })
      .withResponse();
    receiptIds.push(response.headers.get('x-tollgate-receipt-id')!);
    expect(upstreamModels()).toEqual(['cheap', 'strong']);
    expect(data.stop_reason).toBe('end_turn');
    expect(data.content[0]).toMatchObject({ type: 'text' });
    const receipt = await receiptOf(response.headers.get('x-tollgate-receipt-id')!);
    expect(receipt.attempts.map((a) => a.reject_reason)).toEqual(['not_refused: the model refused', null]);
  });

  it('live decisions say which step was rejected and why', async () => {
    const decisions: RoutingDecision[] = [];
    const unsubscribe = gw.started.runtime.app.bus.decisions.subscribe((d) => decisions.push(d));
    try {
      gw.sim.behave('cheap', { refusal: 'No.', times: 1 });
      const r = await ask({});
      const mine = decisions.filter((d) => d.receiptId === r.receiptId && d.outcome === 'SUCCESS');
      expect(mine.map((d) => [d.model, d.accepted, d.strategy])).toEqual([
        ['cheap', false, 'CASCADE'],
        ['strong', true, 'CASCADE'],
      ]);
      expect(mine[0].rejectReason).toBe('not_refused: the model refused');
    } finally {
      unsubscribe();
    }
  });

  it('explainRoute shows the climb in order, and calls nobody', async () => {
    const d = await gqlOk(
      gw.url,
      gw.adminToken,
      `query($r: ExplainRouteInput!) { explainRoute(input: $r) { route strategy candidates { provider model skipReason } } }`,
      { r: { request: { model: 'smart', messages: [{ role: 'user', content: 'hi' }] }, teamId: key.teamId } },
    );
    expect(d.explainRoute).toEqual({
      route: 'smart',
      strategy: 'CASCADE',
      candidates: [
        { provider: 'sim', model: 'cheap', skipReason: null },
        { provider: 'sim-b', model: 'strong', skipReason: null },
      ],
    });
    expect(gw.sim.requests).toHaveLength(0);
  });

  it('budgets reserve what every step could cost', async () => {
    const targets = [{ price: { inputPerMTokUsd: 1, outputPerMTokUsd: 2 } }, { price: { inputPerMTokUsd: 10, outputPerMTokUsd: 30 } }] as any;
    const chat = { messages: [{ role: 'user', content: 'hi' }], max_tokens: 1000 };
    const body = { body: chat, chat } as any;
    const one = await maxCostOf(targets, body, 4096);
    const every = await maxCostOf(targets, body, 4096, true);
    const cheapOnly = await maxCostOf([targets[0]], body, 4096);
    expect(every).toBeCloseTo(one + cheapOnly, 12);
  });

  it('cost per succeeded task counts every step of every climb', async () => {
    const task = (id: string) => ({ 'x-tollgate-task-id': id, 'x-tollgate-cache': 'no-store' });
    gw.sim.behave('cheap', { content: 'nope', times: 1 });
    const climbed = await ask({ response_format: { type: 'json_object' } }, task('t-climb'));
    const direct = await ask({ response_format: { type: 'json_object' } }, task('t-direct'));
    const receipts = [await receiptOf(climbed.receiptId), await receiptOf(direct.receiptId)];
    const d = await gqlOk(
      gw.url,
      gw.adminToken,
      `query($f: AnalyticsFilter!) { costPerTask(filter: $f) { tasks succeededTasks costUsd costPerSucceededTaskUsd } }`,
      {
        f: { from: new Date(Date.now() - 3_600_000).toISOString(), to: new Date(Date.now() + 60_000).toISOString(), teamIds: [key.teamId], routes: ['smart'] },
      },
    );
    const row = d.costPerTask[0];
    expect(row.tasks).toBe(2);
    expect(row.succeededTasks).toBe(2);
    expect(row.costUsd).toBeCloseTo(receipts[0].cost_usd! + receipts[1].cost_usd!, 9);
    expect(row.costPerSucceededTaskUsd).toBeCloseTo(row.costUsd / 2, 9);
  });

  it('cheap first beats always-strong on cost per succeeded task (the README example)', async () => {
    const client = gw.client(key.secret);
    const run = async (route: string, task: string) => {
      const { response } = await client.chat.completions
        .create(
          {
            model: route,
            temperature: 0,
            response_format: { type: 'json_object' },
            messages: [{ role: 'user', content: `Extract the city from ticket ${task} as JSON.` }],
          },
          { headers: { 'x-tollgate-task-id': task, 'x-tollgate-feature': 'extract-city', 'x-tollgate-cache': 'no-store' } },
        )
        .withResponse();
      receiptIds.push(response.headers.get('x-tollgate-receipt-id')!);
    };
    // The cheap model fumbles the JSON on 4 tickets in 20; those climb to the strong one.
    gw.sim.behave('cheap', { content: 'The city is Paris.', times: 4 });
    for (let i = 0; i < 20; i++) await run('smart', `smart-${i}`);
    for (let i = 0; i < 20; i++) await run('strong-only', `strong-${i}`);
    expect(upstreamModels().filter((m) => m === 'strong')).toHaveLength(4 + 20);
    const receipts = (await storedReceipts(gw, key.teamId)).filter((r) => r.feature === 'extract-city'); // flushes the WAL

    const d = await gqlOk(
      gw.url,
      gw.adminToken,
      `query($f: AnalyticsFilter!) { costPerTask(filter: $f, groupBy: [ROUTE]) { key { route } tasks succeededTasks costUsd costPerSucceededTaskUsd } }`,
      { f: { from: new Date(Date.now() - 3_600_000).toISOString(), to: new Date(Date.now() + 60_000).toISOString(), features: ['extract-city'] } },
    );
    const byRoute = Object.fromEntries(d.costPerTask.map((r: any) => [r.key.route, r]));
    for (const route of ['smart', 'strong-only']) {
      const mine = receipts.filter((r) => r.route === route);
      expect(byRoute[route]).toMatchObject({ tasks: 20, succeededTasks: 20 });
      expect(byRoute[route].costUsd).toBeCloseTo(
        mine.reduce((sum, r) => sum + r.cost_usd!, 0),
        9,
      );
    }
    expect(byRoute.smart.costPerSucceededTaskUsd).toBeLessThan(byRoute['strong-only'].costPerSucceededTaskUsd / 3);
  });
});

describe('budgets', () => {
  it('a climb through an unpriced step books what its priced steps cost, live and when rebuilt from the receipts', async () => {
    const store = gw.started.runtime.adminStore;
    const team = await gw.createKey('team-cascade-budget');
    await store.routing.upsertRoute({
      name: 'half-priced',
      strategy: 'CASCADE',
      accept: ['NON_EMPTY'],
      targets: [CHEAP, { provider: 'sim-b', model: 'unpriced' }],
    });
    await store.pricing.setBudget({ scope: 'TEAM', teamId: team.teamId, period: 'DAY', limitUsd: 100, action: 'BLOCK' });
    await gw.started.runtime.app.catalog.refresh();
    gw.sim.behave('cheap', { content: '   ', times: 1 });
    const { response } = await gw
      .client(team.secret)
      .chat.completions.create({ model: 'half-priced', messages: [{ role: 'user', content: 'climb' }] })
      .withResponse();
    expect(response.headers.get('x-tollgate-attempts')).toBe('2');
    await gw.started.runtime.journal.flush();
    const receipt = (await storedReceipts(gw, team.teamId)).find((r) => r.receipt_id === response.headers.get('x-tollgate-receipt-id'))!;
    expect(receipt.cost_usd).toBeNull(); // unknown in all: never a fake sum
    const cheapCost = receipt.attempts[0].cost_usd!;
    expect(cheapCost).toBeGreaterThan(0);
    const budgets = gw.started.runtime.app.budgets!;
    const budget = gw.started.runtime.app.catalog.budgets.find((b) => b.teamId === team.teamId)!;
    await expect.poll(async () => (await budgets.status(budget)).spentUsd).toBeCloseTo(cheapCost, 9);
    const window = periodWindow('DAY', Date.now());
    const ch = gw.started.runtime.clickhouse;
    expect(await spentInWindow(ch.client, 'receipts', budget, window)).toBeCloseTo(cheapCost, 9);
  });
});
