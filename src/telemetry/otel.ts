// The OpenTelemetry side of tracing.ts, loaded only when tracing is configured. Spans follow
// the GenAI semantic conventions (https://opentelemetry.io/docs/specs/semconv/gen-ai/):
//   - the request: a SERVER span `POST /v1/chat/completions`, child of the client's
//     `traceparent`, with the receipt's names and usage;
//   - each upstream attempt (failover hops included): a CLIENT span `chat <model>` (an inference
//     call), whose context goes upstream as `traceparent`.
// Configuration comes only from the caller (src/config.ts): `@opentelemetry/sdk-trace` reads no
// environment (unlike `sdk-trace-base`, which is now a shim adding environment-variable fallbacks to it).

import type { IncomingHttpHeaders } from 'node:http';
import { performance } from 'node:perf_hooks';
import {
  type Attributes,
  defaultTextMapGetter,
  defaultTextMapSetter,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import { type ExportResult, ExportResultCode, W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter as JsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as ProtobufExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { defaultResource, resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  type ReadableSpan,
  type Sampler,
  type SpanExporter,
  TraceIdRatioBasedSampler,
  TracerProvider,
} from '@opentelemetry/sdk-trace';
import type { Endpoint } from '../protocols/protocol.js';
import type { ProviderKind } from '../providers/presets.js';
import type { Attempt, ReceiptDraft } from '../receipts/receipt.js';
import type { Provider, Target } from '../routing/catalog.js';
import type { AttemptTrace, RequestTrace, Tracing, TracingConfig, TracingLog } from './tracing.js';

/** `gen_ai.provider.name` MUST be the well-known value where one applies; else Tollgate's name for the provider. */
const WELL_KNOWN_PROVIDERS: Partial<Record<ProviderKind, string>> = { OPENAI: 'openai', ANTHROPIC: 'anthropic', DEEPSEEK: 'deepseek' };

export function genAiProviderName(provider: Pick<Provider, 'kind' | 'name'>): string {
  return WELL_KNOWN_PROVIDERS[provider.kind] ?? provider.name;
}

/** Chat completions, Responses and Messages are all inference (`chat`); embeddings are `embeddings`. */
export function genAiOperation(endpoint: Endpoint): 'chat' | 'embeddings' {
  return endpoint === 'embeddings' ? 'embeddings' : 'chat';
}

export class OtelTracing implements Tracing {
  private readonly provider: TracerProvider;
  private readonly tracer: Tracer;
  private readonly propagator = new W3CTraceContextPropagator();

  constructor(config: TracingConfig, log: TracingLog) {
    const options = { url: config.url, headers: config.headers, timeoutMillis: config.timeoutMs, compression: config.compression as ExporterCompression };
    const exporter = config.protocol === 'http/json' ? new JsonExporter(options) : new ProtobufExporter(options);
    this.provider = new TracerProvider({
      resource: defaultResource().merge(resourceFromAttributes(config.resource)),
      sampler: samplerFor(config),
      spanProcessors: [
        new BatchSpanProcessor({
          exporter: new ReportedExporter(exporter, log),
          scheduledDelayMillis: config.batch.scheduleDelayMs,
          exportTimeoutMillis: config.batch.exportTimeoutMs,
          maxQueueSize: config.batch.maxQueueSize,
          maxExportBatchSize: config.batch.maxExportBatchSize,
        }),
      ],
    });
    this.tracer = this.provider.getTracer('tollgate');
  }

  startRequest(headers: IncomingHttpHeaders, protocol: { path: string; endpoint: Endpoint }): RequestTrace {
    const parent = this.propagator.extract(ROOT_CONTEXT, headers, defaultTextMapGetter);
    const operation = genAiOperation(protocol.endpoint);
    const span = this.tracer.startSpan(
      `POST ${protocol.path}`,
      {
        kind: SpanKind.SERVER,
        attributes: { 'gen_ai.operation.name': operation, 'http.request.method': 'POST', 'http.route': protocol.path, 'url.path': protocol.path },
      },
      parent,
    );
    return new OtelRequestTrace(this.tracer, this.propagator, span, operation);
  }

  async shutdown(): Promise<void> {
    // A failed last export is already in the log (ReportedExporter): stopping itself cannot fail.
    await this.provider.shutdown().catch(() => undefined);
  }
}

type ExporterCompression = NonNullable<ConstructorParameters<typeof JsonExporter>[0]>['compression'];

class OtelRequestTrace implements RequestTrace {
  /** Attempts in the order they ended, which is the order of the receipt's `attempts`. */
  private readonly finished: OtelAttemptTrace[] = [];
  /** Tollgate's provider names → `gen_ai.provider.name`, for the request span. */
  private readonly providerNames = new Map<string, string>();
  private ended = false;

  constructor(
    private readonly tracer: Tracer,
    private readonly propagator: W3CTraceContextPropagator,
    private readonly span: Span,
    private readonly operation: string,
  ) {}

  startAttempt(target: Target): AttemptTrace {
    const provider = genAiProviderName(target.provider);
    this.providerNames.set(target.provider.name, provider);
    const origin = new URL(target.provider.origin);
    const attributes: Attributes = {
      'gen_ai.operation.name': this.operation,
      'gen_ai.provider.name': provider,
      'gen_ai.request.model': target.upstreamModel,
      'tollgate.provider': target.provider.name,
      'tollgate.model': target.model,
      'http.request.method': 'POST',
      'server.address': origin.hostname,
      'server.port': Number(origin.port) || (origin.protocol === 'https:' ? 443 : 80),
    };
    const span = this.tracer.startSpan(
      `${this.operation} ${target.upstreamModel}`,
      { kind: SpanKind.CLIENT, attributes },
      trace.setSpan(ROOT_CONTEXT, this.span),
    );
    const headers: Record<string, string> = {};
    this.propagator.inject(trace.setSpan(ROOT_CONTEXT, span), headers, defaultTextMapSetter);
    return new OtelAttemptTrace(span, headers, (attempt) => this.finished.push(attempt));
  }

  recorded(r: ReceiptDraft): void {
    const attributes: Attributes = {
      'tollgate.receipt_id': r.receipt_id,
      'tollgate.request_id': r.request_id,
      'tollgate.status': r.status,
      'tollgate.cache': r.cache_status,
    };
    const optional = {
      'gen_ai.request.model': r.requested_model,
      'gen_ai.response.model': r.model,
      'gen_ai.provider.name': r.provider === null ? null : (this.providerNames.get(r.provider) ?? r.provider),
      'tollgate.provider': r.provider,
      'tollgate.route': r.route,
      'tollgate.rule': r.rule,
      'tollgate.experiment': r.experiment,
      'tollgate.variant': r.variant,
      'tollgate.accepted': r.accepted,
      'tollgate.cost_usd': r.cost_usd,
    };
    for (const [key, value] of Object.entries(optional)) if (value !== null) attributes[key] = value;
    if (r.stream) attributes['gen_ai.request.stream'] = true;
    // Usage as the receipt has it (DESIGN §6: input tokens include cache reads and writes, output
    // tokens include reasoning), only when something answered.
    if (r.provider !== null) {
      attributes['gen_ai.usage.input_tokens'] = r.prompt_tokens;
      attributes['gen_ai.usage.output_tokens'] = r.completion_tokens;
      attributes['gen_ai.usage.cache_read.input_tokens'] = r.cached_tokens;
      if (r.cache_write_tokens) attributes['gen_ai.usage.cache_write.input_tokens'] = r.cache_write_tokens;
      if (r.reasoning_tokens) attributes['gen_ai.usage.reasoning.output_tokens'] = r.reasoning_tokens;
    }
    this.span.setAttributes(attributes);
    for (const [i, attempt] of this.finished.entries()) attempt.close(r.attempts[i]);
  }

  end(httpStatus: number, errorCode: string | null): void {
    if (this.ended) return;
    this.ended = true;
    this.span.setAttribute('http.response.status_code', httpStatus);
    if (errorCode) this.span.setAttribute('error.type', errorCode);
    // A server span is in error for 5xx only: a 4xx is the client's mistake, answered correctly.
    if (httpStatus >= 500) this.span.setStatus({ code: SpanStatusCode.ERROR, message: errorCode ?? undefined });
    for (const attempt of this.finished) attempt.close();
    this.span.end();
  }
}

class OtelAttemptTrace implements AttemptTrace {
  /** When the attempt ended; the span ends (at that time) once the receipt gives it its tokens. */
  private endedAt: number | null = null;
  private closed = false;

  constructor(
    private readonly span: Span,
    readonly headers: Record<string, string>,
    private readonly onEnd: (attempt: OtelAttemptTrace) => void,
  ) {}

  end(status: number, error: string | null): void {
    if (this.endedAt !== null) return;
    this.endedAt = performance.now();
    if (status > 0) this.span.setAttribute('http.response.status_code', status);
    if (error) {
      // The HTTP status where the upstream answered one, else how it failed (timeout_first_byte, …).
      this.span.setAttribute('error.type', status >= 400 ? String(status) : error);
      this.span.setStatus({ code: SpanStatusCode.ERROR, message: error });
    }
    this.onEnd(this);
  }

  /** Its line in the receipt: the tokens of the attempt that answered. */
  close(line?: Attempt): void {
    if (this.closed) return;
    this.closed = true;
    if (line?.prompt_tokens != null) this.span.setAttribute('gen_ai.usage.input_tokens', line.prompt_tokens);
    if (line?.completion_tokens != null) this.span.setAttribute('gen_ai.usage.output_tokens', line.completion_tokens);
    this.span.end(this.endedAt ?? undefined);
  }
}

function samplerFor(config: TracingConfig): Sampler {
  const name = config.sampler;
  const root = name.endsWith('always_off')
    ? new AlwaysOffSampler()
    : name.endsWith('traceidratio')
      ? new TraceIdRatioBasedSampler(config.samplerRatio)
      : new AlwaysOnSampler();
  return name.startsWith('parentbased_') ? new ParentBasedSampler({ root }) : root;
}

/**
 * Says in Tollgate's log when exporting starts failing (once) and when it works again; the SDK
 * alone reports export errors only to an OpenTelemetry diagnostic logger nobody installed.
 */
class ReportedExporter implements SpanExporter {
  private failing = false;

  constructor(
    private readonly inner: SpanExporter,
    private readonly log: TracingLog,
  ) {}

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.inner.export(spans, (result) => {
      if (result.code === ExportResultCode.FAILED && !this.failing) {
        this.failing = true;
        this.log.warn({ err: String(result.error ?? 'unknown error') }, 'exporting OpenTelemetry spans failed; spans are dropped until the collector answers');
      } else if (result.code === ExportResultCode.SUCCESS && this.failing) {
        this.failing = false;
        this.log.info({}, 'exporting OpenTelemetry spans works again');
      }
      done(result);
    });
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }
}
