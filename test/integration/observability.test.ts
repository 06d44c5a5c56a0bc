// OpenTelemetry traces (to a real loopback OTLP/HTTP receiver) and the /metrics names, for a
// Tollgate driven with the official `openai` client in front of the simulated provider.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { type OtlpReceiver, type ReceivedSpan, startOtlpReceiver } from '../support/otlp-receiver.js';

const SERVER = 2;
const CLIENT = 3;
const ERROR = 2;

let gw: TestGateway;
let otlp: OtlpReceiver;
let secret: string;

beforeAll(async () => {
  otlp = await startOtlpReceiver();
  gw = await startTestGateway({
    env: {
      OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_BSP_SCHEDULE_DELAY: '20',
      OTEL_SERVICE_NAME: 'tollgate-under-test',
      TOLLGATE_FIRST_BYTE_TIMEOUT_MS: '400',
      TOLLGATE_ANSWER_TIMEOUT_MS: '400',
    },
  });
  secret = (await gw.createKey('team-traced')).secret;
});
afterAll(async () => {
  await gw?.close();
  await otlp?.close();
});

/** A client's W3C trace context: `00-<trace id>-<parent span id>-01`. */
function clientTrace() {
  const traceId = randomBytes(16).toString('hex');
  const parentId = randomBytes(8).toString('hex');
  return { traceId, parentId, headers: { traceparent: `00-${traceId}-${parentId}-01` } };
}

/** The request span and its attempt spans, once the request span (which ends last) has arrived. */
async function spansOf(traceId: string): Promise<{ request: ReceivedSpan; hops: ReceivedSpan[] }> {
  const spans = await otlp.trace(traceId, (s) => s.some((x) => x.kind === SERVER));
  const request = spans.find((s) => s.kind === SERVER)!;
  const hops = spans.filter((s) => s.kind === CLIENT).sort((a, b) => (a.startNs < b.startNs ? -1 : 1));
  return { request, hops };
}

const hopSummary = (h: ReceivedSpan) => [
  h.name,
  h.attributes['gen_ai.provider.name'],
  h.attributes['gen_ai.request.model'],
  h.attributes['http.response.status_code'] ?? null,
  h.attributes['error.type'] ?? null,
  h.status,
];

describe('OpenTelemetry traces', () => {
  it('a failover: the request span is the child of the client traceparent, with one child span per hop, each sent upstream', async () => {
    const ctx = clientTrace();
    gw.sim.behave('primary', { status: 500, times: 1 });
    const seen = gw.sim.requests.length;
    const { data, response } = await gw
      .client(secret, { defaultHeaders: ctx.headers })
      .chat.completions.create({ model: 'failover', messages: [{ role: 'user', content: 'trace me' }] })
      .withResponse();
    expect(data.model).toBe('backup');

    const { request, hops } = await spansOf(ctx.traceId);
    expect(request.parentSpanId).toBe(ctx.parentId);
    expect(request.name).toBe('POST /v1/chat/completions');
    expect(request.status).toBe(0);
    expect(request.resource['service.name']).toBe('tollgate-under-test');
    expect(request.attributes).toMatchObject({
      'gen_ai.operation.name': 'chat',
      'gen_ai.request.model': 'failover',
      'gen_ai.response.model': 'backup',
      'gen_ai.provider.name': 'sim-b',
      'gen_ai.usage.input_tokens': data.usage!.prompt_tokens,
      'gen_ai.usage.output_tokens': data.usage!.completion_tokens,
      'gen_ai.usage.cache_read.input_tokens': data.usage!.prompt_tokens_details?.cached_tokens ?? 0,
      'tollgate.receipt_id': response.headers.get('x-tollgate-receipt-id'),
      'tollgate.route': 'failover',
      'tollgate.cache': response.headers.get('x-tollgate-cache'),
      'tollgate.status': 'ok',
      'http.request.method': 'POST',
      'http.route': '/v1/chat/completions',
      'http.response.status_code': 200,
    });
    expect(request.attributes['error.type']).toBeUndefined();
    expect(request.attributes['tollgate.rule']).toBeUndefined();

    expect(hops.map(hopSummary)).toEqual([
      ['chat primary', 'sim', 'primary', 500, '500', ERROR],
      ['chat backup', 'sim-b', 'backup', 200, null, 0],
    ]);
    for (const hop of hops) {
      expect(hop.traceId).toBe(ctx.traceId);
      expect(hop.parentSpanId).toBe(request.spanId);
      expect(hop.startNs).toBeGreaterThanOrEqual(request.startNs);
      expect(hop.endNs).toBeLessThanOrEqual(request.endNs);
    }
    // The tokens belong to the hop that answered.
    expect(hops[0]!.attributes['gen_ai.usage.output_tokens']).toBeUndefined();
    expect(hops[1]!.attributes['gen_ai.usage.output_tokens']).toBe(data.usage!.completion_tokens);

    // Each upstream request carried its own hop's context, in the client's trace.
    const upstream = gw.sim.requests.slice(seen);
    expect(upstream.map((r) => [r.body.model, r.headers.traceparent])).toEqual([
      ['primary', `00-${ctx.traceId}-${hops[0]!.spanId}-01`],
      ['backup', `00-${ctx.traceId}-${hops[1]!.spanId}-01`],
    ]);
  });

  it('a stream whose first hop timed out: the hop says how it failed, the answering hop carries the tokens', async () => {
    const ctx = clientTrace();
    gw.sim.behave('primary', { hang: 'before-headers', times: 1 });
    const stream = await gw.client(secret, { defaultHeaders: ctx.headers }).chat.completions.create({
      model: 'failover',
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: 'user', content: 'stream me' }],
    });
    let usage: { prompt_tokens: number; completion_tokens: number } | undefined;
    for await (const chunk of stream) usage = chunk.usage ?? usage;
    expect(usage).toBeDefined();

    const { request, hops } = await spansOf(ctx.traceId);
    // The receipt's totals: the answer's, and the prompt of the hop that timed out (the provider read it: billed).
    const billed = hops[0]!.attributes['gen_ai.usage.input_tokens'] as number;
    expect(billed).toBeGreaterThan(0);
    expect(request.attributes).toMatchObject({
      'gen_ai.request.stream': true,
      'gen_ai.usage.input_tokens': usage!.prompt_tokens + billed,
      'gen_ai.usage.output_tokens': usage!.completion_tokens,
      'http.response.status_code': 200,
    });
    expect(hops.map(hopSummary)).toEqual([
      ['chat primary', 'sim', 'primary', null, 'timeout_first_byte', ERROR],
      ['chat backup', 'sim-b', 'backup', 200, null, 0],
    ]);
    expect(hops[1]!.attributes['gen_ai.usage.output_tokens']).toBe(usage!.completion_tokens);
  });

  it('a refused request has its span too: its status and error code, and no attempt', async () => {
    const ctx = clientTrace();
    const err = (await gw
      .client('tg-not-a-key', { defaultHeaders: ctx.headers })
      .chat.completions.create({ model: 'chat-default', messages: [{ role: 'user', content: 'hi' }] })
      .catch((e: unknown) => e)) as { status: number };
    expect(err.status).toBe(401);

    const { request, hops } = await spansOf(ctx.traceId);
    expect(request.parentSpanId).toBe(ctx.parentId);
    expect(request.attributes).toMatchObject({ 'http.response.status_code': 401, 'error.type': 'invalid_api_key', 'tollgate.status': 'rejected' });
    // A 4xx is answered correctly: not a server error.
    expect(request.status).toBe(0);
    expect(request.attributes['gen_ai.usage.input_tokens']).toBeUndefined();
    expect(hops).toEqual([]);
  });

  it('the rule, experiment and variant that decided are on the request span', async () => {
    const { routing } = gw.started.runtime.adminStore;
    await routing.upsertRoute({
      name: 'traced-rules',
      strategy: 'PRIORITY',
      targets: [{ provider: 'sim', model: 'sim-large' }],
      rules: [{ name: 'search-feature', when: 'request.feature == "search"', targets: [{ provider: 'sim-b', model: 'ruled' }] }],
    });
    await routing.upsertExperiment({ name: 'traced-ab', route: 'traced-rules', stickyBy: 'REQUEST', variants: [{ name: 'only', weight: 1 }] });
    await gw.started.runtime.app.catalog.load();

    const ctx = clientTrace();
    const { response } = await gw
      .client(secret, { defaultHeaders: { ...ctx.headers, 'x-tollgate-feature': 'search' } })
      .chat.completions.create({ model: 'traced-rules', messages: [{ role: 'user', content: 'find it' }] })
      .withResponse();
    expect(response.headers.get('x-tollgate-rule')).toBe('search-feature');

    const { request, hops } = await spansOf(ctx.traceId);
    expect(request.attributes).toMatchObject({
      'tollgate.route': 'traced-rules',
      'tollgate.rule': 'search-feature',
      'tollgate.experiment': 'traced-ab',
      'tollgate.variant': 'only',
      'gen_ai.response.model': 'ruled',
    });
    expect(hops.map(hopSummary)).toEqual([['chat ruled', 'sim-b', 'ruled', 200, null, 0]]);
  });

  it('without a traceparent the request starts a trace; embeddings are named as such', async () => {
    const seen = gw.sim.requests.length;
    const { response } = await gw.client(secret).embeddings.create({ model: 'embed-default', input: 'vectors please' }).withResponse();
    const receiptId = response.headers.get('x-tollgate-receipt-id');
    const deadline = Date.now() + 10_000;
    let request: ReceivedSpan | undefined;
    while (!(request = otlp.spans.find((s) => s.attributes['tollgate.receipt_id'] === receiptId)) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 25));
    expect(request).toBeDefined();
    expect(request!.parentSpanId).toBe('');
    expect(request!.name).toBe('POST /v1/embeddings');
    expect(request!.attributes['gen_ai.operation.name']).toBe('embeddings');

    const { hops } = await spansOf(request!.traceId);
    expect(hops.map(hopSummary)).toEqual([['embeddings sim-embed', 'sim', 'sim-embed', 200, null, 0]]);
    expect(gw.sim.requests.slice(seen).map((r) => r.headers.traceparent)).toEqual([`00-${request!.traceId}-${hops[0]!.spanId}-01`]);
  });
});

describe('/metrics', () => {
  it('serves every name under tollgate_ once: no doubled segment (tollgate_process_process_…)', async () => {
    const text = await (await fetch(`${gw.url}/metrics`)).text();
    const names = [
      ...new Set(
        text
          .split('\n')
          .filter((l) => l && !l.startsWith('#'))
          .map((l) => l.split(/[{ ]/)[0]!),
      ),
    ];
    expect(names.length).toBeGreaterThan(40);
    for (const name of names) {
      expect(name).toMatch(/^tollgate_[a-z0-9_]+$/);
      const segments = name.split('_');
      expect(
        segments.filter((s, i) => s === segments[i + 1]),
        name,
      ).toEqual([]);
      expect(name.indexOf('tollgate', 1), name).toBe(-1);
    }
    // Node's defaults sit directly under tollgate_.
    expect(names).toEqual(
      expect.arrayContaining([
        'tollgate_process_cpu_user_seconds_total',
        'tollgate_process_resident_memory_bytes',
        'tollgate_nodejs_eventloop_lag_seconds',
        'tollgate_requests_total',
      ]),
    );
  });
});
