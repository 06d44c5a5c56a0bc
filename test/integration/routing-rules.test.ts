// Routing rules (DESIGN §5) through the official openai client: which upstream model each
// request reached, by header, task type (header and metadata), estimated prompt length, team,
// key, the prompt classifier and delegation to another route, first match winning; the
// receipt, the headers and the live decision agree. Bad configuration is refused with the field
// named and the running catalog keeps serving; a bad declarative file stops the start.
// explainRoute dry-runs the same decision without a provider call or a receipt.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createClient } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { RoutingDecision } from '../../src/live/events.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { gql, gqlOk } from '../support/graphql.js';
import { runTollgate } from '../support/processes.js';
import { storedReceipts } from '../support/receipts.js';

let gw: TestGateway;
let key: { secret: string; id: string; teamId: string };

const T = (model: string) => [{ provider: 'sim', model }];

beforeAll(async () => {
  gw = await startTestGateway();
  key = await gw.createKey('team-rules');
  const store = gw.started.runtime.adminStore;
  await store.routing.applyRouting({
    routes: [
      { name: 'strong', strategy: 'PRIORITY', targets: T('strong-model') },
      { name: 'long-ctx', strategy: 'PRIORITY', targets: T('long-model') },
      {
        name: 'smart',
        strategy: 'PRIORITY',
        targets: T('cheap-model'),
        rules: [
          { name: 'gold-header', when: '"x-tier" in request.headers && request.headers["x-tier"] == "gold"', targets: T('gold-model') },
          { name: 'extract', when: 'request.taskType == "extract"', targets: T('extract-model') },
          { name: 'long', when: 'request.promptTokens > 2000', route: 'long-ctx' },
          { name: 'vip-team', when: 'request.team == "team-vip"', targets: T('vip-model') },
          { name: 'special-key', when: 'request.apiKey == "special"', targets: T('special-model') },
          { name: 'hard', when: 'classifier.tier in ["COMPLEX", "REASONING"]', route: 'strong' },
          { name: 'meta', when: '"lane" in request.metadata && request.metadata["lane"] == "fast"', targets: T('fast-model') },
        ],
      },
    ],
    experiments: [],
  });
  await gw.started.runtime.app.catalog.refresh();
}, 120_000);
afterAll(async () => {
  await gw?.close();
});

/** One chat request; which upstream model it reached, the headers, the receipt id. */
async function ask(content: string, opts: { headers?: Record<string, string>; metadata?: Record<string, string>; secret?: string } = {}) {
  const before = gw.sim.requests.length;
  const { data, response } = await gw
    .client(opts.secret ?? key.secret, { defaultHeaders: opts.headers })
    .chat.completions.create({ model: 'smart', messages: [{ role: 'user', content }], metadata: opts.metadata } as any)
    .withResponse();
  expect(gw.sim.requests.length).toBe(before + 1);
  return {
    upstreamModel: gw.sim.requests.at(-1)!.body.model as string,
    rule: response.headers.get('x-tollgate-rule'),
    model: response.headers.get('x-tollgate-model'),
    route: response.headers.get('x-tollgate-route'),
    receiptId: response.headers.get('x-tollgate-receipt-id')!,
    text: data.choices[0]!.message.content,
  };
}

describe('rules decide where a request goes', () => {
  it("a route handed a request reads that request's prompt length, though the route before it did not", async () => {
    const routing = gw.started.runtime.adminStore.routing;
    await routing.upsertRoute({
      name: 'desk',
      strategy: 'PRIORITY',
      targets: T('desk-model'),
      rules: [{ name: 'desk-long', when: 'request.promptTokens > 2000', targets: T('desk-long-model') }],
    } as any);
    await routing.upsertRoute({
      name: 'front',
      strategy: 'PRIORITY',
      targets: T('front-model'),
      rules: [{ name: 'to-desk', when: 'request.feature == "legal"', route: 'desk' }],
    } as any);
    await gw.started.runtime.app.catalog.refresh();
    const send = async (content: string) => {
      await gw
        .client(key.secret, { defaultHeaders: { 'x-tollgate-feature': 'legal' } })
        .chat.completions.create({ model: 'front', messages: [{ role: 'user', content }] });
      return gw.sim.requests.at(-1)!.body.model;
    };
    expect(await send('short')).toBe('desk-model');
    expect(await send(`Summarize: ${'The quarterly report says revenue grew. '.repeat(300)}`)).toBe('desk-long-model');
  });

  it('first match wins, by header, task type, metadata, prompt length, team, key and classifier; none: the route itself', async () => {
    const plain = await ask('What is the capital of France?');
    expect(plain).toMatchObject({ upstreamModel: 'cheap-model', rule: null, route: 'smart' });

    expect(await ask('hi', { headers: { 'x-tier': 'gold' } })).toMatchObject({ upstreamModel: 'gold-model', rule: 'gold-header', model: 'gold-model' });
    // Header and task type both hold: the earlier rule decides.
    expect(await ask('hi', { headers: { 'x-tier': 'gold', 'x-tollgate-task-type': 'extract' } })).toMatchObject({ rule: 'gold-header' });
    expect(await ask('hi', { headers: { 'x-tollgate-task-type': 'extract' } })).toMatchObject({ upstreamModel: 'extract-model', rule: 'extract' });
    expect(await ask('hi', { metadata: { task_type: 'extract' } })).toMatchObject({ upstreamModel: 'extract-model', rule: 'extract' });
    expect(await ask('hi', { metadata: { lane: 'fast' } })).toMatchObject({ upstreamModel: 'fast-model', rule: 'meta' });

    // A long prompt (~3000 estimated tokens) is handed to another route, which serves it.
    const long = await ask(`Summarize in one line: ${'The quarterly report says revenue grew. '.repeat(300)}`);
    expect(long).toMatchObject({ upstreamModel: 'long-model', rule: 'long', route: 'smart' });

    const vip = await gw.createKey('team-vip');
    await gw.started.runtime.app.catalog.refresh(); // team names reach rules with the catalog
    expect(await ask('hi', { secret: vip.secret })).toMatchObject({ upstreamModel: 'vip-model', rule: 'vip-team' });
    const special = await gw.started.runtime.adminStore.teams.createApiKey({ teamId: key.teamId, name: 'special' });
    expect(await ask('hi', { secret: special.secret })).toMatchObject({ upstreamModel: 'special-model', rule: 'special-key' });

    // The classifier sends a multi-step proof to the strong route.
    const hard = await ask(
      'Prove that for every integer n ≥ 1 the sum of the first n odd numbers is n². Give a rigorous proof by induction, then derive the closed form for the sum of the first n squares and prove it as well.',
    );
    expect(hard).toMatchObject({ upstreamModel: 'strong-model', rule: 'hard' });

    // The receipts say the same: rule, classifier tier (only where a rule read it), route and model.
    const receipts = new Map((await storedReceipts(gw, key.teamId)).map((r) => [r.receipt_id, r]));
    expect(receipts.get(plain.receiptId)).toMatchObject({ rule: null, route: 'smart', model: 'cheap-model' });
    expect(receipts.get(long.receiptId)).toMatchObject({ rule: 'long', route: 'smart', model: 'long-model', classifier_tier: null });
    expect(receipts.get(hard.receiptId)).toMatchObject({ rule: 'hard', model: 'strong-model' });
    expect(['COMPLEX', 'REASONING']).toContain(receipts.get(hard.receiptId)!.classifier_tier);
  });

  it('task type is attributed on the receipt from the header or metadata', async () => {
    const a = await ask('hi', { headers: { 'x-tollgate-task-type': 'extract' } });
    const b = await ask('hi', { metadata: { task_type: 'code' } });
    const receipts = new Map((await storedReceipts(gw, key.teamId)).map((r) => [r.receipt_id, r]));
    expect(receipts.get(a.receiptId)!.task_type).toBe('extract');
    expect(receipts.get(b.receiptId)!.task_type).toBe('code');
  });

  it('live decisions carry the rule and the classifier tier', async () => {
    const events: RoutingDecision[] = [];
    const client = createClient({
      url: `${gw.url.replace(/^http/, 'ws')}/graphql`,
      webSocketImpl: WebSocket,
      connectionParams: { authorization: `Bearer ${gw.adminToken}` },
      retryAttempts: 0,
    });
    const before = gw.started.runtime.app.bus.subscriberCount;
    const stop = client.subscribe<{ routingDecisions: RoutingDecision }>(
      { query: 'subscription { routingDecisions(filter: { routes: ["smart"] }) { outcome rule classifierTier model } }' },
      { next: (r) => void (r.data && events.push(r.data.routingDecisions)), error: () => undefined, complete: () => undefined },
    );
    const deadline = Date.now() + 5000;
    while (gw.started.runtime.app.bus.subscriberCount === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    await ask('Prove rigorously that √2 is irrational, then derive the general statement for √p with p prime and prove it too.');
    const deadline2 = Date.now() + 5000;
    while (!events.some((e) => e.outcome === 'SUCCESS') && Date.now() < deadline2) await new Promise((r) => setTimeout(r, 10));
    stop();
    await client.dispose();
    const success = events.find((e) => e.outcome === 'SUCCESS')!;
    expect(success).toMatchObject({ rule: 'hard', model: 'strong-model' });
    expect(['COMPLEX', 'REASONING']).toContain(success.classifierTier);
  });
});

describe('bad configuration is refused, and the running catalog keeps serving', () => {
  const upsert = (rules: unknown[], targets = T('cheap-model')) =>
    gql(gw.url, gw.adminToken, 'mutation($i: RouteInput!) { upsertRoute(input: $i) { name rules { name } } }', {
      i: { name: 'smart', strategy: 'PRIORITY', targets, rules },
    });

  it.each([
    ['invalid CEL', [{ name: 'r', when: 'request.promptTokens >', route: 'strong' }], 'input.rules.0.when', /invalid CEL/],
    ['a misspelt field', [{ name: 'r', when: 'request.promtTokens > 1', route: 'strong' }], 'input.rules.0.when', /promtTokens/],
    [
      'an unknown target provider',
      [{ name: 'r', when: 'true', targets: [{ provider: 'nope', model: 'm' }] }],
      'input.rules.0.targets.0.provider',
      /unknown provider/,
    ],
    ['an unknown route', [{ name: 'r', when: 'true', route: 'missing' }], 'input.rules.0.route', /unknown route/],
    ['a cycle', [{ name: 'r', when: 'true', route: 'smart' }], 'input.rules.0.route', /circle/],
  ])('%s', async (_what, rules, field, message) => {
    const r = await upsert(rules);
    expect(r.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field });
    expect(r.errors?.[0]?.message).toMatch(message);
    // The old configuration still routes as before.
    await gw.started.runtime.app.catalog.refresh();
    expect(await ask('hi', { headers: { 'x-tier': 'gold' } })).toMatchObject({ upstreamModel: 'gold-model', rule: 'gold-header' });
    expect((await gqlOk(gw.url, gw.adminToken, '{ routes { name rules { name } } }')).routes.find((x: any) => x.name === 'smart').rules).toHaveLength(7);
  });

  it('a cycle through another route is caught from either side', async () => {
    const r = await gql(gw.url, gw.adminToken, 'mutation($i: RouteInput!) { upsertRoute(input: $i) { name } }', {
      i: { name: 'strong', strategy: 'PRIORITY', targets: T('strong-model'), rules: [{ name: 'back', when: 'request.stream', route: 'smart' }] },
    });
    expect(r.errors?.[0]?.message).toMatch(/strong → smart → strong/);
    // Nothing of the refused rule was kept: 'strong' still has no rules, a streamed request to it
    // (the refused rule's condition) still reaches its own model, and 'smart' still delegates to it.
    await gw.started.runtime.app.catalog.refresh();
    expect((await gqlOk(gw.url, gw.adminToken, '{ routes { name rules { name } } }')).routes.find((x: any) => x.name === 'strong').rules).toEqual([]);
    const before = gw.sim.requests.length;
    const { data: stream, response } = await gw
      .client(key.secret)
      .chat.completions.create({ model: 'strong', messages: [{ role: 'user', content: 'hi' }], stream: true })
      .withResponse();
    for await (const _ of stream) void _;
    expect(response.headers.get('x-tollgate-rule')).toBeNull();
    expect(gw.sim.requests.slice(before).map((q) => q.body.model)).toEqual(['strong-model']);
    expect(await ask('hi', { headers: { 'x-tier': 'gold' } })).toMatchObject({ upstreamModel: 'gold-model', rule: 'gold-header' });
  });

  it('an invalid declarative file stops the start with a clear error; names may refer forward within a file', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'tollgate-yaml-'));
    try {
      const file = path.join(dir, 'tollgate.yaml');
      const sim = `  - { name: sim, kind: SIMULATED, baseUrl: "${gw.sim.url}" }`;
      await writeFile(
        file,
        [
          'providers:',
          sim,
          'routes:',
          '  - name: front',
          '    targets: [{ provider: sim, model: m }]',
          '    rules: [{ name: to-back, when: "request.hasTools", route: back }]',
          '  - { name: back, targets: [{ provider: sim, model: b }] }',
        ].join('\n'),
      );
      const good = runTollgate(['migrate'], { TOLLGATE_DATA_DIR: path.join(dir, 'good'), TOLLGATE_CONFIG: file });
      expect(await good.exited, good.output()).toBe(0);

      await writeFile(
        file,
        [
          'providers:',
          sim,
          'routes:',
          '  - name: front',
          '    targets: [{ provider: sim, model: m }]',
          '    rules: [{ name: broken, when: "request.model ==", route: back }]',
        ].join('\n'),
      );
      const bad = runTollgate(['start'], { TOLLGATE_DATA_DIR: path.join(dir, 'bad'), TOLLGATE_CONFIG: file, TOLLGATE_PORT: '0' });
      const code = await bad.exited;
      expect(code).not.toBe(0);
      expect(bad.output()).toMatch(/routes\[0\]\.rules\[0\]\.when|rules\[0\]\.when/);
      expect(bad.output()).toMatch(/invalid CEL/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 120_000);
});

describe('explainRoute', () => {
  const explain = (input: Record<string, unknown>, token = gw.adminToken) =>
    gql(
      gw.url,
      token,
      `query($i: ExplainRouteInput!) { explainRoute(input: $i) {
      route rule classifierTier classifierConfidence experiment variant strategy servedBy
      candidates { provider model state ewmaLatencyMs skipReason } } }`,
      { i: input },
    );

  it('shows the rule, the classifier and the candidates, calls no provider and writes no receipt', async () => {
    const calls = gw.sim.requests.length;
    const receipts = (await storedReceipts(gw, key.teamId)).length;
    const r = await explain({
      request: {
        model: 'smart',
        messages: [{ role: 'user', content: 'Design a lock-free queue for many producers and consumers and prove it linearizable; analyse its complexity.' }],
      },
    });
    expect(r.errors).toBeUndefined();
    expect(r.data.explainRoute).toMatchObject({
      route: 'smart',
      rule: 'hard',
      servedBy: 'strong',
      strategy: 'PRIORITY',
      candidates: [{ provider: 'sim', model: 'strong-model', state: 'CLOSED', skipReason: null }],
    });
    expect(['COMPLEX', 'REASONING']).toContain(r.data.explainRoute.classifierTier);
    expect(r.data.explainRoute.classifierConfidence).toBeGreaterThan(0);

    const byHeader = await explain({ request: { model: 'smart', messages: [{ role: 'user', content: 'hi' }] }, headers: [{ name: 'X-Tier', value: 'gold' }] });
    expect(byHeader.data.explainRoute).toMatchObject({ rule: 'gold-header', classifierTier: null, candidates: [{ model: 'gold-model' }] });
    const vip = await gqlOk(gw.url, gw.adminToken, '{ teams { id name } }');
    const vipTeam = vip.teams.find((t: any) => t.name === 'team-vip');
    expect((await explain({ request: { model: 'smart', messages: [{ role: 'user', content: 'hi' }] }, teamId: vipTeam.id })).data.explainRoute.rule).toBe(
      'vip-team',
    );
    // A Responses body is explained in its own protocol.
    expect(
      (await explain({ request: { model: 'smart', input: 'hi', metadata: { task_type: 'extract' } }, endpoint: 'responses' })).data.explainRoute.rule,
    ).toBe('extract');

    // A team-bound token: another team's id reads as not found, as everywhere else.
    const bound = (await gw.started.runtime.adminStore.teams.createAccessToken({ name: 'explainer', role: 'ADMIN', teamId: key.teamId })).secret;
    const other = await explain({ request: { model: 'smart', messages: [{ role: 'user', content: 'hi' }] }, teamId: vipTeam.id }, bound);
    expect(other.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');

    expect(gw.sim.requests.length).toBe(calls);
    expect((await storedReceipts(gw, key.teamId)).length).toBe(receipts);
  });

  it('candidates in try order with why each is skipped: an open circuit, a Retry-After cool-down, a healthy one', async () => {
    const store = gw.started.runtime.adminStore;
    await store.routing.upsertRoute({
      name: 'guarded',
      strategy: 'PRIORITY',
      retries: 0,
      targets: [
        { provider: 'sim', model: 'broken-model', priority: 0 },
        { provider: 'sim-b', model: 'limited-model', priority: 1 },
        { provider: 'sim', model: 'healthy-model', priority: 2 },
      ],
    });
    await gw.started.runtime.app.catalog.refresh();
    const client = gw.client(key.secret);
    const pinned = (model: string) => client.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }] }).catch((e) => e);
    const reached = (model: string) => gw.sim.requests.filter((q) => q.body?.model === model).length;

    // broken-model fails (500) until the breaker opens (TOLLGATE_BREAKER_FAILURES, default 5):
    // then a request to it is refused without reaching the simulator.
    gw.sim.behave('broken-model', { status: 500, times: 100 });
    for (let i = 0; i < 10; i++) {
      const before = reached('broken-model');
      expect((await pinned('sim/broken-model')).status).toBe(502);
      if (reached('broken-model') === before) break;
    }
    // limited-model answers 429 with Retry-After: 60 once; it cools down without counting as broken.
    gw.sim.behave('limited-model', { status: 429, retryAfterSeconds: 60, times: 1 });
    expect((await pinned('sim-b/limited-model')).status).toBe(429);

    const calls = gw.sim.requests.length;
    const r = await explain({ request: { model: 'guarded', messages: [{ role: 'user', content: 'hi' }] } });
    expect(r.errors).toBeUndefined();
    expect(r.data.explainRoute).toMatchObject({ route: 'guarded', rule: null, strategy: 'PRIORITY', servedBy: null });
    expect(r.data.explainRoute.candidates.map((c: any) => [c.provider, c.model, c.state, c.skipReason])).toEqual([
      ['sim', 'broken-model', 'OPEN', 'circuit_open'],
      ['sim-b', 'limited-model', 'CLOSED', 'cooling_down'],
      ['sim', 'healthy-model', 'CLOSED', null],
    ]);
    expect(gw.sim.requests.length).toBe(calls);

    // The real request does what the explanation said: one attempt, on the healthy target.
    const { data, response } = await client.chat.completions.create({ model: 'guarded', messages: [{ role: 'user', content: 'hi' }] }).withResponse();
    expect(data.model).toBe('healthy-model');
    expect(response.headers.get('x-tollgate-attempts')).toBe('1');
    expect(gw.sim.requests.slice(calls).map((q) => q.body.model)).toEqual(['healthy-model']);
  });

  it('an invalid body or endpoint is a BAD_USER_INPUT, an unknown model an empty explanation', async () => {
    expect((await explain({ request: { model: 'smart' } })).errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'input.request' });
    expect((await explain({ request: { model: 'smart', messages: [] }, endpoint: 'fax' })).errors?.[0]?.extensions).toMatchObject({
      code: 'BAD_USER_INPUT',
      field: 'input.endpoint',
    });
    expect((await explain({ request: { model: 'nowhere', messages: [{ role: 'user', content: 'x' }] } })).data.explainRoute).toMatchObject({
      route: null,
      candidates: [],
    });
  });
});
