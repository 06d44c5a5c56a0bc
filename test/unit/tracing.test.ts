// The tracing module against a real loopback OTLP/HTTP receiver: the protobuf wire (the
// OpenTelemetry default), collector headers, gzip, sampling, and export failures in the log.
import { randomBytes } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Target } from '../../src/routing/catalog.js';
import { openTracing, type TracingConfig } from '../../src/telemetry/tracing.js';
import { type OtlpReceiver, startOtlpReceiver } from '../support/otlp-receiver.js';

let otlp: OtlpReceiver;
beforeAll(async () => {
  otlp = await startOtlpReceiver();
});
afterAll(async () => {
  await otlp?.close();
});

function config(over: Partial<TracingConfig> = {}): TracingConfig {
  return {
    url: `${otlp.url}/v1/traces`,
    protocol: 'http/protobuf',
    headers: {},
    timeoutMs: 2_000,
    compression: 'none',
    resource: { 'service.name': 'unit-tollgate' },
    sampler: 'parentbased_always_on',
    samplerRatio: 1,
    batch: { scheduleDelayMs: 10, exportTimeoutMs: 2_000, maxQueueSize: 100, maxExportBatchSize: 10 },
    ...over,
  };
}

const target = {
  key: 'eu-openai/gpt-x',
  model: 'gpt-x',
  upstreamModel: 'gpt-x-2026',
  provider: { name: 'eu-openai', kind: 'OPENAI', origin: 'https://api.openai.com' },
} as unknown as Target;
const chat = { path: '/v1/chat/completions', endpoint: 'chat' } as const;
const quietLog = () => ({ warn: vi.fn(), info: vi.fn() });

describe('tracing', () => {
  it('exports OTLP protobuf, gzipped, with the collector headers, in the client trace', async () => {
    const tracing = await openTracing(config({ compression: 'gzip', headers: { 'x-collector-key': 'k-123' } }), quietLog());
    const traceId = randomBytes(16).toString('hex');
    const seen = otlp.exports.length;
    const request = tracing.startRequest({ traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` }, chat);
    const hop = request.startAttempt(target);
    const [, hopTraceId, hopSpanId, flags] = hop.headers.traceparent!.split('-');
    expect([hopTraceId, flags]).toEqual([traceId, '01']);
    hop.end(200, null);
    request.end(200, null);
    await tracing.shutdown();

    const sent = otlp.exports.slice(seen);
    expect(sent).toHaveLength(1);
    expect(sent[0]).toMatchObject({ path: '/v1/traces', contentType: 'application/x-protobuf' });
    expect(sent[0]!.headers).toMatchObject({ 'x-collector-key': 'k-123', 'content-encoding': 'gzip' });
    const body = gunzipSync(sent[0]!.body);
    for (const expected of [Buffer.from(traceId, 'hex'), Buffer.from(hopSpanId!, 'hex'), Buffer.from('unit-tollgate'), Buffer.from('chat gpt-x-2026')]) {
      expect(body.includes(expected)).toBe(true);
    }
    // An OPENAI-kind provider is `openai` in gen_ai.provider.name (a well-known value), whatever its
    // name: KeyValue{key, value: AnyValue{string_value: "openai"}} on the wire.
    const providerName = Buffer.concat([Buffer.from('gen_ai.provider.name'), Buffer.from([0x12, 8, 0x0a, 6]), Buffer.from('openai')]);
    expect(body.includes(providerName)).toBe(true);
  });

  it('follows the client sampling decision: an unsampled trace exports nothing, and the upstream still gets its context', async () => {
    const tracing = await openTracing(config(), quietLog());
    const traceId = randomBytes(16).toString('hex');
    const seen = otlp.exports.length;
    const request = tracing.startRequest({ traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-00` }, chat);
    const hop = request.startAttempt(target);
    expect(hop.headers.traceparent).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-00$`));
    hop.end(200, null);
    request.end(200, null);
    await tracing.shutdown();
    expect(otlp.exports.length).toBe(seen);
  });

  it('says once in the log that exporting fails', async () => {
    const log = quietLog();
    const tracing = await openTracing(
      config({
        url: 'http://127.0.0.1:1/v1/traces',
        timeoutMs: 300,
        batch: { scheduleDelayMs: 10, exportTimeoutMs: 300, maxQueueSize: 100, maxExportBatchSize: 1 },
      }),
      log,
    );
    for (let i = 0; i < 3; i++) tracing.startRequest({}, chat).end(200, null);
    await tracing.shutdown();
    expect(log.warn).toHaveBeenCalledTimes(1);
    expect(log.warn.mock.calls[0]![1]).toMatch(/exporting OpenTelemetry spans failed/);
  });
});
