// SSO and network policy (issue 12 §6), end to end on a real gateway:
//   - OIDC bearer tokens from a local identity provider (a real JWKS over loopback, real
//     signatures) on GraphQL over HTTP, SSE and graphql-ws, and on GET /v1/receipts/{id};
//   - `allowedCidrs` on API keys and access tokens, with TOLLGATE_TRUSTED_PROXIES deciding
//     when X-Forwarded-For is believed. The "proxy" is this machine's 127.0.0.2: requests
//     from 127.0.0.1 are direct clients whose X-Forwarded-For proves nothing.
import OpenAI from 'openai';
import { Agent } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { gql, gqlOk } from '../support/graphql.js';
import { startIdentityProvider, type TestIdentityProvider, unsignedToken } from '../support/identity-provider.js';

let gw: TestGateway;
let idp: TestIdentityProvider;
let teamA: { id: string; name: string };
let teamB: { id: string; name: string };
/** A client connection from 127.0.0.2: the trusted proxy. */
const viaProxy = new Agent({ localAddress: '127.0.0.2' });

beforeAll(async () => {
  idp = await startIdentityProvider();
  gw = await startTestGateway({
    env: {
      TOLLGATE_TRUSTED_PROXIES: '127.0.0.2/32',
      TOLLGATE_OIDC_ISSUER: idp.issuer,
      TOLLGATE_OIDC_AUDIENCE: idp.audience,
    },
  });
  const store = gw.started.runtime.adminStore;
  teamA = await store.teams.createTeam('idp-team-a');
  teamB = await store.teams.createTeam('idp-team-b');
});

afterAll(async () => {
  await gw?.close();
  await idp?.close();
  await viaProxy.close();
});

function post(path: string, token: string, body: unknown, opts: { forwardedFor?: string; proxy?: boolean } = {}) {
  return fetch(`${gw.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, ...(opts.forwardedFor ? { 'x-forwarded-for': opts.forwardedFor } : {}) },
    body: JSON.stringify(body),
    ...(opts.proxy ? { dispatcher: viaProxy } : {}),
  } as RequestInit);
}

const chatBody = { model: 'chat-default', messages: [{ role: 'user' as const, content: 'hi' }], max_tokens: 4 };

async function receiptOf(id: string) {
  const res = await fetch(`${gw.url}/v1/receipts/${id}`, { headers: { authorization: `Bearer ${gw.adminToken}` } });
  expect(res.status).toBe(200);
  return (await res.json()) as Record<string, unknown>;
}

/** Receipts of one key in ClickHouse, once the count has settled. */
async function receiptCount(apiKeyId: string): Promise<number> {
  const q = 'query($f: AnalyticsFilter!) { receipts(filter: $f, first: 0) { totalCount } }';
  const f = { from: new Date(Date.now() - 3_600_000).toISOString(), to: new Date(Date.now() + 60_000).toISOString(), apiKeyIds: [apiKeyId] };
  let last = -1;
  for (let i = 0; i < 40; i++) {
    const n = (await gqlOk(gw.url, gw.adminToken, q, { f })).receipts.totalCount as number;
    if (n > 0 && n === last) return n;
    last = n;
    await new Promise((r) => setTimeout(r, 250));
  }
  return last;
}

describe('allowedCidrs on API keys', () => {
  it('a key used from outside its allowlist: 403 ip_not_allowed through the OpenAI SDK, with exactly one receipt', async () => {
    const key = await gw.createKey(teamA.name, { allowedCidrs: ['10.0.0.0/8'] });
    const err = await gw
      .client(key.secret)
      .chat.completions.create(chatBody)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    const e = err as InstanceType<typeof OpenAI.APIError>;
    expect(e.status).toBe(403);
    expect(e.type).toBe('permission_error');
    expect(e.code).toBe('ip_not_allowed');
    const receiptId = e.headers?.get('x-tollgate-receipt-id');
    expect(receiptId).toBeTruthy();
    const receipt = await receiptOf(receiptId!);
    expect(receipt).toMatchObject({ status: 'rejected', http_status: 403, error_code: 'ip_not_allowed', team_id: key.teamId, api_key_id: key.id });
    expect(await receiptCount(key.id)).toBe(1);

    // The same key's other endpoints refuse too.
    const models = await fetch(`${gw.baseURL}/models`, { headers: { authorization: `Bearer ${key.secret}` } });
    expect(models.status).toBe(403);
    expect((await models.json()).error.code).toBe('ip_not_allowed');
    const rest = await fetch(`${gw.url}/v1/receipts/${receiptId}`, { headers: { authorization: `Bearer ${key.secret}` } });
    expect(rest.status).toBe(403);
  });

  it('a key works from inside its allowlist (IPv4 loopback)', async () => {
    const key = await gw.createKey(teamA.name, { allowedCidrs: ['127.0.0.0/8'] });
    const answer = await gw.client(key.secret).chat.completions.create(chatBody);
    expect(answer.choices[0]?.message).toBeTruthy();
  });

  it('X-Forwarded-For is believed from a trusted proxy only (IPv4 and IPv6)', async () => {
    const v4 = await gw.createKey(teamA.name, { allowedCidrs: ['203.0.113.0/24'] });
    // Straight from a client: its own X-Forwarded-For proves nothing.
    expect((await post('/v1/chat/completions', v4.secret, chatBody, { forwardedFor: '203.0.113.7' })).status).toBe(403);
    // Through the trusted proxy: the address it vouches for.
    expect((await post('/v1/chat/completions', v4.secret, chatBody, { forwardedFor: '203.0.113.7', proxy: true })).status).toBe(200);
    expect((await post('/v1/chat/completions', v4.secret, chatBody, { forwardedFor: '198.51.100.1', proxy: true })).status).toBe(403);
    // A client that forges an entry in front of the one the proxy appended gains nothing.
    expect((await post('/v1/chat/completions', v4.secret, chatBody, { forwardedFor: '203.0.113.7, 198.51.100.1', proxy: true })).status).toBe(403);

    const v6 = await gw.createKey(teamA.name, { allowedCidrs: ['2001:db8::/32'] });
    expect((await post('/v1/chat/completions', v6.secret, chatBody, { forwardedFor: '2001:db8::42', proxy: true })).status).toBe(200);
    expect((await post('/v1/chat/completions', v6.secret, chatBody, { forwardedFor: '2001:db9::42', proxy: true })).status).toBe(403);
  });
});

describe('allowedCidrs on access tokens', () => {
  it('GraphQL from elsewhere is a FORBIDDEN error (HTTP and websocket); REST receipts are 403', async () => {
    const { secret } = await gw.started.runtime.adminStore.teams.createAccessToken({ name: 'office-only', role: 'ANALYST', allowedCidrs: ['10.0.0.0/8'] });
    const r = await gql(gw.url, secret, '{ viewer { role } }');
    expect(r.data?.viewer ?? null).toBeNull();
    expect(r.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');

    const fromOffice = await post('/graphql', secret, { query: '{ viewer { role } }' }, { forwardedFor: '10.1.2.3', proxy: true });
    expect((await fromOffice.json()).data.viewer.role).toBe('ANALYST');

    const rest = await fetch(`${gw.url}/v1/receipts/00000000-0000-4000-8000-000000000000`, { headers: { authorization: `Bearer ${secret}` } });
    expect(rest.status).toBe(403);
    expect((await rest.json()).error).toMatchObject({ type: 'permission_error', code: 'ip_not_allowed' });

    expect(await wsCloseCode(secret)).toBe(4403);
  });
});

/** Opens a graphql-ws socket with `token` and returns the close code, or 0 once acknowledged. */
async function wsCloseCode(token: string): Promise<number> {
  const ws = new WebSocket(`${gw.url.replace(/^http/, 'ws')}/graphql`, 'graphql-transport-ws');
  const outcome = new Promise<number>((resolve) => {
    ws.on('close', (code) => resolve(code));
    ws.on('message', (m) => {
      if (JSON.parse(String(m)).type === 'connection_ack') {
        resolve(0);
        ws.close();
      }
    });
  });
  await new Promise((resolve) => ws.once('open', resolve));
  ws.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${token}` } }));
  return outcome;
}

describe('OIDC bearer tokens', () => {
  const viewer = '{ viewer { kind role teamId tokenId actor actorName } }';
  const now = () => Math.floor(Date.now() / 1000);

  it('valid ADMIN and ANALYST tokens work on GraphQL over HTTP, team-scoped ones see their team only', async () => {
    const admin = await idp.sign({ sub: 'ada', email: 'ada@example.com', tollgate_role: 'ADMIN' });
    expect((await gqlOk(gw.url, admin, viewer)).viewer).toEqual({
      kind: 'oidc',
      role: 'ADMIN',
      teamId: null,
      tokenId: null,
      actor: 'oidc:ada',
      actorName: 'ada@example.com',
    });

    const analyst = await idp.sign({ sub: 'bob', tollgate_role: 'ANALYST' }, { key: 'ec' });
    expect((await gqlOk(gw.url, analyst, '{ teams { id } }')).teams.length).toBeGreaterThanOrEqual(2);
    const write = await gql(gw.url, analyst, 'mutation { createTeam(input: { name: "nope" }) { id } }');
    expect(write.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');

    const scoped = await idp.sign({ sub: 'carol', tollgate_role: 'ANALYST', tollgate_team: teamA.name }, { key: 'ed' });
    const seen = await gqlOk(gw.url, scoped, `${viewer.slice(0, -1)} teams { id } }`);
    expect(seen.viewer.teamId).toBe(teamA.id);
    expect(seen.teams).toEqual([{ id: teamA.id }]);
  });

  it('refuses expired, wrong-audience, wrong-issuer, unknown-kid, unsigned, foreign-key and role-less tokens', async () => {
    const tokens: Record<string, string> = {
      expired: await idp.sign({ tollgate_role: 'ADMIN', exp: now() - 120 }),
      'wrong audience': await idp.sign({ tollgate_role: 'ADMIN', aud: 'another-app' }),
      'wrong issuer': await idp.sign({ tollgate_role: 'ADMIN', iss: 'https://evil.example.com' }),
      'unknown kid': await idp.sign({ tollgate_role: 'ADMIN' }, { kid: 'nope' }),
      'alg none': unsignedToken({ sub: 'x', iss: idp.issuer, aud: idp.audience, exp: now() + 300, tollgate_role: 'ADMIN' }),
      'another key': await idp.sign({ tollgate_role: 'ADMIN' }, { key: 'rogue' }),
      'no role': await idp.sign({}),
      'unknown team': await idp.sign({ tollgate_role: 'ADMIN', tollgate_team: 'no-such-team' }),
    };
    for (const [what, token] of Object.entries(tokens)) {
      const r = await gql(gw.url, token, viewer);
      expect(r.errors?.[0]?.extensions?.code, what).toBe('UNAUTHENTICATED');
      const rest = await fetch(`${gw.url}/v1/receipts/00000000-0000-4000-8000-000000000000`, { headers: { authorization: `Bearer ${token}` } });
      expect(rest.status, what).toBe(401);
    }
  });

  it('work on graphql-ws (connection_init) and SSE', async () => {
    const admin = await idp.sign({ sub: 'ws-user', tollgate_role: 'ADMIN' });
    expect(await wsCloseCode(admin)).toBe(0);
    expect(await wsCloseCode(await idp.sign({ tollgate_role: 'ADMIN', aud: 'another-app' }))).toBe(4403);

    const ac = new AbortController();
    const res = await fetch(`${gw.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: `Bearer ${admin}` },
      body: JSON.stringify({ query: 'subscription { routingDecisions { requestId } }' }),
      signal: ac.signal,
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    const key = await gw.createKey(teamA.name);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    await gw.client(key.secret).chat.completions.create(chatBody);
    let text = '';
    while (!text.includes('event: next')) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    expect(text).toContain('routingDecisions');
    ac.abort();
  });

  it('GET /v1/receipts/{id}: an OIDC token reads receipts as its scope allows', async () => {
    const key = await gw.createKey(teamA.name);
    const { response } = await gw.client(key.secret).chat.completions.create(chatBody).withResponse();
    const id = response.headers.get('x-tollgate-receipt-id')!;
    const get = async (token: string) => fetch(`${gw.url}/v1/receipts/${id}`, { headers: { authorization: `Bearer ${token}` } });
    expect((await get(await idp.sign({ tollgate_role: 'ANALYST' }))).status).toBe(200);
    expect((await get(await idp.sign({ tollgate_role: 'ANALYST', tollgate_team: teamA.name }))).status).toBe(200);
    expect((await get(await idp.sign({ tollgate_role: 'ANALYST', tollgate_team: teamB.name }))).status).toBe(404);
    expect((await get(await idp.sign({ tollgate_role: 'ANALYST', exp: now() - 120 }))).status).toBe(401);
  });

  it('changes made with an OIDC token name its subject in the audit log', async () => {
    const admin = await idp.sign({ sub: 'dora', email: 'dora@example.com', tollgate_role: 'ADMIN' });
    const created = await gqlOk(gw.url, admin, 'mutation { createTeam(input: { name: "made-by-dora" }) { id } }');
    const log = await gqlOk(gw.url, gw.adminToken, '{ auditLog(filter: { actors: ["oidc:dora"] }) { edges { node { actor actorName action target } } } }');
    expect(log.auditLog.edges.map((e: { node: unknown }) => e.node)).toEqual([
      { actor: 'oidc:dora', actorName: 'dora@example.com', action: 'createTeam', target: `team:${created.createTeam.id}` },
    ]);
  });
});
