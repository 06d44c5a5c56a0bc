// graphql-ws resource bounds against a real Tollgate: operations per socket
// (TOLLGATE_WS_MAX_SUBSCRIPTIONS) and a socket's unsent bytes (TOLLGATE_WS_MAX_BUFFER_BYTES,
// default 4 MiB): a client that opens many subscriptions and stops reading is closed with 1008
// "slow consumer" while the server's memory for it stays bounded, and a client that reads on
// the same server loses nothing.
import v8 from 'node:v8';
import vm from 'node:vm';
import { type Client, createClient } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { LiveBus, RoutingDecision } from '../../src/live/events.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;
/** Heap in use after a full collection: what the server (in this process) really holds. */
const heapUsed = () => {
  gc();
  return process.memoryUsage().heapUsed;
};
const MAX_SUBSCRIPTIONS = 120;
const MAX_BUFFER = 4 * 1024 * 1024; // the default

let gw: TestGateway;
let bus: LiveBus;
let wsUrl: string;
const clients: Client[] = [];

beforeAll(async () => {
  gw = await startTestGateway({ env: { TOLLGATE_WS_MAX_SUBSCRIPTIONS: String(MAX_SUBSCRIPTIONS) } });
  bus = gw.started.runtime.app.bus;
  wsUrl = `${gw.url.replace(/^http/, 'ws')}/graphql`;
});
afterAll(async () => {
  await Promise.all(clients.map((c) => c.dispose()));
  await gw?.close();
});

/** A raw graphql-transport-ws connection, acknowledged, that records what it reads. */
async function rawSocket() {
  const ws = new WebSocket(wsUrl, 'graphql-transport-ws');
  const messages: Array<{ id?: string; type: string; payload?: any }> = [];
  ws.on('message', (raw) => messages.push(JSON.parse(String(raw))));
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: String(reason) })));
  await new Promise((resolve) => ws.once('open', resolve));
  ws.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${gw.adminToken}` } }));
  await until(() => messages.some((m) => m.type === 'connection_ack'), 'connection_ack');
  return { ws, messages, closed };
}

async function until(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${gw.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

const FIELDS = 'requestId droppedBefore route provider model outcome candidates { provider model state ewmaLatencyMs }';
/** Every subscription filters on a different feature list, so none shares another's queue or payloads. */
const subscription = (i: number) => `subscription { routingDecisions(filter: { features: ["flood", "other-${i}"] }) { ${FIELDS} } }`;

function decision(n: number): RoutingDecision {
  return {
    requestId: `flood-${n}`,
    receiptId: null,
    at: new Date().toISOString(),
    teamId: null,
    apiKeyId: null,
    feature: 'flood',
    requestedModel: 'synthetic',
    route: 'chat-default',
    strategy: 'PRIORITY',
    attempt: 1,
    provider: 'sim',
    model: 'sim-large',
    outcome: 'SUCCESS',
    reason: null,
    latencyMs: 1,
    candidates: Array.from({ length: 8 }, (_, i) => ({
      provider: `provider-${i}`,
      model: `model-with-a-long-name-${i}`,
      state: 'closed' as const,
      ewmaLatencyMs: 12.5,
    })),
  };
}

describe('operations per socket', () => {
  it(`gives operation ${MAX_SUBSCRIPTIONS + 1} on one socket a clear error and keeps the socket and the others`, async () => {
    const { ws, messages } = await rawSocket();
    const before = bus.subscriberCount;
    for (let i = 0; i < MAX_SUBSCRIPTIONS; i++) ws.send(JSON.stringify({ id: `s${i}`, type: 'subscribe', payload: { query: subscription(i) } }));
    await until(() => bus.subscriberCount === before + MAX_SUBSCRIPTIONS, 'subscriptions to open');
    ws.send(JSON.stringify({ id: 'one-too-many', type: 'subscribe', payload: { query: subscription(0) } }));
    await until(() => messages.some((m) => m.id === 'one-too-many'), 'an answer to one too many');
    const refused = messages.find((m) => m.id === 'one-too-many')!;
    expect(refused.type).toBe('error');
    expect(refused.payload[0]).toMatchObject({
      message: `Too many operations on this connection (at most ${MAX_SUBSCRIPTIONS}); complete one first.`,
      extensions: { code: 'TOO_MANY_SUBSCRIPTIONS' },
    });
    expect(ws.readyState).toBe(WebSocket.OPEN);
    expect(bus.subscriberCount).toBe(before + MAX_SUBSCRIPTIONS);

    // Completing one makes room; the open ones still deliver.
    ws.send(JSON.stringify({ id: 's0', type: 'complete' }));
    await until(() => bus.subscriberCount === before + MAX_SUBSCRIPTIONS - 1, 's0 to end');
    ws.send(JSON.stringify({ id: 'room-again', type: 'subscribe', payload: { query: subscription(0) } }));
    await until(() => bus.subscriberCount === before + MAX_SUBSCRIPTIONS, 'the new one to open');
    bus.decisions.publish(decision(0));
    await until(() => messages.filter((m) => m.type === 'next').length === MAX_SUBSCRIPTIONS, 'every open subscription to deliver');
    expect(new Set(messages.filter((m) => m.type === 'next').map((m) => m.id)).has('room-again')).toBe(true);
    ws.close();
    await until(() => bus.subscriberCount === before, 'subscriptions to end');
  });
});

describe("a filter too large to hold for a subscription's life", () => {
  it('is refused with BAD_USER_INPUT naming the list; the socket stays open', async () => {
    const { ws, messages } = await rawSocket();
    const before = bus.subscriberCount;
    const query = 'subscription($f: DecisionFilter) { routingDecisions(filter: $f) { requestId } }';
    const features = Array.from({ length: 101 }, (_, i) => `feature-${i}`);
    ws.send(JSON.stringify({ id: 'many', type: 'subscribe', payload: { query, variables: { f: { features } } } }));
    ws.send(JSON.stringify({ id: 'long', type: 'subscribe', payload: { query, variables: { f: { routes: ['r'.repeat(257)] } } } }));
    ws.send(JSON.stringify({ id: 'fine', type: 'subscribe', payload: { query, variables: { f: { features: features.slice(0, 100) } } } }));
    await until(() => ['many', 'long'].every((id) => messages.some((m) => m.id === id)), 'both refusals');
    // A subscription's own error: a `next` with errors, then `complete`.
    const refusal = (id: string) => messages.find((m) => m.id === id && m.type === 'next')?.payload.errors[0].extensions;
    expect(refusal('many')).toMatchObject({ code: 'BAD_USER_INPUT', field: 'filter.features' });
    expect(refusal('long')).toMatchObject({ code: 'BAD_USER_INPUT', field: 'filter.routes' });
    await until(() => bus.subscriberCount === before + 1, 'the bounded one to open');
    expect(ws.readyState).toBe(WebSocket.OPEN);
    ws.close();
    await until(() => bus.subscriberCount === before, 'it to end');
  });
});

describe('an operation id reused while its subscription is starting', () => {
  it('leaves no subscription behind: the socket is closed 4409 and every subscriber it opened ends', async () => {
    const { ws, closed } = await rawSocket();
    const before = bus.subscriberCount;
    // subscribe, complete, subscribe … with one id, in one TCP write: each subscribe is still
    // starting (its token check) when the next arrives.
    const raw = (ws as unknown as { _socket: { cork(): void; uncork(): void } })._socket;
    raw.cork();
    for (let i = 0; i < 2 * MAX_SUBSCRIPTIONS; i++) {
      ws.send(JSON.stringify({ id: 'same', type: 'subscribe', payload: { query: subscription(i) } }));
      if (i < 2 * MAX_SUBSCRIPTIONS - 1) ws.send(JSON.stringify({ id: 'same', type: 'complete' }));
    }
    raw.uncork();
    expect((await closed).code).toBe(4409);
    await until(() => bus.subscriberCount === before, 'every subscriber to end');
    await sleep(200); // anything still starting would have joined by now
    expect(bus.subscriberCount).toBe(before);
  });
});

describe('a socket that stops reading', () => {
  it('is closed with 1008 "slow consumer" once it holds TOLLGATE_WS_MAX_BUFFER_BYTES, its memory bounded, while a reading client loses nothing', async () => {
    const slowClosesBefore = await metric('tollgate_ws_slow_consumer_closes_total');
    // The reader: the official client, one subscription to the same events.
    const reader = createClient({ url: wsUrl, webSocketImpl: WebSocket, connectionParams: { authorization: `Bearer ${gw.adminToken}` }, retryAttempts: 0 });
    clients.push(reader);
    const read: Array<{ requestId: string; droppedBefore: number }> = [];
    const before = bus.subscriberCount;
    reader.subscribe<{ routingDecisions: { requestId: string; droppedBefore: number } }>(
      { query: `subscription { routingDecisions(filter: { features: ["flood"] }) { requestId droppedBefore } }` },
      { next: (r) => read.push(r.data!.routingDecisions), error: () => undefined, complete: () => undefined },
    );
    await until(() => bus.subscriberCount === before + 1, 'the reader to subscribe');

    // The stalled one: 100 subscriptions, then it stops reading its socket.
    const slow = await rawSocket();
    for (let i = 0; i < 100; i++) slow.ws.send(JSON.stringify({ id: `s${i}`, type: 'subscribe', payload: { query: subscription(i) } }));
    await until(() => bus.subscriberCount === before + 101, 'the stalled client to subscribe');
    slow.ws.pause();
    const heapBefore = heapUsed();

    // ~1.7 kB per event and subscription: 170 kB per event on the stalled socket. Loopback
    // kernel buffers take a few MB first; without the limit the server would hold up to
    // 1000 events per subscription (~170 MB). Until its subscriptions end with it:
    let published = 0;
    let peakBuffered = 0;
    while (bus.subscriberCount > before + 1 && published < 1_000) {
      for (let i = 0; i < 10; i++) bus.decisions.publish(decision(published++));
      peakBuffered = Math.max(peakBuffered, await metric('tollgate_ws_buffered_bytes'));
      await sleep(5);
    }
    const heapGrowth = heapUsed() - heapBefore;
    expect(await metric('tollgate_ws_slow_consumer_closes_total')).toBe(slowClosesBefore + 1);
    // Bounded: the limit, plus the event that crossed it; and nothing of it is held afterwards.
    expect(peakBuffered).toBeLessThan(MAX_BUFFER + 200 * 1024);
    expect(heapGrowth).toBeLessThan(16 * 1024 * 1024); // without the limit: ~45 MB after 1000 events
    // Its subscriptions ended with it (the reader's remains) and what they held is let go.
    expect(bus.subscriberCount).toBe(before + 1);
    expect(await metric('tollgate_ws_buffered_bytes')).toBeLessThan(MAX_BUFFER);

    // More events while it is gone: the reader gets those too.
    for (let i = 0; i < 100; i++) bus.decisions.publish(decision(published++));
    await until(() => read.length === published, `the reader to get all ${published}`);
    expect(read.map((d) => d.requestId)).toEqual(Array.from({ length: published }, (_, n) => `flood-${n}`));
    expect(read.every((d) => d.droppedBefore === 0)).toBe(true);

    // Reading again, the stalled client finds its close frame after what was already sent.
    slow.ws.resume();
    expect(await slow.closed).toEqual({ code: 1008, reason: 'slow consumer' });
  }, 60_000);

  it('bounds what it holds for a client that sends pings and reads nothing, before connection_init too', async () => {
    const slowClosesBefore = await metric('tollgate_ws_slow_consumer_closes_total');
    const ws = new WebSocket(wsUrl, 'graphql-transport-ws');
    await new Promise((resolve) => ws.once('open', resolve));
    ws.pause();
    // Each answered with a pong that repeats its ~0.9 MB payload: 18 MB unread without the limit.
    const ping = JSON.stringify({ type: 'ping', payload: { pad: 'x'.repeat(900 * 1024) } });
    let peakBuffered = 0;
    for (let i = 0; i < 20 && ws.readyState === WebSocket.OPEN; i++) {
      ws.send(ping);
      await sleep(20);
      peakBuffered = Math.max(peakBuffered, await metric('tollgate_ws_buffered_bytes'));
    }
    expect(await metric('tollgate_ws_slow_consumer_closes_total')).toBe(slowClosesBefore + 1);
    // The limit, plus the pong that crossed it (and the kernel's buffers, not counted here).
    expect(peakBuffered).toBeLessThan(MAX_BUFFER + 1024 * 1024);
    // A peer that never reads never completes the close handshake: it is cut within seconds
    // (ws's default waits 30 s), and what was held for it is let go.
    const cutBy = Date.now() + 10_000;
    while ((await metric('tollgate_ws_buffered_bytes')) > 1024 * 1024 && Date.now() < cutBy) await sleep(100);
    expect(await metric('tollgate_ws_buffered_bytes')).toBeLessThan(1024 * 1024);
    ws.terminate();
  }, 30_000);
});
