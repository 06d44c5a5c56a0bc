// /v1/messages when things go wrong: bad input, every error row of DESIGN §4 in Anthropic's
// shape (the official SDK raises its own classes for them), upstream failures, broken
// streams — and exactly one receipt per request, counted in ClickHouse.
import Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../support/gateway.js';

let gw: TestGateway;
let key: { secret: string; id: string; teamId: string };
let claude: Anthropic;
/** Requests this file sent to /v1/messages with `key`: each must leave exactly one receipt. */
let sent = 0;

beforeAll(async () => {
  gw = await startTestGateway({ env: { TOLLGATE_MAX_BODY_BYTES: String(64 * 1024), TOLLGATE_AUTH_CACHE_MS: '0', TOLLGATE_STREAM_HOLD_MS: '300' } });
  const store = gw.started.runtime.adminStore;
  await store.providers.upsertProvider({ name: 'claude', kind: 'ANTHROPIC', baseUrl: gw.sim.origin, apiKey: 'sk-ant-upstream' });
  await store.providers.upsertProvider({ name: 'claude-b', kind: 'ANTHROPIC', baseUrl: gw.sim.origin, apiKey: 'sk-ant-upstream-b' });
  for (const name of ['m-claude', 'm-only'])
    await store.routing.upsertRoute({ name, strategy: 'PRIORITY', retries: 0, targets: [{ provider: 'claude', model: 'claude-sim' }] });
  await store.routing.upsertRoute({
    name: 'm-mixed',
    strategy: 'PRIORITY',
    retries: 0,
    targets: [
      { provider: 'claude', model: 'claude-first', priority: 0 },
      { provider: 'sim', model: 'gpt-second', priority: 1 },
    ],
  });
  await store.routing.upsertRoute({
    name: 'm-two-claudes',
    strategy: 'PRIORITY',
    retries: 0,
    targets: [
      { provider: 'claude', model: 'claude-busy', priority: 0 },
      { provider: 'claude-b', model: 'claude-busy', priority: 1 },
    ],
  });
  await store.pricing.setPrice({ provider: 'claude', model: 'claude-sim', inputPerMTokUsd: 3, outputPerMTokUsd: 15 });
  await gw.started.runtime.app.catalog.refresh();
  key = await gw.createKey('team-messages-errors');
  claude = new Anthropic({ baseURL: gw.url, apiKey: key.secret, maxRetries: 0 });
});
afterAll(async () => {
  await gw?.close();
});

async function post(body: string | object, headers: Record<string, string> = {}) {
  sent++;
  const res = await fetch(`${gw.url}/v1/messages`, {
    method: 'POST',
    headers: { 'x-api-key': key.secret, 'content-type': 'application/json', ...headers },
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

/** Anthropic's error shape, and nothing else in it. */
function expectAnthropicError(json: any, type: string) {
  expect(json).toEqual({ type: 'error', error: { type, message: expect.any(String) } });
}

const ok = { model: 'm-claude', max_tokens: 50, messages: [{ role: 'user', content: 'hi' }] };
const withContent = (content: unknown[]) => ({ ...ok, messages: [{ role: 'user', content }] });

describe('bad input: a 400 in Anthropic shape naming the field, nothing sent upstream', () => {
  it.each([
    ['not JSON', '{"model": "m-claude", "max_tokens": 5, "messages": [', null],
    ['empty body', '', null],
    ['an array', '[1, 2]', null],
    ['missing max_tokens', { model: 'm-claude', messages: [{ role: 'user', content: 'hi' }] }, 'max_tokens'],
    ['missing model', { max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] }, 'model'],
    ['missing messages', { model: 'm-claude', max_tokens: 5 }, 'messages'],
    ['max_tokens as a string', { ...ok, max_tokens: '5' }, 'max_tokens'],
    ['max_tokens zero', { ...ok, max_tokens: 0 }, 'max_tokens'],
    ['messages not an array', { ...ok, messages: 'hi' }, 'messages'],
    ['a tool role in messages', { ...ok, messages: [{ role: 'tool', content: 'x' }] }, 'messages[0].role'],
    ['temperature above 1', { ...ok, temperature: 1.5 }, 'temperature'],
    ['stream as a string', { ...ok, stream: 'yes' }, 'stream'],
    [
      'an unknown block type',
      withContent([
        { type: 'text', text: 'a' },
        { type: 'hologram', data: 'x' },
      ]),
      'messages[0].content[1].type',
    ],
    ['an unknown system block type', { ...ok, system: [{ type: 'image', source: {} }] }, 'system[0].type'],
    ['a text block without text', withContent([{ type: 'text' }]), 'messages[0].content[0].text'],
    ['tool_use in a user message', withContent([{ type: 'tool_use', id: 't', name: 'f', input: {} }]), 'messages[0].content[0].type'],
    ['an unknown image source', withContent([{ type: 'image', source: { type: 'ftp', url: 'ftp://x' } }]), 'messages[0].content[0].source.type'],
    ['a tool without input_schema', { ...ok, tools: [{ name: 'f' }] }, 'tools[0].input_schema'],
    ['tool_choice tool without a name', { ...ok, tools: [{ name: 'f', input_schema: { type: 'object' } }], tool_choice: { type: 'tool' } }, 'tool_choice.name'],
    ['an unknown tool_choice', { ...ok, tool_choice: { type: 'sometimes' } }, 'tool_choice.type'],
  ])('%s', async (_name, body, field) => {
    const before = gw.sim.requests.length;
    const a = await post(body as object);
    expect(a.status).toBe(400);
    expectAnthropicError(a.json, 'invalid_request_error');
    if (field) expect(a.json.error.message).toMatch(new RegExp(`^${field.replace(/[[\].]/g, '\\$&')}: |'${field.replace(/[[\].]/g, '\\$&')}'`));
    expect(gw.sim.requests.length).toBe(before);
    expect(a.headers.get('x-tollgate-receipt-id')).toBeTruthy();
  });

  it('413 request_too_large for a body over the limit', async () => {
    const a = await post({ ...ok, messages: [{ role: 'user', content: 'x'.repeat(70 * 1024) }] });
    expect(a.status).toBe(413);
    expectAnthropicError(a.json, 'request_too_large');
    sent++;
    const err = await claude.messages.create({ ...ok, messages: [{ role: 'user', content: 'x'.repeat(70 * 1024) }] } as any).catch((e) => e);
    expect(err).toBeInstanceOf(Anthropic.ContentTooLargeError);
  });

  it('405 in Anthropic shape for the wrong method', async () => {
    const res = await fetch(`${gw.url}/v1/messages`, { headers: { 'x-api-key': key.secret } });
    expect(res.status).toBe(405);
    expectAnthropicError(await res.json(), 'invalid_request_error');
  });
});

describe('the contract rows as the SDK raises them', () => {
  it('401 authentication_error for a bad key, in x-api-key or Bearer', async () => {
    const badKeys: Array<Record<string, string>> = [
      { 'x-api-key': 'tg-not-a-real-key-aaaaaaaaaaaaaaaaaaaa' },
      { 'x-api-key': '', authorization: 'Bearer nope' },
    ];
    for (const headers of badKeys) {
      const a = await post(ok, headers);
      expect(a.status).toBe(401);
      expectAnthropicError(a.json, 'authentication_error');
      expect(a.text).not.toContain('tg-not-a-real-key');
    }
    sent++;
    const err = await new Anthropic({ baseURL: gw.url, apiKey: 'tg-wrong', maxRetries: 0 }).messages.create(ok as any).catch((e) => e);
    expect(err).toBeInstanceOf(Anthropic.AuthenticationError);
  });

  it('accepts the key as Bearer too, whatever anthropic-version says', async () => {
    const a = await post(ok, { 'x-api-key': '', authorization: `Bearer ${key.secret}`, 'anthropic-version': '1999-01-01' });
    expect(a.status).toBe(200);
    expect(a.json.type).toBe('message');
  });

  it('403 permission_error, 404 not_found_error, 429 rate_limit_error with Retry-After', async () => {
    const limited = await gw.createKey('team-messages-errors', { allowedRoutes: ['m-only'], rpmLimit: 1 });
    const other = new Anthropic({ baseURL: gw.url, apiKey: limited.secret, maxRetries: 0 });
    sent++;
    const forbidden = await other.messages.create(ok as any).catch((e) => e);
    expect(forbidden).toBeInstanceOf(Anthropic.PermissionDeniedError);
    expect(forbidden.error.error.type).toBe('permission_error');
    sent++;
    const unknown = await claude.messages.create({ ...ok, model: 'no-such-route' } as any).catch((e) => e);
    expect(unknown).toBeInstanceOf(Anthropic.NotFoundError);
    expect(unknown.error).toEqual({ type: 'error', error: { type: 'not_found_error', message: expect.stringContaining('no-such-route') } });
    sent += 2;
    await other.messages.create({ ...ok, model: 'm-only' } as any).catch(() => undefined);
    const limitedErr = await other.messages.create({ ...ok, model: 'm-only' } as any).catch((e) => e);
    expect(limitedErr).toBeInstanceOf(Anthropic.RateLimitError);
    expect(Number(limitedErr.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
  });

  it("an Anthropic upstream's 400 comes back with its status and type, its message sanitized", async () => {
    gw.sim.behave('claude-sim', { status: 400, times: 1 });
    sent++;
    const err = await claude.messages.create(ok as any).catch((e) => e);
    expect(err).toBeInstanceOf(Anthropic.BadRequestError);
    expect(err.error).toEqual({ type: 'error', error: { type: 'invalid_request_error', message: 'Upstream error: Simulated error 400.' } });
  });

  it('an upstream 529 fails over to the next target; with none left, 502 api_error', async () => {
    gw.sim.behave('claude-first', { status: 529, times: 1 });
    sent++;
    const { data, response } = await claude.messages.create({ ...ok, model: 'm-mixed' } as any).withResponse();
    expect(data.content[0]).toMatchObject({ type: 'text' });
    expect(response.headers.get('x-tollgate-attempts')).toBe('2');
    expect(response.headers.get('x-tollgate-provider')).toBe('sim');

    gw.sim.behave('claude-busy', { status: 529, times: 2 });
    sent++;
    const err = await claude.messages.create({ ...ok, model: 'm-two-claudes' } as any).catch((e) => e);
    expect(err).toBeInstanceOf(Anthropic.InternalServerError);
    expect(err.status).toBe(502);
    expect(err.error.error.type).toBe('api_error');
  });

  it('every target rate limited: 429 rate_limit_error with the smallest Retry-After', async () => {
    gw.sim.behave('claude-busy', { status: 429, retryAfterSeconds: 3, times: 2 });
    sent++;
    const err = await claude.messages.create({ ...ok, model: 'm-two-claudes' } as any).catch((e) => e);
    expect(err).toBeInstanceOf(Anthropic.RateLimitError);
    expect(err.error.error.type).toBe('rate_limit_error');
    expect(err.headers.get('retry-after')).toBe('3');
  });
});

describe('broken streams', () => {
  it('an Anthropic stream that breaks mid-way ends with an error event the SDK raises; the receipt says partial', async () => {
    // The prompt's usage (cache reads and writes included) came in message_start: it is billed as reported.
    gw.sim.behave('claude-sim', { breakAfterChunks: 2, completionTokens: 6, cacheReadTokens: 400, cacheWriteTokens: 100, times: 1 });
    sent++;
    const stream = claude.messages.stream(ok as any);
    const text: string[] = [];
    stream.on('text', (t) => text.push(t));
    const err = await stream.finalMessage().catch((e) => e);
    expect(err).toBeInstanceOf(Anthropic.APIError);
    expect(err.error).toEqual({ type: 'error', error: { type: 'api_error', message: expect.stringContaining('upstream stream broke') } });
    expect(text).toHaveLength(2);
    const receiptId = stream.response!.headers.get('x-tollgate-receipt-id');
    const r: any = await (await fetch(`${gw.baseURL}/receipts/${receiptId}`, { headers: { authorization: `Bearer ${key.secret}` } })).json();
    expect(r).toMatchObject({ status: 'partial', endpoint: '/v1/messages', error_code: 'upstream_stream_interrupted', stream: true });
    expect(r).toMatchObject({ cached_tokens: 400, cache_write_tokens: 100, usage_estimated: true });
    expect(r.prompt_tokens).toBeGreaterThan(500);
  });

  it('the same through a chat client (transcoded): the prompt as message_start reported it', async () => {
    gw.sim.behave('claude-sim', { breakAfterChunks: 2, completionTokens: 6, cacheReadTokens: 400, times: 1 });
    const res = await fetch(`${gw.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key.secret}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm-claude', stream: true, messages: [{ role: 'user', content: 'break, please' }] }),
    });
    expect(await res.text()).toContain('upstream_stream_interrupted');
    const r: any = await (
      await fetch(`${gw.baseURL}/receipts/${res.headers.get('x-tollgate-receipt-id')}`, { headers: { authorization: `Bearer ${key.secret}` } })
    ).json();
    expect(r).toMatchObject({ status: 'partial', endpoint: '/v1/chat/completions', cached_tokens: 400, usage_estimated: true });
  });
});

describe('a model slow to begin', () => {
  // Pings every 50 ms while it thinks; or message_start and one ping, then 1.2 s of silence (the
  // hold ends on a clock: held until the next upstream byte, all went out with the answer).
  for (const [pinging, processingEveryMs] of [
    ['pings', 50],
    ['thinks in silence after its opening', 5_000],
  ] as const) {
    it(`message_start goes out once held for TOLLGATE_STREAM_HOLD_MS (${pinging}); TTFT is the answer's`, async () => {
      gw.sim.behave('claude-sim', { processingEveryMs, ttftMs: 1200, times: 1 });
      sent++;
      const res = await fetch(`${gw.url}/v1/messages`, {
        method: 'POST',
        headers: { 'x-api-key': key.secret, 'content-type': 'application/json' },
        body: JSON.stringify({ ...ok, stream: true }),
      });
      const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
      const first = (await reader.read()).value!;
      // Held until the answer began, they would arrive in one write with it.
      expect(first.startsWith('event: message_start\n')).toBe(true);
      expect(first).toContain('event: ping');
      expect(first).not.toContain('content_block_start');
      let text = first;
      for (let part = await reader.read(); !part.done; part = await reader.read()) text += part.value;
      expect(text).toContain('event: message_stop');
      const r: any = await (
        await fetch(`${gw.baseURL}/receipts/${res.headers.get('x-tollgate-receipt-id')}`, { headers: { authorization: `Bearer ${key.secret}` } })
      ).json();
      expect(r.status).toBe('ok');
      expect(r.ttft_ms).toBeGreaterThanOrEqual(1100);
    });
  }
});

describe('a chat upstream behind /v1/messages', () => {
  beforeAll(async () => {
    await gw.started.runtime.adminStore.routing.upsertRoute({
      name: 'm-chat-first',
      strategy: 'PRIORITY',
      retries: 0,
      targets: [
        { provider: 'sim', model: 'gpt-first', priority: 0 },
        { provider: 'claude', model: 'claude-sim', priority: 1 },
      ],
    });
    await gw.started.runtime.app.catalog.refresh();
  });

  async function stream(): Promise<{ res: Response; text: string }> {
    sent++;
    const res = await fetch(`${gw.url}/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': key.secret, 'content-type': 'application/json' },
      body: JSON.stringify({ ...ok, model: 'm-chat-first', stream: true }),
    });
    return { res, text: await res.text() };
  }

  it('an error chunk and [DONE] before any answer fails over: nothing had reached the client', async () => {
    gw.sim.behave('gpt-first', { errorAfterChunks: 0, times: 1 });
    const { res, text } = await stream();
    expect(res.headers.get('x-tollgate-model')).toBe('claude-sim');
    expect(res.headers.get('x-tollgate-attempts')).toBe('2');
    expect(text).not.toContain('event: error');
    expect(text).toContain('event: message_stop');
  });

  it('an upstream that leaves its connection open after [DONE] does not hold the answer until the idle timeout (60 s)', async () => {
    gw.sim.behave('gpt-first', { hang: 'after-done', times: 1 });
    const started = performance.now();
    const { res, text } = await stream();
    expect(performance.now() - started).toBeLessThan(4_000);
    expect(res.headers.get('x-tollgate-model')).toBe('gpt-first');
    expect(text).toContain('event: message_stop');
    expect(text).not.toContain('event: error');
    const r: any = await (
      await fetch(`${gw.baseURL}/receipts/${res.headers.get('x-tollgate-receipt-id')}`, { headers: { authorization: `Bearer ${key.secret}` } })
    ).json();
    expect(r.status).toBe('ok');
  });
});

describe('a transcoded stream whose upstream keeps it alive', () => {
  it("gets Tollgate's own keep-alive comments: the upstream's cannot be said in the client's protocol", async () => {
    const store = gw.started.runtime.adminStore;
    await store.routing.upsertRoute({ name: 'm-openrouterish', strategy: 'PRIORITY', retries: 0, targets: [{ provider: 'sim', model: 'or-thinks' }] });
    await gw.started.runtime.app.catalog.refresh();
    gw.sim.behave('or-thinks', { processingComment: true, processingEveryMs: 50, ttftMs: 1200, times: 1 });
    sent++;
    const res = await fetch(`${gw.url}/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': key.secret, 'content-type': 'application/json' },
      body: JSON.stringify({ ...ok, model: 'm-openrouterish', stream: true }),
    });
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    const first = (await reader.read()).value!;
    expect(first).toContain(': keep-alive\n\n');
    expect(first).not.toContain('content_block');
    let text = first;
    for (let part = await reader.read(); !part.done; part = await reader.read()) text += part.value;
    expect(text).toContain('event: message_stop');
    // Not too many: one each hold interval (300 ms here), not one for each upstream comment (every 50 ms).
    expect(text.split(': keep-alive').length - 1).toBeLessThanOrEqual(5);
  });
});

describe('nothing lost', () => {
  it('left exactly one receipt per request in ClickHouse', async () => {
    await gw.started.runtime.journal.flush();
    const rs = await gw.started.runtime.clickhouse.client.query({
      query: 'SELECT count() AS n, uniqExact(receipt_id) AS ids FROM receipts WHERE team_id = {team:String} AND endpoint = {endpoint:String}',
      query_params: { team: key.teamId, endpoint: '/v1/messages' },
      format: 'JSONEachRow',
    });
    const [row] = await rs.json<{ n: string; ids: string }>();
    expect(Number(row!.n)).toBe(sent - UNATTRIBUTED);
    expect(Number(row!.ids)).toBe(Number(row!.n));
  });
});

/** Requests of this file whose receipt has no team: the bad keys (two raw 401s and the SDK's). */
const UNATTRIBUTED = 3;
