// GraphQL in production (NODE_ENV=production), here on its own port (TOLLGATE_ADMIN_PORT):
// no field suggestions, which would give away the schema that disabled introspection hides;
// no cross-origin access without TOLLGATE_CORS_ORIGINS (yoga's default reflected any origin
// with credentials); repeated credential headers refused on this port too.
import net from 'node:net';
import { createClient } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { gql } from '../support/graphql.js';
import { corsHeaders, openAIError, preflight, rawRequest } from '../support/http.js';

let gw: TestGateway;
let graphqlUrl: string;

async function freePort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

beforeAll(async () => {
  const adminPort = await freePort();
  gw = await startTestGateway({ env: { NODE_ENV: 'production', TOLLGATE_ADMIN_PORT: String(adminPort) } });
  graphqlUrl = `http://127.0.0.1:${adminPort}`;
});

afterAll(async () => {
  await gw?.close();
});

describe('field suggestions', () => {
  // Each would get a "Did you mean …?" from graphql-js; the answer keeps everything before it.
  const typos: Array<{ name: string; query: string; variables?: Record<string, unknown>; message: string }> = [
    { name: 'field', query: '{ teamz { id } }', message: 'Cannot query field "teamz" on type "Query".' },
    {
      name: 'argument',
      query: '{ usage(filtr: {from: "2026-01-01", to: "2026-01-02"}) { requests } }',
      message: 'Unknown argument "filtr" on field "Query.usage".',
    },
    {
      name: 'input field',
      query: '{ usage(filter: {fro: "2026-01-01", to: "2026-01-02"}) { requests } }',
      message: 'Field "fro" is not defined by type "AnalyticsFilter".',
    },
    { name: 'type', query: 'query($f: AnalyticsFiltr!) { usage(filter: $f) { requests } }', message: 'Unknown type "AnalyticsFiltr".' },
    {
      name: 'enum literal',
      query: '{ usage(filter: {from: "2026-01-01", to: "2026-01-02"}, groupBy: [MODL]) { requests } }',
      message: 'Value "MODL" does not exist in "Dimension" enum.',
    },
    {
      name: 'enum variable',
      query: 'query($g: [Dimension!]) { usage(filter: {from: "2026-01-01", to: "2026-01-02"}, groupBy: $g) { requests } }',
      variables: { g: ['MODL'] },
      message: 'Variable "$g" got invalid value "MODL" at "g[0]"; Value "MODL" does not exist in "Dimension" enum.',
    },
    {
      name: 'input field in a variable',
      query: 'query($f: AnalyticsFilter!) { usage(filter: $f) { requests } }',
      variables: { f: { from: '2026-01-01', to: '2026-01-02', fro: '2026-01-01' } },
      message:
        'Variable "$f" got invalid value { from: "2026-01-01", to: "2026-01-02", fro: "2026-01-01" }; Field "fro" is not defined by type "AnalyticsFilter".',
    },
  ];

  it.each(typos)('none for a mistyped $name', async ({ query, variables, message }) => {
    const r = await gql(graphqlUrl, gw.adminToken, query, variables);
    expect(r.errors?.map((e) => e.message)).toContain(message);
    for (const e of r.errors!) expect(e.message).not.toMatch(/Did you mean/);
  });

  // Analytics queries run compiled (src/graphql/jit.ts): a resolver's own error keeps its
  // message and code through the production masking, as with yoga's executor.
  it('a compiled analytics query keeps its resolver error', async () => {
    const r = await gql(graphqlUrl, gw.adminToken, '{ usage(filter: {from: "2026-01-02", to: "2026-01-01"}) { requests } }');
    expect(r.status).toBe(200);
    expect(r.errors?.map((e) => [e.message, e.extensions?.code])).toEqual([['filter.to must not be before filter.from.', 'BAD_USER_INPUT']]);
    expect(r.errors?.[0]?.path).toEqual(['usage']);
  });

  it('none over websockets', async () => {
    const client = createClient({
      url: `${graphqlUrl.replace('http', 'ws')}/graphql`,
      webSocketImpl: WebSocket,
      connectionParams: { authorization: `Bearer ${gw.adminToken}` },
      retryAttempts: 0,
    });
    try {
      const errors = await new Promise<ReadonlyArray<{ message: string }>>((resolve, reject) => {
        client.subscribe(
          { query: 'subscription { routingDecisionz { requestId } }' },
          { next: () => {}, error: (e) => resolve(e as ReadonlyArray<{ message: string }>), complete: () => reject(new Error('completed')) },
        );
      });
      expect(errors.map((e) => e.message)).toEqual(['Cannot query field "routingDecisionz" on type "Subscription".']);
    } finally {
      await client.dispose();
    }
  });
});

describe('CORS without TOLLGATE_CORS_ORIGINS', () => {
  it('gives no origin any CORS header, on the GraphQL port or the proxy port', async () => {
    for (const [url, path] of [
      [graphqlUrl, '/graphql'],
      [gw.url, '/v1/chat/completions'],
      [gw.url, '/v1/models'],
    ] as const) {
      expect(corsHeaders(await preflight(url, path, 'https://app.example.com')), `${url}${path}`).toEqual({});
      const get = await fetch(`${url}${path}`, { headers: { origin: 'https://evil.example', authorization: `Bearer ${gw.adminToken}` } });
      expect(corsHeaders(get), `${url}${path}`).toEqual({});
    }
  });
});

describe('credential headers sent twice', () => {
  it('are refused on the GraphQL port too', async () => {
    const answer = await rawRequest(
      graphqlUrl,
      ['POST /graphql HTTP/1.1', 'content-type: application/json', `authorization: Bearer ${gw.adminToken}`, 'Authorization: Bearer tga-someone-else'],
      '{"query":"{ viewer { role } }"}',
    );
    expect(answer.status).toBe(400);
    expect(openAIError(answer.body)).toMatchObject({ type: 'invalid_request_error', param: 'authorization' });
    const once = await rawRequest(
      graphqlUrl,
      ['POST /graphql HTTP/1.1', 'content-type: application/json', `authorization: Bearer ${gw.adminToken}`],
      '{"query":"{ viewer { role } }"}',
    );
    expect(once.status).toBe(200);
  });
});

describe('the admin port', () => {
  it('serves the receipt keys its console verifies receipts with, the same set as the proxy port', async () => {
    const admin = await fetch(`${graphqlUrl}/.well-known/tollgate/receipt-keys`);
    expect(admin.status).toBe(200);
    const keys = await admin.json();
    expect(keys.keys.length).toBeGreaterThan(0);
    expect(keys).toEqual(await (await fetch(`${gw.url}/.well-known/tollgate/receipt-keys`)).json());
    // Nothing else of the proxy port's.
    expect((await fetch(`${graphqlUrl}/v1/models`, { headers: { authorization: `Bearer ${gw.adminToken}` } })).status).toBe(404);
  });
});
