// GraphQL subscriptions (routingDecisions, budgetEvents) over graphql-ws and over SSE, against
// a real Tollgate in front of the simulated provider.
import { type Client, createClient } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { BudgetEvent, LiveBus, RoutingDecision } from '../../src/live/events.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(cond: () => boolean, timeoutMs = 5_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

const DECISION_FIELDS = `requestId receiptId at teamId apiKeyId feature requestedModel route strategy attempt provider model outcome reason latencyMs droppedBefore
  candidates { provider model state ewmaLatencyMs }`;

let gw: TestGateway;
let bus: LiveBus;
let wsUrl: string;
let teamA: { secret: string; id: string; teamId: string };
let teamB: { secret: string; id: string; teamId: string };
const clients: Client[] = [];

interface Sub<T> {
  events: T[];
  errors: unknown[];
  completed: boolean;
  stop: () => void;
}

function wsClient(token: string, extra: Partial<Parameters<typeof createClient>[0]> = {}): Client {
  const c = createClient({ url: wsUrl, webSocketImpl: WebSocket, connectionParams: { authorization: `Bearer ${token}` }, retryAttempts: 0, ...extra });
  clients.push(c);
  return c;
}

/** Subscribes and waits until the server has the subscription open (so no event is missed). */
async function subscribe<T>(client: Client, query: string, field: string, variables: Record<string, unknown> = {}): Promise<Sub<T>> {
  const before = bus.subscriberCount;
  const sub: Sub<T> = { events: [], errors: [], completed: false, stop: () => undefined };
  sub.stop = client.subscribe<Record<string, T>>(
    { query, variables },
    {
      next: (r) => (r.data ? sub.events.push(r.data[field]!) : sub.errors.push(r.errors)),
      error: (e) => sub.errors.push(e),
      complete: () => (sub.completed = true),
    },
  );
  await until(() => bus.subscriberCount > before || sub.errors.length > 0 || sub.completed, 5_000, 'subscription to open');
  return sub;
}

async function chat(secret: string, model = 'chat-default') {
  const { response } = await gw
    .client(secret)
    .chat.completions.create({ model, messages: [{ role: 'user', content: 'hello' }] })
    .withResponse();
  return { requestId: response.headers.get('x-request-id')!, receiptId: response.headers.get('x-tollgate-receipt-id')! };
}

/** Waits for a websocket close and returns its code. */
function closeCode(ws: WebSocket): Promise<{ code: number; at: number }> {
  return new Promise((resolve) => ws.on('close', (code) => resolve({ code, at: Date.now() })));
}

beforeAll(async () => {
  gw = await startTestGateway();
  bus = gw.started.runtime.app.bus;
  wsUrl = `${gw.url.replace(/^http/, 'ws')}/graphql`;
  teamA = await gw.createKey('live-a');
  teamB = await gw.createKey('live-b');
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.dispose()));
  await gw?.close();
});

describe('routingDecisions over graphql-ws', () => {
  it('delivers every ATTEMPT and SUCCESS of every request, in order, with the receipt id of the response', async () => {
    const sub = await subscribe<RoutingDecision & { droppedBefore: number }>(
      wsClient(gw.adminToken),
      `subscription { routingDecisions { ${DECISION_FIELDS} } }`,
      'routingDecisions',
    );
    const N = 60;
    const sent: Array<{ requestId: string; receiptId: string }> = [];
    // 6 concurrent clients, so decisions of different requests interleave.
    await Promise.all(
      Array.from({ length: 6 }, async () => {
        for (let i = 0; i < N / 6; i++) sent.push(await chat(teamA.secret));
      }),
    );
    await until(() => sent.every((s) => sub.events.some((e) => e.requestId === s.requestId && e.outcome === 'SUCCESS')), 10_000, 'all decisions');
    expect(sub.errors).toEqual([]);
    expect(new Set(sent.map((s) => s.requestId)).size).toBe(N);
    for (const s of sent) {
      const mine = sub.events.filter((e) => e.requestId === s.requestId);
      expect(mine.map((e) => e.outcome)).toEqual(['ATTEMPT', 'SUCCESS']);
      for (const e of mine) {
        expect(e.receiptId).toBe(s.receiptId);
        expect(e.teamId).toBe(teamA.teamId);
        expect(e.apiKeyId).toBe(teamA.id);
        expect(e.route).toBe('chat-default');
        expect(e.provider).toBe('sim');
        expect(e.model).toBe('sim-large');
        expect(e.attempt).toBe(1);
        expect(e.droppedBefore).toBe(0);
        expect(e.candidates).toEqual(
          [{ provider: 'sim', model: 'sim-large', state: 'CLOSED', ewmaLatencyMs: expect.anything() }].map((c) => ({
            ...c,
            ewmaLatencyMs: e.candidates[0]!.ewmaLatencyMs,
          })),
        );
        expect(Number.isNaN(Date.parse(e.at))).toBe(false);
      }
      expect(mine[1]!.latencyMs).toBeGreaterThanOrEqual(0);
    }
    // The stream as a whole never goes backwards in time.
    const times = sub.events.map((e) => Date.parse(e.at));
    expect(times).toEqual([...times].sort((x, y) => x - y));
    sub.stop();
    await until(() => bus.subscriberCount === 0, 2_000, 'unsubscribe to reach the server');
    expect(bus.decisions.hasListeners).toBe(false);
  });

  it('filters by route, model and outcome', async () => {
    const client = wsClient(gw.adminToken);
    const q = 'subscription($f: DecisionFilter) { routingDecisions(filter: $f) { requestId route model provider outcome } }';
    type D = Pick<RoutingDecision, 'requestId' | 'route' | 'model' | 'provider' | 'outcome'>;
    const byRoute = await subscribe<D>(client, q, 'routingDecisions', { f: { routes: ['failover'] } });
    const byModel = await subscribe<D>(client, q, 'routingDecisions', { f: { models: ['sim-large'] } });
    const byOutcome = await subscribe<D>(client, q, 'routingDecisions', { f: { outcomes: ['FAILOVER'] } });
    const byProvider = await subscribe<D>(client, q, 'routingDecisions', { f: { providers: ['sim-b'], outcomes: ['SUCCESS'] } });
    const all = await subscribe<D>(client, q, 'routingDecisions');

    gw.sim.behave('primary', { status: 500, times: 1 });
    const failover = await chat(teamA.secret, 'failover');
    const plain = await chat(teamA.secret, 'chat-default');
    await until(() => all.events.filter((e) => e.outcome === 'SUCCESS').length >= 2, 5_000, 'both requests');
    await sleep(50);

    expect(all.events.filter((e) => e.requestId === failover.requestId).map((e) => `${e.outcome}:${e.provider}/${e.model}`)).toEqual([
      'ATTEMPT:sim/primary',
      'FAILOVER:sim/primary',
      'ATTEMPT:sim-b/backup',
      'SUCCESS:sim-b/backup',
    ]);
    expect(byRoute.events.length).toBe(4);
    expect(byRoute.events.every((e) => e.route === 'failover' && e.requestId === failover.requestId)).toBe(true);
    expect(byModel.events.map((e) => e.outcome)).toEqual(['ATTEMPT', 'SUCCESS']);
    expect(byModel.events.every((e) => e.model === 'sim-large' && e.requestId === plain.requestId)).toBe(true);
    expect(byOutcome.events.map((e) => [e.requestId, e.outcome])).toEqual([[failover.requestId, 'FAILOVER']]);
    expect(byProvider.events.map((e) => [e.requestId, e.provider, e.outcome])).toEqual([[failover.requestId, 'sim-b', 'SUCCESS']]);
    for (const s of [byRoute, byModel, byOutcome, byProvider, all]) s.stop();
  });

  it('gives a team-bound token its own team only, whatever its filter says (decisions and budget events)', async () => {
    const store = gw.started.runtime.adminStore;
    const bound = await store.teams.createAccessToken({ name: 'live-a-analyst', role: 'ANALYST', teamId: teamA.teamId });
    const client = wsClient(bound.secret);
    const q = 'subscription($f: DecisionFilter) { routingDecisions(filter: $f) { requestId teamId outcome } }';
    type D = Pick<RoutingDecision, 'requestId' | 'teamId' | 'outcome'>;
    const noFilter = await subscribe<D>(client, q, 'routingDecisions');
    const askOther = await subscribe<D>(client, q, 'routingDecisions', { f: { teamIds: [teamB.teamId] } });
    const admin = await subscribe<D>(wsClient(gw.adminToken), q, 'routingDecisions', { f: { teamIds: [teamB.teamId] } });
    // The same operation text and variables as `noFilter`: websocket subscriptions that match
    // share one execution (src/live/fanout.ts), but never across principals that see different things.
    const adminSameQuery = await subscribe<D>(wsClient(gw.adminToken), q, 'routingDecisions');

    const a = await chat(teamA.secret);
    const b = await chat(teamB.secret);
    await until(() => admin.events.some((e) => e.requestId === b.requestId && e.outcome === 'SUCCESS'), 5_000, 'team b decision');
    await until(() => noFilter.events.some((e) => e.requestId === a.requestId && e.outcome === 'SUCCESS'), 5_000, 'team a decision');
    await until(() => askOther.events.some((e) => e.requestId === a.requestId && e.outcome === 'SUCCESS'), 5_000, 'forced team a decision');
    await sleep(50);
    expect(noFilter.events.every((e) => e.teamId === teamA.teamId)).toBe(true);
    expect(askOther.events.every((e) => e.teamId === teamA.teamId)).toBe(true);
    expect(admin.events.every((e) => e.teamId === teamB.teamId)).toBe(true);
    expect(noFilter.events.some((e) => e.requestId === b.requestId)).toBe(false);
    await until(() => adminSameQuery.events.some((e) => e.requestId === b.requestId && e.outcome === 'SUCCESS'), 5_000, 'admin sees team b');
    expect(adminSameQuery.events.some((e) => e.requestId === a.requestId)).toBe(true);

    // budgetEvents: the same forced filter.
    const bq = 'subscription($t: ID) { budgetEvents(teamId: $t) { teamId budgetId kind spentUsd limitUsd at droppedBefore } }';
    type B = Pick<BudgetEvent, 'teamId' | 'budgetId' | 'kind'>;
    const bBound = await subscribe<B>(client, bq, 'budgetEvents', { t: teamB.teamId });
    const bAdminAll = await subscribe<B>(wsClient(gw.adminToken), bq, 'budgetEvents');
    const bAdminB = await subscribe<B>(wsClient(gw.adminToken), bq, 'budgetEvents', { t: teamB.teamId });
    const ev = (teamId: string, budgetId: string): BudgetEvent => ({
      teamId,
      budgetId,
      kind: 'THRESHOLD',
      scope: 'TEAM',
      apiKeyId: null,
      feature: null,
      period: 'DAY',
      action: 'ALERT',
      spentUsd: 8,
      limitUsd: 10,
      thresholdPct: 80,
      requestId: null,
      at: new Date().toISOString(),
    });
    bus.budgets.publish(ev(teamB.teamId, 'budget-b'));
    bus.budgets.publish(ev(teamA.teamId, 'budget-a'));
    await until(() => bAdminAll.events.length === 2 && bBound.events.length >= 1 && bAdminB.events.length >= 1, 5_000, 'budget events');
    await sleep(50);
    expect(bBound.events.map((e) => e.budgetId)).toEqual(['budget-a']);
    expect(bAdminB.events.map((e) => e.budgetId)).toEqual(['budget-b']);
    expect(bAdminAll.events.map((e) => e.budgetId)).toEqual(['budget-b', 'budget-a']);
    for (const s of [noFilter, askOther, admin, adminSameQuery, bBound, bAdminAll, bAdminB]) s.stop();
  });

  it('closes with 4408 when connection_init does not come within 3 s', async () => {
    const ws = new WebSocket(wsUrl, 'graphql-transport-ws');
    const opened = await new Promise<number>((resolve, reject) => {
      ws.once('open', () => resolve(Date.now()));
      ws.once('error', reject);
    });
    const closed = await closeCode(ws);
    expect(closed.code).toBe(4408);
    expect(closed.at - opened).toBeGreaterThanOrEqual(2_900);
    expect(closed.at - opened).toBeLessThan(4_500);
  });

  it('closes with 4403 on a bad token and on a gateway API key used as a token', async () => {
    for (const token of ['not-a-token', 'tga-0000000000000000000000000000', teamA.secret]) {
      const ws = new WebSocket(wsUrl, 'graphql-transport-ws');
      const closed = closeCode(ws);
      await new Promise((resolve) => ws.once('open', resolve));
      ws.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${token}` } }));
      expect((await closed).code).toBe(4403);
    }
    // Same through the official client.
    const codes: number[] = [];
    const client = wsClient(teamA.secret, { lazy: false, on: { closed: (e) => codes.push((e as { code: number }).code) }, onNonLazyError: () => undefined });
    await until(() => codes.length > 0, 5_000, 'close');
    expect(codes[0]).toBe(4403);
    void client;
  });
});

describe('routingDecisions over SSE (GraphQL over HTTP)', () => {
  async function sse(token: string | null, query: string, signal: AbortSignal) {
    return fetch(`${gw.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify({ query }),
      signal,
    });
  }

  it('streams decisions to the admin token', async () => {
    const ac = new AbortController();
    const before = bus.subscriberCount;
    const res = await sse(gw.adminToken, 'subscription { routingDecisions(filter: { outcomes: [SUCCESS] }) { requestId receiptId outcome } }', ac.signal);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    const events: Array<{ requestId: string; receiptId: string; outcome: string }> = [];
    const reading = (async () => {
      const decoder = new TextDecoder();
      let buf = '';
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buf += decoder.decode(chunk, { stream: true });
        let i: number;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const data = block.split('\n').find((l) => l.startsWith('data:'));
          if (data && block.includes('event: next')) events.push(JSON.parse(data.slice(5)).data.routingDecisions);
        }
      }
    })().catch(() => undefined);
    await until(() => bus.subscriberCount > before, 5_000, 'SSE subscription');
    const sent = [await chat(teamA.secret), await chat(teamB.secret)];
    await until(() => events.length >= 2, 5_000, 'SSE events');
    expect(events).toEqual(sent.map((s) => ({ ...s, outcome: 'SUCCESS' })));
    ac.abort();
    await reading;
    await until(() => bus.subscriberCount === before, 5_000, 'SSE subscription to end');
  });

  it('refuses a subscription without a valid token', async () => {
    const ac = new AbortController();
    const res = await sse(teamA.secret, 'subscription { routingDecisions { requestId } }', ac.signal);
    const text = await res.text();
    // One error result, no event, stream completed, nothing left open on the bus. (The error
    // code itself is UNAUTHENTICATED from scope-auth, but yoga currently masks it: see report.)
    const payloads = text
      .split('\n')
      .filter((l) => l.startsWith('data: {'))
      .map((l) => JSON.parse(l.slice(6)));
    expect(payloads).toHaveLength(1);
    expect(payloads[0].errors).toHaveLength(1);
    expect(payloads[0].data ?? null).toBeNull();
    expect(text).toMatch(/event: complete/);
    expect(bus.subscriberCount).toBe(0);
  });
});

describe('slow subscribers', () => {
  it('drop (oldest first, counted) for a subscriber that stops reading, while a fast one gets everything and the proxy keeps answering', async () => {
    const filter = '(filter: { requestedModels: ["synthetic-flood"] })';
    // Fast: the official client, light selection.
    const fast = await subscribe<{ requestId: string; droppedBefore: number }>(
      wsClient(gw.adminToken),
      `subscription { routingDecisions${filter} { requestId droppedBefore } }`,
      'routingDecisions',
    );
    // Slow: a raw graphql-transport-ws client that stops reading its socket after subscribing.
    const slowWs = new WebSocket(wsUrl, 'graphql-transport-ws');
    const slowMessages: Array<{ requestId: string; droppedBefore: number }> = [];
    slowWs.on('message', (raw) => {
      const m = JSON.parse(String(raw));
      if (m.type === 'next') slowMessages.push(m.payload.data.routingDecisions);
    });
    await new Promise((resolve) => slowWs.once('open', resolve));
    const acked = new Promise((resolve) => slowWs.on('message', (raw) => JSON.parse(String(raw)).type === 'connection_ack' && resolve(null)));
    slowWs.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${gw.adminToken}` } }));
    await acked;
    const before = bus.subscriberCount;
    slowWs.send(JSON.stringify({ id: 'slow', type: 'subscribe', payload: { query: `subscription { routingDecisions${filter} { ${DECISION_FIELDS} } }` } }));
    await until(() => bus.subscriberCount > before, 5_000, 'slow subscription');
    slowWs.pause();

    // Real traffic through the proxy during the flood.
    let flooding = true;
    const proxyLatencies: number[] = [];
    const proxyErrors: unknown[] = [];
    const traffic = (async () => {
      while (flooding) {
        const t0 = performance.now();
        try {
          await chat(teamA.secret);
          proxyLatencies.push(performance.now() - t0);
        } catch (err) {
          proxyErrors.push(err);
        }
      }
    })();

    // Synthetic decisions (~4 kB each for the slow one's full selection), ≤ 4k/s, until the slow
    // subscriber has dropped some (kernel socket buffers absorb a few MB first).
    const startDropped = bus.droppedTotal;
    const template: RoutingDecision = {
      requestId: '',
      receiptId: null,
      at: '',
      teamId: teamA.teamId,
      apiKeyId: teamA.id,
      feature: 'flood',
      requestedModel: 'synthetic-flood',
      route: 'chat-default',
      strategy: 'PRIORITY',
      attempt: 1,
      provider: 'sim',
      model: 'sim-large',
      outcome: 'SUCCESS',
      reason: null,
      latencyMs: 1,
      candidates: Array.from({ length: 40 }, (_, i) => ({
        provider: `provider-${i}`,
        model: `model-with-a-long-name-${i}`,
        state: 'closed' as const,
        ewmaLatencyMs: 12.5,
      })),
    };
    let published = 0;
    const slowStats = () => bus.subscriberStats().find((s) => s.dropped > 0);
    while ((bus.droppedTotal === startDropped || published < 2_000) && published < 300_000) {
      for (let i = 0; i < 20; i++) bus.decisions.publish({ ...template, requestId: `flood-${published++}`, at: new Date().toISOString() });
      await sleep(5);
    }
    // A little more after the first drop, so drops are not just at the edge.
    for (let k = 0; k < 50; k++) {
      for (let i = 0; i < 20; i++) bus.decisions.publish({ ...template, requestId: `flood-${published++}`, at: new Date().toISOString() });
      await sleep(5);
    }
    flooding = false;
    await traffic;
    const dropped = bus.droppedTotal - startDropped;
    expect(dropped).toBeGreaterThan(0);
    expect(slowStats()?.dropped).toBe(dropped); // all of them were the slow subscriber's

    // The fast subscriber got every event, in order, with nothing dropped.
    await until(() => fast.events.length === published, 20_000, `fast subscriber to get all ${published}`);
    expect(fast.events.map((e) => e.requestId)).toEqual(Array.from({ length: published }, (_, i) => `flood-${i}`));
    expect(fast.events.every((e) => e.droppedBefore === 0)).toBe(true);

    // The proxy kept answering.
    expect(proxyErrors).toEqual([]);
    expect(proxyLatencies.length).toBeGreaterThan(5);

    // The slow one reads again: what it got plus what it was told it missed adds up, and the
    // gap is at the front of its queue (oldest dropped).
    slowWs.resume();
    await until(() => slowMessages.length + slowMessages.reduce((n, m) => n + m.droppedBefore, 0) === published, 20_000, 'slow subscriber to catch up');
    expect(slowMessages.reduce((n, m) => n + m.droppedBefore, 0)).toBe(dropped);
    const firstGap = slowMessages.findIndex((m) => m.droppedBefore > 0);
    expect(firstGap).toBeGreaterThan(0);
    const ids = slowMessages.map((m) => Number(m.requestId.slice('flood-'.length)));
    expect(ids).toEqual([...ids].sort((x, y) => x - y)); // still in order, just with a hole
    expect(ids.at(-1)).toBe(published - 1); // the newest were kept
    expect(ids[firstGap]! - ids[firstGap - 1]! - 1).toBe(slowMessages[firstGap]!.droppedBefore);

    fast.stop();
    slowWs.close();
    await until(() => bus.subscriberCount === 0, 5_000, 'subscriptions to end');
  }, 90_000);
});
