// Failover, timeouts, breakers, mid-stream breaks and cancellation, driven by the simulated
// provider's behaviours and observed through the official client and the receipts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RoutingDecision } from '../../src/live/events.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';

let gw: TestGateway;
let secret: string;
let routeNo = 0;

beforeAll(async () => {
  gw = await startTestGateway({
    env: {
      TOLLGATE_FIRST_BYTE_TIMEOUT_MS: '400',
      TOLLGATE_ANSWER_TIMEOUT_MS: '2000',
      TOLLGATE_IDLE_TIMEOUT_MS: '400',
      TOLLGATE_STREAM_HOLD_MS: '300',
      TOLLGATE_BREAKER_FAILURES: '3',
      TOLLGATE_BREAKER_COOLDOWN_MS: '800',
    },
  });
  secret = (await gw.createKey('team-failover')).secret;
  await gw.started.runtime.adminStore.providers.upsertProvider({ name: 'dead', kind: 'OPENAI_COMPATIBLE', baseUrl: 'http://127.0.0.1:1/v1' });
  // An Anthropic upstream (on the simulator's Messages wire), for what it cannot take (n > 1).
  await gw.started.runtime.adminStore.providers.upsertProvider({ name: 'claude', kind: 'ANTHROPIC', baseUrl: gw.sim.origin, apiKey: 'sk-ant-upstream' });
});
afterAll(async () => {
  await gw?.close();
});

/** A fresh two-target route (unique models, so breaker state never leaks between tests). */
async function freshRoute(primaryProvider = 'sim', retries = 0): Promise<{ route: string; primary: string; backup: string }> {
  routeNo++;
  const route = `fo-${routeNo}`;
  const primary = `primary-${routeNo}`;
  const backup = `backup-${routeNo}`;
  await gw.started.runtime.adminStore.routing.upsertRoute({
    name: route,
    strategy: 'PRIORITY',
    retries,
    targets: [
      { provider: primaryProvider, model: primary, priority: 0 },
      { provider: 'sim-b', model: backup, priority: 1 },
    ],
  });
  await gw.started.runtime.adminStore.pricing.setPrice({ provider: 'sim-b', model: backup, inputPerMTokUsd: 1, outputPerMTokUsd: 1 });
  await gw.started.runtime.app.catalog.load();
  return { route, primary, backup };
}

async function receipt(id: string | null): Promise<Record<string, any>> {
  expect(id).toBeTruthy();
  const res = await fetch(`${gw.baseURL}/receipts/${id}`, { headers: { authorization: `Bearer ${secret}` } });
  expect(res.status).toBe(200);
  return res.json() as Promise<Record<string, any>>;
}

/** A streamed chat request sent raw (fetch), to read its SSE text and headers as they went out. */
async function rawStream(route: string, content: string): Promise<{ res: Response; text: string }> {
  const res = await fetch(`${gw.baseURL}/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: route, stream: true, messages: [{ role: 'user', content }] }),
  });
  return { res, text: await res.text() };
}

/** rawStream with more members in the body. */
async function rawStreamWith(route: string, extra: Record<string, unknown>): Promise<{ res: Response; text: string }> {
  const res = await fetch(`${gw.baseURL}/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: route, stream: true, messages: [{ role: 'user', content: 'count me' }], ...extra }),
  });
  return { res, text: await res.text() };
}

async function chat(route: string, extra: Record<string, unknown> = {}) {
  return gw
    .client(secret)
    .chat.completions.create({ model: route, messages: [{ role: 'user', content: 'hello there' }], ...extra } as any)
    .withResponse();
}

describe('failover before the first byte', () => {
  it('fails over on a 500 and bills only the answer', async () => {
    const { route, primary, backup } = await freshRoute();
    gw.sim.behave(primary, { status: 500, times: 1 });
    const { data, response } = await chat(route);
    // Asked for an answer it can read: no gzip or br (nothing decodes them).
    expect(gw.sim.requests.at(-1)!.headers['accept-encoding']).toBe('identity');
    expect(data.model).toBe(backup);
    expect(response.headers.get('x-tollgate-attempts')).toBe('2');
    const r = await receipt(response.headers.get('x-tollgate-receipt-id'));
    expect(r.status).toBe('ok');
    expect(r.attempts.map((a: any) => [a.model, a.status, a.error])).toEqual([
      [primary, 500, 'network_error'],
      [backup, 200, null],
    ]);
    expect(r.provider).toBe('sim-b');
    expect(r.cost_usd).toBeCloseTo((data.usage!.prompt_tokens + data.usage!.completion_tokens) / 1e6, 12);
  });

  it('fails over on a 429 and keeps the target out until Retry-After passes', async () => {
    const { route, primary, backup } = await freshRoute();
    gw.sim.behave(primary, { status: 429, retryAfterSeconds: 2, times: 1 });
    const first = await chat(route);
    expect(first.data.model).toBe(backup);
    const second = await chat(route);
    expect(second.data.model).toBe(backup);
    // The primary was skipped, not called: one attempt, and the simulator saw no new request for it.
    expect(second.response.headers.get('x-tollgate-attempts')).toBe('1');
    expect(gw.sim.requests.filter((r) => r.body?.model === primary)).toHaveLength(1);
  });

  it('fails over when the upstream hangs before headers (an answer in one piece: the answer timeout)', async () => {
    const { route, primary, backup } = await freshRoute();
    gw.sim.behave(primary, { hang: 'before-headers', times: 1 });
    const t0 = Date.now();
    const { data, response } = await chat(route);
    expect(data.model).toBe(backup);
    // Past the first-byte timeout (400 ms): undici's timers above 1 s run on a ~0.5-s tick.
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1000);
    const r = await receipt(response.headers.get('x-tollgate-receipt-id'));
    expect(r.attempts[0]).toMatchObject({ model: primary, status: 0, error: 'timeout_first_byte' });
  });

  it('bills the prompt of a call that timed out (the provider read it) on top of the answer; a 5xx call, nothing', async () => {
    const { route, primary, backup } = await freshRoute();
    await gw.started.runtime.adminStore.pricing.setPrice({ provider: 'sim', model: primary, inputPerMTokUsd: 1000, outputPerMTokUsd: 1000 });
    await gw.started.runtime.app.catalog.load();
    const content = 'a prompt the provider has read, '.repeat(20);
    const streamed = async () => {
      const stream = await gw
        .client(secret)
        .chat.completions.create({ model: route, stream: true, messages: [{ role: 'user', content }] })
        .withResponse();
      for await (const _ of stream.data);
      return receipt(stream.response.headers.get('x-tollgate-receipt-id'));
    };
    gw.sim.behave(primary, { hang: 'before-headers', times: 1 });
    const r = await streamed();
    const [timedOut, answered] = r.attempts;
    expect(timedOut).toMatchObject({ model: primary, error: 'timeout_first_byte', completion_tokens: 0 });
    expect(timedOut.prompt_tokens).toBeGreaterThan(100);
    expect(timedOut.cost_usd).toBeCloseTo(timedOut.prompt_tokens / 1000, 6);
    expect(answered).toMatchObject({ model: backup, error: null });
    expect(r).toMatchObject({ status: 'ok', provider: 'sim-b', model: backup, usage_estimated: true });
    expect(r.prompt_tokens).toBe(timedOut.prompt_tokens + answered.prompt_tokens);
    expect(r.cost_usd).toBeCloseTo(timedOut.cost_usd + answered.cost_usd, 9);

    // Every target timed out: the error receipt bills both prompts, naming the last target called.
    gw.sim.behave(primary, { hang: 'before-headers', times: 1 });
    gw.sim.behave(backup, { hang: 'before-headers', times: 1 });
    const failed = await rawStream(route, content);
    expect(failed.res.status).toBe(504);
    const e = await receipt(failed.res.headers.get('x-tollgate-receipt-id'));
    expect(e).toMatchObject({ status: 'error', http_status: 504, provider: 'sim-b', model: backup });
    expect(e.attempts.map((a: any) => a.error)).toEqual(['timeout_first_byte', 'timeout_first_byte']);
    expect(e.prompt_tokens).toBe(e.attempts[0].prompt_tokens + e.attempts[1].prompt_tokens);
    expect(e.cost_usd).toBeCloseTo(e.attempts[0].cost_usd + e.attempts[1].cost_usd, 9);

    // A 5xx is an error the provider does not bill.
    gw.sim.behave(primary, { status: 503, times: 1 });
    const after5xx = await streamed();
    expect(after5xx.attempts[0]).toMatchObject({ model: primary, status: 503, prompt_tokens: null, cost_usd: null });
    expect(after5xx.cost_usd).toBeCloseTo(after5xx.attempts[1].cost_usd, 9);
  });

  it("waits for an answer in one piece longer than for a stream's first byte (its headers come with the whole answer)", async () => {
    const { route, primary, backup } = await freshRoute();
    // 700 ms before the headers: past the first-byte timeout (400), within the answer timeout (2000).
    gw.sim.behave(primary, { latencyMs: 700, times: 2 });
    const whole = await chat(route);
    expect(whole.data.model).toBe(primary);
    expect(whole.response.headers.get('x-tollgate-attempts')).toBe('1');
    const stream = await gw
      .client(secret)
      .chat.completions.create({ model: route, stream: true, messages: [{ role: 'user', content: 'hi' }] })
      .withResponse();
    let model = '';
    for await (const chunk of stream.data) model ||= chunk.model;
    expect(model).toBe(backup);
    const r = await receipt(stream.response.headers.get('x-tollgate-receipt-id'));
    expect(r.attempts[0]).toMatchObject({ model: primary, status: 0, error: 'timeout_first_byte' });
  });

  it('fails over on connection refused', async () => {
    const { route, backup } = await freshRoute('dead');
    const { data, response } = await chat(route);
    expect(data.model).toBe(backup);
    const r = await receipt(response.headers.get('x-tollgate-receipt-id'));
    expect(r.attempts[0]).toMatchObject({ provider: 'dead', status: 0, error: 'connect_refused' });
  });

  it("fails over from a redirect (a misconfigured base URL), which is not the client's doing", async () => {
    const { route, primary, backup } = await freshRoute();
    gw.sim.behave(primary, { status: 301, times: 1 });
    const { data, response } = await chat(route);
    expect(data.model).toBe(backup);
    const r = await receipt(response.headers.get('x-tollgate-receipt-id'));
    expect(r.attempts[0]).toMatchObject({ model: primary, status: 301 });
  });

  it('skips a target that cannot take the request (n > 1 on Anthropic) for one that can; 400 when none can', async () => {
    const store = gw.started.runtime.adminStore;
    await store.routing.upsertRoute({
      name: 'mixed-n',
      strategy: 'PRIORITY',
      targets: [
        { provider: 'claude', model: 'claude-x', priority: 0 },
        { provider: 'sim', model: 'n-model', priority: 1 },
      ],
    });
    await store.routing.upsertRoute({ name: 'claude-only', strategy: 'PRIORITY', targets: [{ provider: 'claude', model: 'claude-x' }] });
    await gw.started.runtime.app.catalog.refresh();
    const { data, response } = await chat('mixed-n', { n: 2 });
    expect(data.choices).toHaveLength(2);
    expect(response.headers.get('x-tollgate-model')).toBe('n-model');
    expect(response.headers.get('x-tollgate-attempts')).toBe('1');
    const err: any = await chat('claude-only', { n: 2 }).catch((e) => e);
    expect(err.status).toBe(400);
    expect(err.error?.param ?? err.param).toBe('n');
    // A target that could take it but is out (its circuit open) is not a 400: no target is available.
    await store.routing.upsertRoute({
      name: 'open-n',
      strategy: 'PRIORITY',
      targets: [
        { provider: 'sim', model: 'open-model', priority: 0 },
        { provider: 'claude', model: 'claude-x', priority: 1 },
      ],
    });
    await gw.started.runtime.app.catalog.refresh();
    gw.sim.behave('open-model', { status: 500, times: 3 });
    for (let i = 0; i < 3; i++) await chat('open-n');
    expect(gw.started.runtime.app.health.state('sim/open-model')).toBe('open');
    const out: any = await chat('open-n', { n: 2 }).catch((e) => e);
    expect(out.status).toBe(502);
    expect(out.message).toMatch(/No upstream target is available/);
  });

  it('skips DeepSeek for a json_schema response format (it refuses one) and takes it there for json_object', async () => {
    const store = gw.started.runtime.adminStore;
    await store.providers.upsertProvider({ name: 'ds', kind: 'DEEPSEEK', baseUrl: gw.sim.url, apiKey: 'sk-ds-upstream' });
    await store.routing.upsertRoute({
      name: 'ds-first',
      strategy: 'PRIORITY',
      targets: [
        { provider: 'ds', model: 'ds-chat', priority: 0 },
        { provider: 'sim-b', model: 'schema-model', priority: 1 },
      ],
    });
    await store.routing.upsertRoute({ name: 'ds-only', strategy: 'PRIORITY', targets: [{ provider: 'ds', model: 'ds-chat' }] });
    await gw.started.runtime.app.catalog.refresh();
    const schema = { type: 'json_schema', json_schema: { name: 'answer', schema: { type: 'object', properties: { a: { type: 'string' } } } } };
    const structured = await chat('ds-first', { response_format: schema, messages: [{ role: 'user', content: 'json please' }] });
    expect(structured.response.headers.get('x-tollgate-model')).toBe('schema-model');
    expect(structured.response.headers.get('x-tollgate-attempts')).toBe('1');
    const plain = await chat('ds-first', { response_format: { type: 'json_object' }, messages: [{ role: 'user', content: 'json please' }] });
    expect(plain.response.headers.get('x-tollgate-model')).toBe('ds-chat');
    const err: any = await chat('ds-only', { response_format: schema }).catch((e) => e);
    expect(err.status).toBe(400);
    expect(err.error?.param ?? err.param).toBe('response_format');
    expect(gw.sim.requests.filter((r) => r.body?.model === 'ds-chat' && r.body?.response_format?.type === 'json_schema')).toHaveLength(0);
  });

  it('a target that cannot take the request is passed over before it counts: no attempt after a failure, no end to a cascade', async () => {
    const store = gw.started.runtime.adminStore;
    await store.routing.upsertRoute({
      name: 'fail-then-n',
      strategy: 'PRIORITY',
      targets: [
        { provider: 'sim', model: 'n-fails', priority: 0 },
        { provider: 'claude', model: 'claude-x', priority: 1 },
        { provider: 'sim', model: 'n-answers', priority: 2 },
      ],
    });
    await store.routing.upsertRoute({
      name: 'climb-n',
      strategy: 'CASCADE',
      accept: ['NON_EMPTY'],
      targets: [
        { provider: 'claude', model: 'claude-x', priority: 0 },
        { provider: 'sim', model: 'n-climbs', priority: 1 },
      ],
    });
    await gw.started.runtime.app.catalog.refresh();
    const decisions: RoutingDecision[] = [];
    const unsubscribe = gw.started.runtime.app.bus.decisions.subscribe((d) => decisions.push(d));
    try {
      gw.sim.behave('n-fails', { status: 500, times: 1 });
      const { data, response } = await chat('fail-then-n', { n: 2 });
      expect(data.choices).toHaveLength(2);
      expect(response.headers.get('x-tollgate-model')).toBe('n-answers');
      const mine = decisions.filter((d) => d.requestId === response.headers.get('x-request-id'));
      expect(mine.filter((d) => d.outcome === 'ATTEMPT').map((d) => d.model)).toEqual(['n-fails', 'n-answers']);
      expect(mine.find((d) => d.model === 'claude-x')).toMatchObject({ outcome: 'SKIPPED', reason: 'unsupported' });
      const r = await receipt(response.headers.get('x-tollgate-receipt-id'));
      expect(r.attempts.map((a: { model: string }) => a.model)).toEqual(['n-fails', 'n-answers']);

      // A cascade's first step that cannot take it is climbed past, not the end of the request.
      const climbed = await chat('climb-n', { n: 2 });
      expect(climbed.response.headers.get('x-tollgate-model')).toBe('n-climbs');
    } finally {
      unsubscribe();
    }
  });

  it('answers and records a request whose upstream reported impossible token counts, with the usage estimated', async () => {
    const { route, primary } = await freshRoute();
    for (const override of [
      { prompt_tokens: 12.5 },
      { prompt_tokens: -1 },
      { completion_tokens: -1 },
      { completion_tokens: 5e9 },
      { prompt_tokens_details: { cached_tokens: 0.5 } },
    ]) {
      gw.sim.behave(primary, { usageOverride: override, times: 2 });
      const { data, response } = await chat(route);
      expect(data.choices[0]?.message.content, JSON.stringify(override)).toBeTruthy();
      const r = await receipt(response.headers.get('x-tollgate-receipt-id'));
      expect(r).toMatchObject({ status: 'ok', usage_estimated: true });
      expect(r.prompt_tokens).toBeGreaterThan(0);
      expect(Number.isInteger(r.completion_tokens)).toBe(true);
      // Streamed, the client has the whole answer before the usage chunk: it must still end in a receipt.
      const { res, text } = await rawStreamWith(route, { stream_options: { include_usage: true } });
      expect(text).toContain('data: [DONE]');
      expect(text).not.toContain('"error"');
      expect(await receipt(res.headers.get('x-tollgate-receipt-id'))).toMatchObject({ status: 'ok', usage_estimated: true });
    }
  });

  it('does not fail over on a 400: the client gets the upstream error, sanitized', async () => {
    const { route, primary, backup } = await freshRoute();
    gw.sim.behave(primary, { status: 400, times: 1 });
    const err: any = await chat(route).catch((e) => e);
    expect(err.status).toBe(400);
    expect(err.error?.type ?? err.type).toBeTruthy();
    expect(gw.sim.requests.filter((r) => r.body?.model === backup)).toHaveLength(0);
    const r = await receipt(err.headers?.get?.('x-tollgate-receipt-id') ?? err.headers?.['x-tollgate-receipt-id']);
    expect(r.status).toBe('error');
    expect(r.http_status).toBe(400);
  });

  it("fails over when a provider refuses the gateway's own key (401): never the client's 401", async () => {
    for (const status of [401]) {
      const { route, primary, backup } = await freshRoute();
      gw.sim.behave(primary, { status, times: 1 });
      const { data, response } = await chat(route);
      expect(data.model).toBe(backup);
      const r = await receipt(response.headers.get('x-tollgate-receipt-id'));
      expect(r.attempts.map((a: any) => [a.model, a.status, a.error])).toEqual([
        [primary, status, 'network_error'],
        [backup, 200, null],
      ]);
      // Every target refusing: 502 upstream_error, not the provider's 401 as if the client's key were wrong.
      const both = await freshRoute();
      gw.sim.behave(both.primary, { status, times: 1 });
      gw.sim.behave(both.backup, { status, times: 1 });
      const err: any = await chat(both.route).catch((e) => e);
      expect(err.status).toBe(502);
      expect(err.error).toMatchObject({ type: 'api_error', code: 'upstream_error' });
    }
  });

  it('answers 502 when every target fails, and 504 when they time out', async () => {
    const { route, primary, backup } = await freshRoute();
    gw.sim.behave(primary, { status: 503, times: 1 });
    gw.sim.behave(backup, { status: 502, times: 1 });
    const err: any = await chat(route).catch((e) => e);
    expect(err.status).toBe(502);
    expect(err.error).toMatchObject({ type: 'api_error', code: 'upstream_error' });

    const t = await freshRoute();
    gw.sim.behave(t.primary, { hang: 'before-headers', times: 1 });
    gw.sim.behave(t.backup, { hang: 'before-headers', times: 1 });
    const timeout: any = await chat(t.route).catch((e) => e);
    expect(timeout.status).toBe(504);
  });

  it('retries a failing single target with backoff when the route allows retries', async () => {
    routeNo++;
    const model = `solo-${routeNo}`;
    await gw.started.runtime.adminStore.routing.upsertRoute({
      name: `solo-${routeNo}`,
      strategy: 'PRIORITY',
      retries: 2,
      targets: [{ provider: 'sim', model }],
    });
    await gw.started.runtime.app.catalog.load();
    gw.sim.behave(model, { status: 503, times: 2 });
    const { response } = await chat(`solo-${routeNo}`);
    expect(response.headers.get('x-tollgate-attempts')).toBe('3');
  });
});

describe('circuit breaker', () => {
  it('opens after consecutive failures, then half-opens with one probe', async () => {
    const { route, primary, backup } = await freshRoute();
    gw.sim.behave(primary, { status: 500, times: 3 });
    for (let i = 0; i < 3; i++) expect((await chat(route)).data.model).toBe(backup);
    expect(gw.started.runtime.app.health.state(`sim/${primary}`)).toBe('open');

    const decisions: RoutingDecision[] = [];
    const unsubscribe = gw.started.runtime.app.bus.decisions.subscribe((d) => decisions.push(d));
    const skipped = await chat(route);
    unsubscribe();
    expect(skipped.response.headers.get('x-tollgate-attempts')).toBe('1');
    expect(decisions.find((d) => d.outcome === 'SKIPPED')).toMatchObject({ model: primary, reason: 'circuit_open' });
    expect(gw.sim.requests.filter((r) => r.body?.model === primary)).toHaveLength(3);

    await new Promise((r) => setTimeout(r, 900));
    expect(gw.started.runtime.app.health.state(`sim/${primary}`)).toBe('half_open');
    const probe = await chat(route);
    expect(probe.data.model).toBe(primary);
    expect(gw.started.runtime.app.health.state(`sim/${primary}`)).toBe('closed');
  });
});

describe('LEAST_LATENCY', () => {
  it('ranks streams by time to first token: a target that starts at once wins, however long its answers run', async () => {
    routeNo++;
    const route = `ll-${routeNo}`;
    const [quickStart, quickEnd] = [`quick-start-${routeNo}`, `quick-end-${routeNo}`];
    await gw.started.runtime.adminStore.routing.upsertRoute({
      name: route,
      strategy: 'LEAST_LATENCY',
      targets: [
        { provider: 'sim', model: quickStart, priority: 0 },
        { provider: 'sim-b', model: quickEnd, priority: 1 },
      ],
    });
    await gw.started.runtime.app.catalog.load();
    // First token at once, then 8 tokens at 20/s (≈ 400 ms a stream); against 120 ms to the first token, then all at once.
    gw.sim.behave(quickStart, { tokensPerSecond: 20 });
    gw.sim.behave(quickEnd, { ttftMs: 120 });
    const served: string[] = [];
    for (let i = 0; i < 4; i++) served.push((await rawStream(route, `tell me ${i}`)).res.headers.get('x-tollgate-model')!);
    // Each is measured once (unmeasured go first), then the quick starter keeps the traffic; ranked by
    // whole streams (the old measure), the later two went to the quick ender.
    expect(served).toEqual([quickStart, quickEnd, quickStart, quickStart]);
    // A JSON answer is judged whole: the quick ender (≈ 120 ms) beats 400 ms once both are measured.
    const json: string[] = [];
    for (let i = 0; i < 3; i++)
      json.push((await chat(route, { messages: [{ role: 'user', content: `answer ${i}` }] })).response.headers.get('x-tollgate-model')!);
    expect(json).toEqual([quickStart, quickEnd, quickEnd]);
  });
});

describe('streams', () => {
  it('never fails over after the first byte: a broken stream gets an error event and a partial receipt', async () => {
    const { route, primary, backup } = await freshRoute();
    gw.sim.behave(primary, { breakAfterChunks: 3, completionTokens: 20, times: 1 });
    const { res, text } = await rawStream(route, 'tell me a long story');
    expect(text).toContain('event: error');
    expect(text).toContain('upstream_stream_interrupted');
    expect(text).not.toContain('data: [DONE]');
    expect(gw.sim.requests.filter((r) => r.body?.model === backup)).toHaveLength(0);
    const r = await receipt(res.headers.get('x-tollgate-receipt-id'));
    expect(r.status).toBe('partial');
    expect(r.usage_estimated).toBe(true);
    expect(r.completion_tokens).toBeGreaterThan(0);
    expect(r.completion_tokens).toBeLessThan(20);

    // The official client surfaces it as an error, after the chunks it did get.
    gw.sim.behave(primary, { breakAfterChunks: 3, completionTokens: 20, times: 1 });
    const stream = await gw.client(secret).chat.completions.create({ model: route, stream: true, messages: [{ role: 'user', content: 'again' }] });
    let got = 0;
    const thrown = await (async () => {
      for await (const chunk of stream) if (chunk.choices[0]?.delta?.content) got++;
    })().catch((e) => e);
    expect(thrown).toBeInstanceOf(Error);
    expect(got).toBeGreaterThan(0);
  });

  it('fails over from a stream that broke before its answer began (an SSE comment and a role chunk are not an answer)', async () => {
    const { route, primary, backup } = await freshRoute();
    for (const behaviour of [
      { processingComment: true, breakAfterChunks: 0 },
      { processingComment: true, errorAfterChunks: 0 },
    ]) {
      gw.sim.behave(primary, { ...behaviour, times: 1 });
      const { res, text } = await rawStream(route, 'hello');
      expect(res.headers.get('x-tollgate-model')).toBe(backup);
      expect(text).not.toContain('upstream_stream_interrupted');
      expect(text).toContain('data: [DONE]');
      const r = await receipt(res.headers.get('x-tollgate-receipt-id'));
      expect(r.status).toBe('ok');
      expect(r.attempts.map((a: { model: string }) => a.model)).toEqual([primary, backup]);
    }
    // A stream that goes on after its comment passes it through to the client, in place.
    gw.sim.behave(primary, { processingComment: true, times: 1 });
    const { res, text } = await rawStream(route, 'hello');
    expect(res.headers.get('x-tollgate-model')).toBe(primary);
    expect(text.startsWith(': OPENROUTER PROCESSING\n\ndata: ')).toBe(true);
  });

  it('a model that thinks long: the keep-alive comments go on once held for TOLLGATE_STREAM_HOLD_MS; TTFT is the answer', async () => {
    const { route, primary } = await freshRoute();
    // Comments every 50 ms (inside the 400-ms idle timeout) while the model thinks for 1.2 s.
    gw.sim.behave(primary, { processingComment: true, processingEveryMs: 50, ttftMs: 1200, times: 1 });
    const res = await fetch(`${gw.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: route, stream: true, messages: [{ role: 'user', content: 'think hard' }] }),
    });
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    const first = await reader.read();
    // Held until the answer began, the comments would arrive in one write with it.
    expect(first.value).toContain(': OPENROUTER PROCESSING');
    expect(first.value).not.toContain('data:');
    let text = first.value!;
    for (let part = await reader.read(); !part.done; part = await reader.read()) text += part.value;
    expect(res.headers.get('x-tollgate-model')).toBe(primary);
    expect(text).toContain('data: [DONE]');
    const r = await receipt(res.headers.get('x-tollgate-receipt-id'));
    expect(r.status).toBe('ok');
    expect(r.ttft_ms).toBeGreaterThanOrEqual(1100);
  });

  it('a stream past its hold that breaks before its answer is not failed over: an error event, a partial receipt', async () => {
    const { route, primary, backup } = await freshRoute();
    gw.sim.behave(primary, { processingComment: true, processingEveryMs: 50, ttftMs: 700, breakAfterChunks: 0, times: 1 });
    const { res, text } = await rawStream(route, 'think, then fail');
    expect(text.startsWith(': OPENROUTER PROCESSING')).toBe(true);
    expect(text).toContain('upstream_stream_interrupted');
    expect(gw.sim.requests.filter((q) => q.body?.model === backup)).toHaveLength(0);
    const r = await receipt(res.headers.get('x-tollgate-receipt-id'));
    expect(r).toMatchObject({ status: 'partial', error_code: 'upstream_stream_interrupted', completion_tokens: 0, ttft_ms: null });
    expect(r.attempts).toMatchObject([{ model: primary, status: 200, error: 'connection_reset' }]);
  });

  it('an error chunk after the first byte, then [DONE] (vLLM): the client gets an error, the receipt is partial', async () => {
    const { route, primary, backup } = await freshRoute();
    gw.sim.behave(primary, { errorAfterChunks: 3, completionTokens: 20, times: 1 });
    const { res, text } = await rawStream(route, 'fail half way');
    // Until now the [DONE] that follows the error chunk ended it as a complete answer: `ok`, cached.
    expect(text).toContain('upstream_stream_interrupted');
    expect(text).not.toContain('data: [DONE]');
    expect(gw.sim.requests.filter((r) => r.body?.model === backup)).toHaveLength(0);
    const r = await receipt(res.headers.get('x-tollgate-receipt-id'));
    expect(r).toMatchObject({ status: 'partial', error_code: 'upstream_stream_interrupted' });
    expect(r.attempts).toMatchObject([{ model: primary, status: 200, error: 'stream_error' }]);
    expect(r.completion_tokens).toBeLessThan(20);
  });

  it("an upstream's error chunk is not relayed: one error event of the gateway's, the upstream's message sanitized", async () => {
    const { route, primary } = await freshRoute();
    const leak = 'backend 10.0.0.7 rejected key sk-live-abcdefghijklmnop1234 at https://internal.example/v1';
    gw.sim.behave(primary, { errorAfterChunks: 3, errorMessage: leak, completionTokens: 20, times: 1 });
    const { text } = await rawStream(route, 'fail with details');
    expect(text).not.toContain('sk-live-abcdefghijklmnop1234');
    expect(text).not.toContain('internal.example');
    expect(text).not.toContain('InternalServerError'); // the upstream's chunk itself
    const errors = text.split('\n\n').filter((e) => e.includes('"error"'));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toContain('upstream_stream_interrupted');
    expect(errors[0]).toContain('backend 10.0.0.7 rejected key [redacted]'); // what it said, minus secrets
  });

  it('what an upstream sends after its error chunk is not relayed: the answer ends at the error', async () => {
    const { route, primary } = await freshRoute();
    gw.sim.behave(primary, { errorAfterChunks: 3, continueAfterError: true, completionTokens: 20, times: 1 });
    const { res, text } = await rawStream(route, 'fail, then go on');
    const contents = [...text.matchAll(/^data: (\{.*\})$/gm)]
      .map((m) => JSON.parse(m[1]!))
      .map((c) => c.choices?.[0]?.delta?.content)
      .filter((c) => typeof c === 'string' && c);
    // The 17 tokens the upstream sent after its error were relayed before the error went out.
    expect(contents).toHaveLength(3);
    // One error event, the gateway's, saying what the upstream said.
    expect(text.match(/"error"/g)).toHaveLength(1);
    expect(text).toContain('Upstream error: generation failed (simulated)');
    const r = await receipt(res.headers.get('x-tollgate-receipt-id'));
    expect(r).toMatchObject({ status: 'partial', error_code: 'upstream_stream_interrupted' });
    expect(r.completion_tokens).toBeLessThan(20);
  });

  it('a connection that breaks after [DONE] takes nothing from the answer: [DONE] and an ok receipt', async () => {
    const { route, primary } = await freshRoute();
    gw.sim.behave(primary, { breakAfterDone: true, completionTokens: 12, times: 1 });
    const { res, text } = await rawStream(route, 'then hang up');
    expect(text).toContain('data: [DONE]');
    expect(text).not.toContain('upstream_stream_interrupted');
    const r = await receipt(res.headers.get('x-tollgate-receipt-id'));
    expect(r).toMatchObject({ status: 'ok', completion_tokens: 12, usage_estimated: false });
    expect(r.attempts).toMatchObject([{ model: primary, status: 200, error: null }]);
  });

  it('aborts the upstream and writes a cancelled receipt when the client goes away', async () => {
    const { route, primary } = await freshRoute();
    gw.sim.behave(primary, { dripMs: 150, completionTokens: 50, times: 1 });
    const controller = new AbortController();
    const res = await fetch(`${gw.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: route, stream: true, messages: [{ role: 'user', content: 'slow' }] }),
      signal: controller.signal,
    });
    const id = res.headers.get('x-tollgate-receipt-id');
    const reader = res.body!.getReader();
    await reader.read();
    controller.abort();
    const deadline = Date.now() + 3000;
    let r: Record<string, any> | null = null;
    while (Date.now() < deadline) {
      const got = await fetch(`${gw.baseURL}/receipts/${id}`, { headers: { authorization: `Bearer ${secret}` } });
      if (got.status === 200) {
        r = (await got.json()) as Record<string, any>;
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(r?.status).toBe('cancelled');
    expect(r?.http_status).toBe(499);
    // The upstream call was cut short, not drained: the full drip would take ~7.5 s.
    expect(r?.attempts).toHaveLength(1);
    expect(r?.attempts[0]).toMatchObject({ status: 200, error: 'client_cancelled' });
    expect(r?.attempts[0].latency_ms).toBeLessThan(3000);
  });

  it('bills the prompt of a client that left during an upstream call, estimated, at the called target', async () => {
    const { route, primary } = await freshRoute();
    await gw.started.runtime.adminStore.pricing.setPrice({ provider: 'sim', model: primary, inputPerMTokUsd: 1000, outputPerMTokUsd: 1000 });
    await gw.started.runtime.app.catalog.load();
    gw.sim.behave(primary, { latencyMs: 350, times: 2 });
    const decisions: RoutingDecision[] = [];
    const unsubscribe = gw.started.runtime.app.bus.decisions.subscribe((d) => decisions.push(d));
    try {
      const cancelledReceipt = async (stream: boolean): Promise<Record<string, any>> => {
        const requestId = `left-${stream}-${routeNo}`;
        const controller = new AbortController();
        setTimeout(() => controller.abort(), 120);
        const content = 'a prompt the provider has read, '.repeat(20);
        const sent = fetch(`${gw.baseURL}/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json', 'x-request-id': requestId },
          body: JSON.stringify({ model: route, stream, messages: [{ role: 'user', content }] }),
          signal: controller.signal,
        });
        await expect(sent).rejects.toThrow();
        // The first estimate loads the tokenizer's tables: seconds on a cold, busy machine.
        const deadline = Date.now() + 15_000;
        while (Date.now() < deadline) {
          const cancelled = decisions.find((d) => d.requestId === requestId && d.outcome === 'CANCELLED');
          const got = cancelled && (await fetch(`${gw.baseURL}/receipts/${cancelled.receiptId}`, { headers: { authorization: `Bearer ${secret}` } }));
          if (got && got.status === 200) return (await got.json()) as Record<string, any>;
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        throw new Error(`no cancelled receipt for ${requestId}: ${JSON.stringify(decisions.map((d) => [d.requestId, d.outcome, d.receiptId]))}`);
      };
      for (const stream of [false, true]) {
        const r = await cancelledReceipt(stream);
        // Left before any byte of an answer (a stream's headers wait for its first part).
        expect(r).toMatchObject({ status: 'cancelled', http_status: 499, provider: 'sim', model: primary, usage_estimated: true, completion_tokens: 0 });
        expect(r.prompt_tokens).toBeGreaterThan(100);
        expect(r.cost_usd).toBeCloseTo(r.prompt_tokens / 1000, 6);
        expect(r.attempts).toMatchObject([{ model: primary, error: 'aborted', prompt_tokens: r.prompt_tokens, cost_usd: r.cost_usd }]);
      }
    } finally {
      unsubscribe();
    }
  });

  it('bills a cascade client that left during a later step for that step too, on top of the steps that answered', async () => {
    routeNo++;
    const [cheap, strong] = [`cheap-${routeNo}`, `strong-${routeNo}`];
    await gw.started.runtime.adminStore.routing.upsertRoute({
      name: `climb-${routeNo}`,
      strategy: 'CASCADE',
      accept: ['NOT_TRUNCATED'],
      targets: [
        { provider: 'sim', model: cheap, priority: 0 },
        { provider: 'sim', model: strong, priority: 1 },
      ],
    });
    await gw.started.runtime.adminStore.pricing.setPrice({ provider: 'sim', model: cheap, inputPerMTokUsd: 1, outputPerMTokUsd: 1 });
    await gw.started.runtime.adminStore.pricing.setPrice({ provider: 'sim', model: strong, inputPerMTokUsd: 1000, outputPerMTokUsd: 1000 });
    await gw.started.runtime.app.catalog.load();
    gw.sim.behave(cheap, { finishReason: 'length', times: 1 }); // rejected: the climb goes on
    gw.sim.behave(strong, { latencyMs: 350, times: 1 });
    const decisions: RoutingDecision[] = [];
    const unsubscribe = gw.started.runtime.app.bus.decisions.subscribe((d) => decisions.push(d));
    try {
      const requestId = `left-climb-${routeNo}`;
      const controller = new AbortController();
      const sent = fetch(`${gw.baseURL}/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json', 'x-request-id': requestId },
        body: JSON.stringify({ model: `climb-${routeNo}`, messages: [{ role: 'user', content: 'a prompt both steps read, '.repeat(20) }] }),
        signal: controller.signal,
      });
      // Gone once the strong step is under way.
      const deadline = Date.now() + 15_000;
      while (!decisions.some((d) => d.requestId === requestId && d.model === strong) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      controller.abort();
      await expect(sent).rejects.toThrow();
      let r: Record<string, any> | null = null;
      while (!r && Date.now() < deadline) {
        const cancelled = decisions.find((d) => d.requestId === requestId && d.outcome === 'CANCELLED');
        const got = cancelled && (await fetch(`${gw.baseURL}/receipts/${cancelled.receiptId}`, { headers: { authorization: `Bearer ${secret}` } }));
        if (got && got.status === 200) r = (await got.json()) as Record<string, any>;
        else await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(r).toMatchObject({ status: 'cancelled', usage_estimated: true });
      const [first, second] = r!.attempts;
      expect(first).toMatchObject({ model: cheap, accepted: false });
      expect(second).toMatchObject({ model: strong, error: 'aborted', completion_tokens: 0 });
      expect(second.prompt_tokens).toBeGreaterThan(100);
      expect(second.cost_usd).toBeCloseTo(second.prompt_tokens / 1000, 6);
      // The receipt bills both steps.
      expect(r!.prompt_tokens).toBe(first.prompt_tokens + second.prompt_tokens);
      expect(r!.cost_usd).toBeCloseTo(first.cost_usd + second.cost_usd, 9);
    } finally {
      unsubscribe();
    }
  });

  it('fails over when an upstream idles past the idle timeout before any byte reached the client', async () => {
    const { route, primary, backup } = await freshRoute();
    gw.sim.behave(primary, { hang: 'after-headers', times: 1 });
    const stream = await gw.client(secret).chat.completions.create({ model: route, stream: true, messages: [{ role: 'user', content: 'x' }] });
    let model = '';
    for await (const chunk of stream) model = chunk.model;
    expect(model).toBe(backup);
  });
});
