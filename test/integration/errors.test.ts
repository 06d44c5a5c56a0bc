// Every row of the contract's error table, plus hostile input. Each answer must be
// OpenAI-shaped, never echo a secret, and leave a receipt.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../support/gateway.js';

let gw: TestGateway;
let key: { secret: string; id: string; teamId: string };

beforeAll(async () => {
  gw = await startTestGateway({ env: { TOLLGATE_MAX_BODY_BYTES: String(64 * 1024), TOLLGATE_AUTH_CACHE_MS: '0' } });
  key = await gw.createKey('team-errors');
});
afterAll(async () => {
  await gw?.close();
});

async function post(body: string | object, headers: Record<string, string> = {}, path = '/v1/chat/completions') {
  const res = await fetch(`${gw.url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key.secret}`, 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json: any = null;
  try {
    json = JSON.parse(text);
  } catch {
    // asserted by the caller
  }
  return { status: res.status, json, text, headers: res.headers };
}

function expectOpenAIError(json: any) {
  expect(json).toEqual({
    error: {
      message: expect.any(String),
      type: expect.any(String),
      param: json?.error?.param ?? null,
      code: json?.error?.code ?? null,
    },
  });
}

const ok = { model: 'chat-default', messages: [{ role: 'user', content: 'hi' }] };

describe('401: one answer for every kind of bad key', () => {
  it('no key, garbage, unknown, revoked and expired keys all get the same 401', async () => {
    const store = gw.started.runtime.adminStore;
    const revoked = await gw.createKey('team-errors');
    await store.teams.revokeApiKey(revoked.id);
    const expired = await gw.createKey('team-errors', { expiresAt: new Date(Date.now() - 1000) });
    const unknown = `tg-${'A'.repeat(43)}`;
    const answers = await Promise.all([
      post(ok, { authorization: '' }),
      post(ok, { authorization: 'Basic dXNlcjpwYXNz' }),
      post(ok, { authorization: 'Bearer not-a-key' }),
      post(ok, { authorization: `Bearer ${unknown}` }),
      post(ok, { authorization: `Bearer ${revoked.secret}` }),
      post(ok, { authorization: `Bearer ${expired.secret}` }),
    ]);
    for (const a of answers) {
      expect(a.status).toBe(401);
      expectOpenAIError(a.json);
      expect(a.json.error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_api_key' });
      expect(a.json.error.message).toBe(answers[0]!.json.error.message);
      expect(a.text).not.toContain(revoked.secret);
      expect(a.text).not.toContain(unknown);
    }
  });

  it('the SDK sees an AuthenticationError', async () => {
    const err: any = await gw
      .client('tg-wrong')
      .chat.completions.create(ok as any)
      .catch((e) => e);
    expect(err.status).toBe(401);
    expect(err.code).toBe('invalid_api_key');
  });
});

describe('400: validation names the param and never clamps', () => {
  it.each([
    ['not JSON', '{"model": "chat-default", "messages": [', null],
    ['empty body', '', null],
    ['array body', '[1,2,3]', null],
    ['missing model', { messages: [{ role: 'user', content: 'x' }] }, 'model'],
    ['missing messages', { model: 'chat-default' }, 'messages'],
    ['model not a string', { model: 42, messages: [{ role: 'user', content: 'x' }] }, 'model'],
    ['messages not an array', { model: 'chat-default', messages: 'hello' }, 'messages'],
    ['bad role', { model: 'chat-default', messages: [{ role: 'wizard', content: 'x' }] }, 'messages[0].role'],
    ['temperature out of range', { ...ok, temperature: 3 }, 'temperature'],
    ['n zero', { ...ok, n: 0 }, 'n'],
    ['stream as string', { ...ok, stream: 'yes' }, 'stream'],
    ['max_tokens fractional', { ...ok, max_tokens: 1.5 }, 'max_tokens'],
  ])('%s', async (_name, body, param) => {
    const before = gw.sim.requests.length;
    const a = await post(body as any);
    expect(a.status).toBe(400);
    expectOpenAIError(a.json);
    expect(a.json.error.type).toBe('invalid_request_error');
    expect(a.json.error.param).toBe(param);
    expect(gw.sim.requests.length).toBe(before); // nothing reached the upstream
  });

  it('rejects invalid embeddings input', async () => {
    const a = await post({ model: 'embed-default', input: { text: 'x' } }, {}, '/v1/embeddings');
    expect(a.status).toBe(400);
    expect(a.json.error.param).toBe('input');
  });
});

describe('413, 404, 403, 429, 405', () => {
  it('413 for a body over the limit, declared or streamed', async () => {
    const big = JSON.stringify({ ...ok, messages: [{ role: 'user', content: 'x'.repeat(70 * 1024) }] });
    const a = await post(big);
    expect(a.status).toBe(413);
    expect(a.json.error.type).toBe('invalid_request_error');

    // Chunked, without a content-length: counted while reading.
    const chunked = new ReadableStream({
      start(controller) {
        for (let i = 0; i < 80; i++) controller.enqueue(new TextEncoder().encode('x'.repeat(1024)));
        controller.close();
      },
    });
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key.secret}`, 'content-type': 'application/json' },
      body: chunked,
      duplex: 'half',
    } as RequestInit);
    expect(res.status).toBe(413);
  });

  it('404 model_not_found for an unknown route or provider', async () => {
    for (const model of ['no-such-route', 'nosuchprovider/gpt-4o', 'sim/']) {
      const a = await post({ ...ok, model });
      expect(a.status).toBe(404);
      expect(a.json.error).toMatchObject({ type: 'invalid_request_error', code: 'model_not_found', param: 'model' });
    }
  });

  it('403 permission_error for a route the key may not use', async () => {
    const limited = await gw.createKey('team-errors', { allowedRoutes: ['embed-default'] });
    const a = await post(ok, { authorization: `Bearer ${limited.secret}` });
    expect(a.status).toBe(403);
    expect(a.json.error.type).toBe('permission_error');
  });

  it('429 rate_limit_exceeded with Retry-After and x-ratelimit headers', async () => {
    const limited = await gw.createKey('team-errors', { rpmLimit: 2 });
    const h = { authorization: `Bearer ${limited.secret}` };
    const first = await post(ok, h);
    expect(first.status).toBe(200);
    expect(first.headers.get('x-ratelimit-limit-requests')).toBe('2');
    expect(first.headers.get('x-ratelimit-remaining-requests')).toBe('1');
    expect((await post(ok, h)).status).toBe(200);
    const third = await post(ok, h);
    expect(third.status).toBe(429);
    expect(third.json.error).toMatchObject({ type: 'rate_limit_error', code: 'rate_limit_exceeded' });
    expect(Number(third.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(third.headers.get('x-ratelimit-remaining-requests')).toBe('0');
  });

  it('TPM: concurrent requests reserve what they may use, so they cannot all pass; the reservation ends with them', async () => {
    const limited = await gw.createKey('team-errors', { tpmLimit: 1_000 });
    const h = { authorization: `Bearer ${limited.secret}` };
    // Each asks for up to 300 output tokens and uses ~20: nothing is recorded while they run.
    const asking = { ...ok, max_tokens: 300 };
    gw.sim.behave('sim-large', { latencyMs: 400, times: 6 });
    const burst = await Promise.all(Array.from({ length: 6 }, () => post(asking, h)));
    const statuses = burst.map((r) => r.status).sort();
    // ~310 tokens reserved each: the fourth still finds the count under 1,000, the rest do not.
    expect(statuses).toEqual([200, 200, 200, 200, 429, 429]);
    for (const r of burst.filter((x) => x.status === 429)) expect(r.json.error.message).toMatch(/tokens per minute/);
    gw.sim.reset();
    // Their receipts released the reservations; only what they used still counts.
    const next = await post(asking, h);
    expect(next.status).toBe(200);
    expect(Number(next.headers.get('x-ratelimit-remaining-tokens'))).toBeGreaterThan(500);
  });

  it('405 for the wrong method and an OpenAI-shaped 404 for unknown paths', async () => {
    const get = await fetch(`${gw.url}/v1/chat/completions`, { headers: { authorization: `Bearer ${key.secret}` } });
    expect(get.status).toBe(405);
    expectOpenAIError(await get.json());
    const unknown = await fetch(`${gw.url}/v1/nothing-here`);
    expect(unknown.status).toBe(404);
    expectOpenAIError(await unknown.json());
  });
});

describe('hostile bodies', () => {
  it('deep nesting is refused without crashing', async () => {
    const deep = `{"model":"chat-default","messages":[{"role":"user","content":"x"}],"metadata":${'['.repeat(20_000)}${']'.repeat(20_000)}}`;
    const a = await post(deep);
    expect(a.status).toBe(400);
    expect((await post(ok)).status).toBe(200); // and the server is fine
  });

  it('__proto__ and constructor keys do not pollute anything', async () => {
    const a = await post(
      '{"model":"chat-default","messages":[{"role":"user","content":"x"}],"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}}}',
    );
    expect([200, 400]).toContain(a.status);
    expect(({} as any).polluted).toBeUndefined();
  });

  it('invalid UTF-8, NUL bytes and huge numbers are handled', async () => {
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key.secret}`, 'content-type': 'application/json' },
      body: Buffer.concat([
        Buffer.from('{"model":"chat-default","messages":[{"role":"user","content":"'),
        Buffer.from([0xff, 0xfe, 0x00]),
        Buffer.from('"}]}'),
      ]),
    });
    expect([200, 400]).toContain(res.status);
    const huge = await post({ ...ok, max_tokens: 1e308 });
    expect(huge.status).toBe(400);
    expect(huge.json.error.param).toBe('max_tokens');
  });

  it('a key-shaped model name is not echoed back verbatim beyond its length limit', async () => {
    const a = await post({ ...ok, model: 'x'.repeat(300) });
    expect(a.status).toBe(400);
    expect(a.json.error.param).toBe('model');
  });
});

describe('rejected requests leave receipts', () => {
  it('writes a rejected receipt for each refused request', async () => {
    const a = await post({ ...ok, model: 'no-such-route-receipt' });
    const id = a.headers.get('x-tollgate-receipt-id');
    const res = await fetch(`${gw.baseURL}/receipts/${id}`, { headers: { authorization: `Bearer ${gw.adminToken}` } });
    expect(res.status).toBe(200);
    const r: any = await res.json();
    expect(r).toMatchObject({ status: 'rejected', http_status: 404, error_code: 'model_not_found', team_id: key.teamId, cost_usd: null });
  });
});
