// GraphQL hardening, on the real schema without stores: depth, aliases, cost, batch size,
// introspection in production, persisted-operations mode, GET queries.
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parse } from 'graphql';
import { type Client, createClient } from 'graphql-ws';
import { describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { TokenVerifier } from '../../src/gateway/tokens.js';
import type { GraphQLServices } from '../../src/graphql/context.js';
import { operationCost } from '../../src/graphql/cost.js';
import { createGraphQL, type GraphQLOptions } from '../../src/graphql/yoga.js';
import { LiveBus } from '../../src/live/events.js';
import { CidrList } from '../../src/net/ip.js';
import { AdminStore } from '../../src/store/admin-store.js';
import { generateAccessTokenSecret } from '../../src/store/credentials.js';

const ADMIN = 'admin-token-for-tests';
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** One access token the tests may revoke or let expire. */
const ANALYST = { secret: generateAccessTokenSecret(), revokedAt: null as Date | null, expiresAt: null as Date | null };

function server(options: Partial<GraphQLOptions> = {}, bus = new LiveBus()) {
  const analystRecord = () => ({
    id: '11111111-1111-4111-8111-111111111111',
    name: 'dashboard',
    role: 'ANALYST' as const,
    teamId: null,
    allowedCidrs: [],
    expiresAt: ANALYST.expiresAt,
    revokedAt: ANALYST.revokedAt,
  });
  const services = {
    bus,
    tokens: new TokenVerifier(
      ADMIN,
      {
        findAccessTokenBySecretHash: async (hash: string) => (hash === sha256(ANALYST.secret) ? analystRecord() : null),
        teamIdByName: async () => null,
      },
      { cacheMs: 0, trustedProxies: CidrList.parse([]), onError: () => undefined },
    ),
    // Never reached by these operations; each request's context names its actor on it.
    admin: new AdminStore(undefined as never, undefined as never),
    jwks: () => ({ keys: [] }),
    findReceipt: async () => null,
    configChanged: async () => undefined,
    receiptsTable: 'receipts',
    analyticsTimeoutMs: 1000,
    analyticsMaxRows: 100_000,
    analyticsMaxMemoryBytes: 0,
  } as unknown as GraphQLServices;
  return createGraphQL(services, { production: false, ...options });
}

async function post(g: ReturnType<typeof server>, body: unknown, token: string | null = ADMIN) {
  const res = await g.yoga.fetch('http://localhost/graphql', {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as any };
}

const nested = (depth: number) => {
  let q = 'name';
  for (let i = 0; i < depth; i++) q = i % 2 === 0 ? `apiKeys { ${q} }` : `team { ${q} }`;
  return `{ teams { ${q} } }`;
};

describe('GraphQL limits', () => {
  it('answers viewer for the admin token and UNAUTHENTICATED without one', async () => {
    const g = server();
    const ok = await post(g, { query: '{ viewer { kind role teamId } }' });
    expect(ok.body.data.viewer).toEqual({ kind: 'admin', role: 'ADMIN', teamId: null });
    const anon = await post(g, { query: '{ viewer { kind } }' }, null);
    expect(anon.body.errors[0].extensions.code).toBe('UNAUTHENTICATED');
    const wrong = await post(g, { query: '{ viewer { kind } }' }, 'tg-not-a-graphql-token');
    expect(wrong.body.errors[0].extensions.code).toBe('UNAUTHENTICATED');
  });

  it('refuses queries deeper than the limit before executing them', async () => {
    const g = server();
    const deep = await post(g, { query: nested(14) });
    expect(deep.body.errors?.[0]?.message).toMatch(/depth/i);
    expect(deep.body.data ?? null).toBeNull();
  });

  it('refuses a list relation selected inside itself, however it is spelled', async () => {
    const g = server();
    const refused = /'Team\.apiKeys' is selected inside itself/;
    // Within the depth limit and at a cost of ~124: each loop multiplied the answer by the keys a team has.
    const loop = await post(g, { query: nested(7) });
    expect(loop.body.errors?.[0]?.message).toMatch(refused);
    expect(loop.body.data ?? null).toBeNull();
    // Through a fragment, an inline fragment and an alias.
    const spelled = await post(g, {
      query: 'fragment K on ApiKey { owner: team { ... on Team { keys: apiKeys { id } } } } { teams { apiKeys { ...K } } }',
    });
    expect(spelled.body.errors?.[0]?.message).toMatch(refused);
    // Two lists side by side, or one relation followed once each way, are not loops.
    for (const query of [
      '{ teams { apiKeys { id } } accessTokens { team { apiKeys { id } } } }',
      '{ teams { apiKeys { team { name } } } }',
      '{ apiKeys { team { apiKeys { id } } } }',
    ]) {
      const fine = await post(g, { query });
      expect(JSON.stringify(fine.body), query).not.toMatch(/inside itself|GRAPHQL_VALIDATION_FAILED/);
    }
  });

  it('refuses too many aliases', async () => {
    const g = server();
    const fields = Array.from({ length: 20 }, (_, i) => `a${i}: viewer { kind }`).join(' ');
    const res = await post(g, { query: `{ ${fields} }` });
    expect(res.body.errors?.[0]?.message).toMatch(/alias/i);
  });

  it('bounds batch size', async () => {
    const g = server();
    const batch = Array.from({ length: 11 }, () => ({ query: '{ viewer { kind } }' }));
    const res = await post(g, batch);
    expect(res.status).toBeGreaterThanOrEqual(400);
    const small = await post(g, batch.slice(0, 3));
    expect(Array.isArray(small.body)).toBe(true);
    expect(small.body).toHaveLength(3);
  });

  it('serves GET queries and disables introspection in production', async () => {
    const dev = server();
    const get = await dev.yoga.fetch(`http://localhost/graphql?query=${encodeURIComponent('{ viewer { kind } }')}`, {
      headers: { authorization: `Bearer ${ADMIN}`, accept: 'application/json' },
    });
    expect(((await get.json()) as any).data.viewer.kind).toBe('admin');
    const intro = '{ __schema { queryType { name } } }';
    expect((await post(dev, { query: intro })).body.data.__schema.queryType.name).toBe('Query');
    const prod = server({ production: true });
    const res = await post(prod, { query: intro });
    expect(res.body.errors?.length).toBeGreaterThan(0);
    expect(res.body.data ?? null).toBeNull();
  });

  it('counts a page size given as a variable in the cost limit, as a literal one', async () => {
    const receipts = (first: string) =>
      `receipts(filter: { from: "2000-01-01T00:00:00Z", to: "2100-01-01T00:00:00Z" }, first: ${first}) { edges { node { receiptId model costUsd attempts { provider model status } } } }`;
    const g = server();
    const aliased = (first: string) => Array.from({ length: 15 }, (_, i) => `r${i}: ${receipts(first)}`).join(' ');
    const literal = await post(g, { query: `{ ${aliased('500')} }` });
    expect(literal.body.errors[0].message).toMatch(/Cost limit of 100000 exceeded/);
    const variable = await post(g, { query: `query($n: Int) { ${aliased('$n')} }`, variables: { n: 500 } });
    expect(variable.body.errors[0].message).toMatch(/Cost limit of 100000 exceeded, found 311718.75/);
    expect(variable.body.data ?? null).toBeNull();
    // A variable's declared default counts too.
    const byDefault = await post(g, { query: `query($n: Int = 500) { ${aliased('$n')} }` });
    expect(byDefault.body.errors[0].message).toMatch(/Cost limit of 100000 exceeded, found 311718.75/);
    // One full page through the same variable is not refused for its cost (it fails later here:
    // this server has no ClickHouse).
    const page = await post(g, { query: `query($n: Int) { ${receipts('$n')} }`, variables: { n: 500 } });
    expect(JSON.stringify(page.body)).not.toMatch(/Cost limit/);
  });

  it('counts a page whose size is not given (or null) at its default, not as one row', () => {
    const doc = (args: string) =>
      parse(`query($n: Int) { receipts(filter: { from: "2000-01-01", to: "2100-01-01" }${args}) { edges { node { receiptId } } } }`);
    const pages = { receipts: 50 };
    const one = operationCost(doc(', first: 1'), null, {}, pages);
    expect(operationCost(doc(''), null, {}, pages)).toBe(50 * one);
    expect(operationCost(doc(', first: $n'), null, { n: null }, pages)).toBe(50 * one);
    expect(operationCost(doc(', first: $n'), null, { n: 7 }, pages)).toBe(7 * one);
    expect(operationCost(doc(''), null, {}, {})).toBe(one); // a field with no default page: one row
  });

  it('runs only registered operations in persisted-operations mode', async () => {
    const query = '{ viewer { kind } }';
    const hash = createHash('sha256').update(query).digest('hex');
    const g = server({ persistedOperations: { [hash]: query } });
    const known = await post(g, { extensions: { persistedQuery: { version: 1, sha256Hash: hash } } });
    expect(known.body.data.viewer.kind).toBe('admin');
    const arbitrary = await post(g, { query });
    expect(arbitrary.body.errors?.length).toBeGreaterThan(0);
    const unknown = await post(g, { extensions: { persistedQuery: { version: 1, sha256Hash: 'f'.repeat(64) } } });
    expect(unknown.body.errors?.length).toBeGreaterThan(0);
  });
});

describe('GraphQL subscriptions over HTTP (server-sent events)', () => {
  /** Opens `subscription { budgetEvents … }` as SSE with `token`; resolves when the stream ends. */
  async function sse(g: ReturnType<typeof server>, token: string) {
    const res = await g.yoga.fetch('http://localhost/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: `Bearer ${token}` },
      body: JSON.stringify({ query: 'subscription { budgetEvents { budgetId } }' }),
    });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    let text = '';
    const ended = (async () => {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return text;
        text += new TextDecoder().decode(value);
      }
    })();
    return { ended, text: () => text };
  }
  const settled = (p: Promise<unknown>, ms: number) => Promise.race([p.then(() => true), new Promise((r) => setTimeout(() => r(false), ms))]);

  it('ends a stream whose token is revoked or expires, as a websocket is closed', async () => {
    const g = server({ limits: { wsReverifyMs: 50 } });
    try {
      for (const end of ['revoked', 'expired'] as const) {
        Object.assign(ANALYST, { revokedAt: null, expiresAt: null });
        const stream = await sse(g, ANALYST.secret);
        expect(await settled(stream.ended, 200)).toBe(false); // verified a few times, still open
        if (end === 'revoked') ANALYST.revokedAt = new Date();
        else ANALYST.expiresAt = new Date(Date.now() - 1);
        expect(await settled(stream.ended, 2000)).toBe(true);
        expect(stream.text()).toContain('event: complete');
        expect(g.httpSubscriptions.size).toBe(0);
      }
    } finally {
      Object.assign(ANALYST, { revokedAt: null, expiresAt: null });
    }
  });

  it('ends a stream whose client stopped reading (no event taken for sseStallMs); one that reads stays', async () => {
    const bus = new LiveBus();
    const g = server({ limits: { wsReverifyMs: 50, sseStallMs: 300 } }, bus);
    const open = (token: string) =>
      g.yoga.fetch('http://localhost/graphql', {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: `Bearer ${token}` },
        body: JSON.stringify({ query: 'subscription { budgetEvents { budgetId spentUsd } }' }),
      });
    const stalled = await open(ADMIN); // never read
    const reading = await sse(g, ADMIN);
    expect(stalled.status).toBe(200);
    expect(g.httpSubscriptions.size).toBe(2);
    const event = (i: number) => ({
      teamId: null,
      budgetId: `b-${i}`,
      kind: 'THRESHOLD' as const,
      scope: 'TEAM' as const,
      apiKeyId: null,
      feature: null,
      period: 'DAY' as const,
      action: 'ALERT' as const,
      spentUsd: i,
      limitUsd: 10,
      thresholdPct: 80,
      requestId: null,
      at: new Date().toISOString(),
    });
    const deadline = Date.now() + 5000;
    for (let i = 0; g.httpSubscriptions.size > 1 && Date.now() < deadline; i++) {
      bus.budgets.publish(event(i));
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(g.httpSubscriptions.size).toBe(1); // the stalled one ended, the reader goes on
    expect(await settled(reading.ended, 100)).toBe(false);
    expect(reading.text()).toContain('b-0');
    g.httpSubscriptions.endAll();
  });

  it('ends every stream at shutdown, so that the drain need not wait for them', async () => {
    const g = server();
    const streams = [await sse(g, ADMIN), await sse(g, ANALYST.secret)];
    expect(g.httpSubscriptions.size).toBe(2);
    g.httpSubscriptions.endAll();
    for (const s of streams) expect(await settled(s.ended, 2000)).toBe(true);
    expect(g.httpSubscriptions.size).toBe(0);
  });
});

describe('GraphQL over websockets', () => {
  /** The server on a loopback port with graphql-ws attached; a client with `token`. */
  async function listen(options: Partial<GraphQLOptions>, bus = new LiveBus()) {
    const g = server(options, bus);
    const http = createServer((req, res) => void g.handle(req, res));
    const ws = g.attachWebSocket(http);
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    const url = `ws://127.0.0.1:${(http.address() as AddressInfo).port}/graphql`;
    const clients: Client[] = [];
    const connect = (token: string) => {
      const closed: number[] = [];
      const client = createClient({
        url,
        webSocketImpl: WebSocket,
        connectionParams: { authorization: `Bearer ${token}` },
        retryAttempts: 0,
        on: { closed: (event) => closed.push((event as CloseEvent).code) },
      });
      clients.push(client);
      return { client, closed };
    };
    const close = async () => {
      for (const c of clients) await c.dispose();
      await ws.close();
      await new Promise((r) => http.close(r));
    };
    return { connect, close };
  }

  /** The first result (or error) of one operation. */
  function once(client: Client, payload: { query: string; extensions?: Record<string, unknown> }): Promise<any> {
    return new Promise((resolve) => {
      let result: unknown;
      client.subscribe(payload, { next: (v) => (result ??= v), error: (e) => resolve({ errors: e }), complete: () => resolve(result) });
    });
  }

  it('runs only registered operations in persisted-operations mode, as over HTTP', async () => {
    const query = '{ viewer { kind } }';
    const hash = sha256(query);
    const s = await listen({ persistedOperations: { [hash]: query } });
    try {
      const { client } = s.connect(ADMIN);
      expect((await once(client, { query: '', extensions: { persistedQuery: { version: 1, sha256Hash: hash } } })).data.viewer.kind).toBe('admin');
      const arbitrary = await once(client, { query: '{ viewer { kind actor } }' });
      expect(arbitrary.errors[0].extensions.code).toBe('CANNOT_SEND_PQ_ID_AND_BODY');
      const unknown = await once(client, { query: '', extensions: { persistedQuery: { version: 1, sha256Hash: '__proto__' } } });
      expect(unknown.errors[0].extensions.code).toBe('PERSISTED_QUERY_NOT_IN_LIST');
    } finally {
      await s.close();
    }
  });

  it('refuses a live subscription past TOLLGATE_LIVE_MAX_SUBSCRIBERS, a new group or a member joining one', async () => {
    const bus = new LiveBus();
    bus.maxSubscribers = 2;
    const s = await listen({}, bus);
    try {
      const { client } = s.connect(ADMIN);
      const open = (query: string) => {
        const got: { errors?: any; next: number } = { next: 0 };
        // Refused as a result with errors (a resolver's), or as an error message (graphql-ws's).
        client.subscribe(
          { query },
          { next: (v) => (v.errors ? (got.errors = v.errors) : got.next++), error: (e) => (got.errors = e), complete: () => undefined },
        );
        return got;
      };
      const same = 'subscription { budgetEvents { budgetId } }';
      const first = open(same);
      const second = open('subscription { budgetEvents { budgetId spentUsd } }');
      for (let i = 0; i < 100 && bus.subscriberCount < 2; i++) await new Promise((r) => setTimeout(r, 10));
      expect(bus.subscriberCount).toBe(2);
      const joining = open(same); // would share the first's group
      const another = open('subscription { budgetEvents { budgetId limitUsd } }'); // would start a group
      for (let i = 0; i < 100 && !(joining.errors && another.errors); i++) await new Promise((r) => setTimeout(r, 10));
      for (const refused of [joining, another]) expect(refused.errors?.[0]?.extensions?.code).toBe('TOO_MANY_SUBSCRIPTIONS');
      expect(bus.subscriberCount).toBe(2);
      expect(first.errors ?? second.errors).toBeUndefined();
    } finally {
      await s.close();
    }
  });

  it('closes a live subscription whose token is revoked or expires (4403)', async () => {
    const bus = new LiveBus();
    const s = await listen({ limits: { wsReverifyMs: 50 } }, bus);
    try {
      for (const end of ['revoked', 'expired'] as const) {
        Object.assign(ANALYST, { revokedAt: null, expiresAt: null });
        const { client, closed } = s.connect(ANALYST.secret);
        const events: unknown[] = [];
        const ended = new Promise((resolve) =>
          client.subscribe(
            { query: 'subscription { budgetEvents { budgetId } }' },
            { next: (v) => events.push(v), error: resolve, complete: () => resolve(null) },
          ),
        );
        await new Promise((r) => setTimeout(r, 150)); // connected and verified a few times
        expect(closed).toEqual([]);
        if (end === 'revoked') ANALYST.revokedAt = new Date();
        else ANALYST.expiresAt = new Date(Date.now() - 1);
        await ended;
        expect(closed).toEqual([4403]);
      }
    } finally {
      Object.assign(ANALYST, { revokedAt: null, expiresAt: null });
      await s.close();
    }
  });
});
