// Failed authentications per client address (TOLLGATE_AUTH_FAIL_LIMIT) against a real Tollgate:
// bad API keys on /v1/* and bad tokens on /graphql and /v1/receipts count; beyond the limit the
// address gets 429 auth_rate_limited with Retry-After, even with a correct credential, and a
// proxied request still leaves exactly one receipt. The test client stands behind a trusted
// proxy (127.0.0.1) and names its address in X-Forwarded-For, so each test is another client.
import { RateLimitError } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startTestGateway, type TestGateway } from '../support/gateway.js';

const LIMIT = 5;
let gw: TestGateway;
let key: { secret: string; id: string; teamId: string };

beforeAll(async () => {
  gw = await startTestGateway({ env: { TOLLGATE_AUTH_FAIL_LIMIT: String(LIMIT), TOLLGATE_TRUSTED_PROXIES: '127.0.0.1/32' } });
  key = await gw.createKey('throttled');
});
afterAll(async () => {
  await gw?.close();
});

const BAD_KEY = `tg-${'B'.repeat(43)}`;
const body = JSON.stringify({ model: 'chat-default', messages: [{ role: 'user', content: 'hi' }] });
const appended = () => gw.started.runtime.journal.stats().appendedRecords;

async function chat(client: string, secret: string) {
  const res = await fetch(`${gw.baseURL}/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json', 'x-forwarded-for': client },
    body,
  });
  return {
    status: res.status,
    json: (await res.json()) as any,
    receiptId: res.headers.get('x-tollgate-receipt-id'),
    retryAfter: res.headers.get('retry-after'),
  };
}

async function receipt(id: string) {
  const res = await fetch(`${gw.baseURL}/receipts/${id}`, { headers: { authorization: `Bearer ${gw.adminToken}` } });
  expect(res.status).toBe(200);
  return (await res.json()) as { status: string; http_status: number; error_code: string | null };
}

describe('failed authentication throttle', () => {
  it(`refuses an address after ${LIMIT} bad keys, a correct key included, with one receipt per proxied request`, async () => {
    const client = '203.0.113.10';
    const before = appended();
    const ids: string[] = [];
    for (let i = 0; i < LIMIT; i++) {
      const r = await chat(client, BAD_KEY);
      expect(r.status).toBe(401);
      ids.push(r.receiptId!);
    }
    // Brute force cannot go on: the right key from the same address is refused too.
    const sdk = gw.client(key.secret, { defaultHeaders: { 'x-forwarded-for': client } });
    const err = await sdk.chat.completions.create({ model: 'chat-default', messages: [{ role: 'user', content: 'hi' }] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RateLimitError);
    const limited = err as RateLimitError;
    expect(limited.status).toBe(429);
    expect(limited.error).toMatchObject({ type: 'rate_limit_error', code: 'auth_rate_limited' });
    const retryAfter = Number(limited.headers?.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    ids.push(limited.headers!.get('x-tollgate-receipt-id')!);

    const models = await fetch(`${gw.baseURL}/models`, { headers: { authorization: `Bearer ${key.secret}`, 'x-forwarded-for': client } });
    expect(models.status).toBe(429);
    expect(((await models.json()) as any).error.code).toBe('auth_rate_limited');

    // Exactly one receipt for each of the 6 proxied requests (GET /v1/models has none).
    expect(new Set(ids).size).toBe(LIMIT + 1);
    await expect.poll(() => appended() - before).toBe(LIMIT + 1);
    for (const id of ids.slice(0, LIMIT)) expect(await receipt(id)).toMatchObject({ status: 'rejected', http_status: 401, error_code: 'invalid_api_key' });
    expect(await receipt(ids[LIMIT]!)).toMatchObject({ status: 'rejected', http_status: 429, error_code: 'auth_rate_limited' });
  });

  it('counts only failures, and keeps addresses apart', async () => {
    const client = '203.0.113.11';
    for (let i = 0; i < 20; i++) expect((await chat(client, key.secret)).status).toBe(200);
    for (let i = 0; i < LIMIT - 1; i++) expect((await chat(client, BAD_KEY)).status).toBe(401);
    for (let i = 0; i < 5; i++) expect((await chat(client, key.secret)).status).toBe(200);
    // 203.0.113.10 is still refused, and this address is not.
    expect((await chat('203.0.113.10', key.secret)).status).toBe(429);
    expect((await chat(client, BAD_KEY)).status).toBe(401); // its 5th failure
    expect((await chat(client, key.secret)).status).toBe(429);
  });

  it('counts bad tokens on /graphql and /v1/receipts, answers GraphQL in its own shape, and refuses websockets (4429)', async () => {
    const client = '203.0.113.12';
    const graphql = (token: string) =>
      fetch(`${gw.url}/graphql`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'x-forwarded-for': client },
        body: JSON.stringify({ query: '{ teams { name } }' }),
      });
    for (let i = 0; i < 3; i++) {
      const r = (await (await graphql(`tga-${'x'.repeat(40)}`)).json()) as any;
      expect(r.errors?.length).toBeGreaterThan(0);
    }
    for (let i = 0; i < 2; i++) {
      const r = await fetch(`${gw.baseURL}/receipts/00000000-0000-7000-8000-000000000000`, {
        headers: { authorization: 'Bearer wrong-token', 'x-forwarded-for': client },
      });
      expect(r.status).toBe(401);
    }
    const refused = await graphql(gw.adminToken);
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(((await refused.json()) as any).errors[0]).toMatchObject({ extensions: { code: 'AUTH_RATE_LIMITED' } });

    const ws = new WebSocket(`${gw.url.replace(/^http/, 'ws')}/graphql`, 'graphql-transport-ws', { headers: { 'x-forwarded-for': client } });
    const closed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)));
    await new Promise((resolve) => ws.once('open', resolve));
    ws.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${gw.adminToken}` } }));
    expect(await closed).toBe(4429);

    // The admin token from elsewhere is unaffected.
    const elsewhere = await fetch(`${gw.url}/graphql`, {
      method: 'POST',
      headers: { authorization: `Bearer ${gw.adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ query: '{ teams { name } }' }),
    });
    expect(elsewhere.status).toBe(200);
  });

  it('counts failed websocket connection_inits', async () => {
    const client = '203.0.113.13';
    const attempt = async (token: string) => {
      const ws = new WebSocket(`${gw.url.replace(/^http/, 'ws')}/graphql`, 'graphql-transport-ws', { headers: { 'x-forwarded-for': client } });
      const closed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)));
      await new Promise((resolve) => ws.once('open', resolve));
      ws.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${token}` } }));
      const acked = await Promise.race([
        new Promise((resolve) => ws.on('message', (m) => resolve(JSON.parse(String(m)).type === 'connection_ack'))),
        closed.then(() => false),
      ]);
      ws.close();
      return acked ? 'ack' : await closed;
    };
    for (let i = 0; i < LIMIT; i++) expect(await attempt('wrong')).toBe(4403);
    expect(await attempt(gw.adminToken)).toBe(4429);
  });

  it('refuses /v1/messages/count_tokens from an address over the limit with Retry-After, in Anthropic shape', async () => {
    const client = '203.0.113.77';
    for (let i = 0; i < LIMIT; i++) expect((await chat(client, BAD_KEY)).status).toBe(401);
    const res = await fetch(`${gw.url}/v1/messages/count_tokens`, {
      method: 'POST',
      headers: { 'x-api-key': key.secret, 'content-type': 'application/json', 'x-forwarded-for': client, 'anthropic-version': '2023-06-01' },
      body: JSON.stringify({ model: 'chat-default', messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(res.status).toBe(429);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(((await res.json()) as any).type).toBe('error');
  });
});
