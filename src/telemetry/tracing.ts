// OpenTelemetry tracing, seen from the pipeline: a span per proxied request and a child span per
// upstream attempt. This module is only the interface and the loader. The SDK lives in otel.ts
// and is imported only when tracing is configured (OTEL_EXPORTER_OTLP_ENDPOINT), so with tracing
// off nothing of it is loaded and every hook on the hot path is one null check (`ex.trace?.…`).
import type { IncomingHttpHeaders } from 'node:http';
import type { Endpoint } from '../protocols/protocol.js';
import type { ReceiptDraft } from '../receipts/receipt.js';
import type { Target } from '../routing/catalog.js';

/** What src/config.ts makes of the standard OTEL_* variables. */
export interface TracingConfig {
  /** The OTLP/HTTP traces URL (`…/v1/traces`). */
  url: string;
  protocol: 'http/protobuf' | 'http/json';
  /** Sent with every export (e.g. a collector's API key). */
  headers: Record<string, string>;
  timeoutMs: number;
  compression: 'gzip' | 'none';
  /** Resource attributes, `service.name` included. */
  resource: Record<string, string>;
  sampler: TraceSampler;
  /** The ratio of the `traceidratio` samplers, 0–1. */
  samplerRatio: number;
  batch: { scheduleDelayMs: number; exportTimeoutMs: number; maxQueueSize: number; maxExportBatchSize: number };
}

export const TRACE_SAMPLERS = [
  'always_on',
  'always_off',
  'traceidratio',
  'parentbased_always_on',
  'parentbased_always_off',
  'parentbased_traceidratio',
] as const;
export type TraceSampler = (typeof TRACE_SAMPLERS)[number];

export interface Tracing {
  /**
   * The span of one proxied request, started before anything is checked (so refused requests
   * have one too): a child of the client's `traceparent` when it sent one.
   */
  startRequest(headers: IncomingHttpHeaders, protocol: { path: string; endpoint: Endpoint }): RequestTrace;
  /** Exports what is pending and stops; never rejects (export failures are logged). */
  shutdown(): Promise<void>;
}

export interface RequestTrace {
  /** A child span for one call to an upstream target. */
  startAttempt(target: Target): AttemptTrace;
  /** The request's receipt: names, provenance and usage become the spans' attributes. */
  recorded(receipt: ReceiptDraft): void;
  /** The response is complete (or abandoned): ends the request's span. */
  end(httpStatus: number, errorCode: string | null): void;
}

export interface AttemptTrace {
  /** `traceparent` (and `tracestate`) of this attempt's span, for the upstream request. */
  readonly headers: Record<string, string>;
  /** The attempt is over: its HTTP status (0 when none came) and its error, as the receipt has them. */
  end(status: number, error: string | null): void;
}

export interface TracingLog {
  warn(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
}

/** Loads the SDK and starts exporting. Called once, at start, only when tracing is configured. */
export async function openTracing(config: TracingConfig, log: TracingLog): Promise<Tracing> {
  const { OtelTracing } = await import('./otel.js');
  return new OtelTracing(config, log);
}
