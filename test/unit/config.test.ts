// Configuration errors name the variable and never print a connection URL's credentials.
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';

function refusal(env: Record<string, string>): string {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error(`accepted ${JSON.stringify(env)}`);
}

describe('connection URLs', () => {
  const malformed: Array<[string, string]> = [
    ['DATABASE_URL', 'postgres://tollgate:hunter2-secret@db.internal:99999/tollgate'], // port out of range
    ['DATABASE_URL', 'mysql://tollgate:hunter2-secret@db.internal/tollgate'],
    ['DATABASE_URL', 'tollgate:hunter2-secret@db.internal/tollgate'],
    ['CLICKHOUSE_URL', 'clickhouse.internal:8123?password=hunter2-secret'],
    ['CLICKHOUSE_URL', 'http://default:hunter2-secret@[::1'],
    ['REDIS_URL', 'redis//:hunter2-secret@cache.internal:6379'],
    ['REDIS_URL', 'https://:hunter2-secret@cache.internal'],
  ];
  it.each(malformed)('refuses a malformed %s at start, naming it, without its password', (name, value) => {
    const message = refusal({ [name]: value });
    expect(message).toContain(name);
    expect(message).not.toContain('hunter2');
  });

  it('accepts well-formed ones', () => {
    const config = loadConfig({
      DATABASE_URL: 'postgresql://tollgate:p%40ss@db.internal:5432/tollgate?schema=gw',
      CLICKHOUSE_URL: 'https://default:secret@ch.internal:8443',
      REDIS_URL: 'rediss://:secret@cache.internal:6380/2',
    });
    expect(config.databaseUrl).toBe('postgresql://tollgate:p%40ss@db.internal:5432/tollgate?schema=gw');
    expect(config.clickhouse?.url).toBe('https://default:secret@ch.internal:8443');
    expect(config.redisUrl).toBe('rediss://:secret@cache.internal:6380/2');
    expect(loadConfig({ DATABASE_URL: 'postgres:///tollgate?host=/var/run/postgresql' }).databaseUrl).toBeDefined();
  });
});

describe('TOLLGATE_CORS_ORIGINS', () => {
  it('is empty by default: no cross-origin access', () => {
    expect(loadConfig({}).corsOrigins).toEqual([]);
  });

  it('takes comma-separated origins as browsers send them, or *', () => {
    expect(loadConfig({ TOLLGATE_CORS_ORIGINS: ' https://App.Example.com/ , http://localhost:5173,https://x.example:443' }).corsOrigins).toEqual([
      'https://app.example.com',
      'http://localhost:5173',
      'https://x.example',
    ]);
    expect(loadConfig({ TOLLGATE_CORS_ORIGINS: '*' }).corsOrigins).toEqual(['*']);
  });

  it.each(['null', 'app.example.com', 'https://app.example.com/path', 'file:///tmp/x', 'https://user:pw@app.example.com'])('refuses %s', (value) => {
    expect(refusal({ TOLLGATE_CORS_ORIGINS: value })).toContain('TOLLGATE_CORS_ORIGINS');
  });
});

describe('OpenTelemetry variables', () => {
  it('leave tracing off unless an OTLP endpoint is set', () => {
    expect(loadConfig({}).tracing).toBeUndefined();
    expect(loadConfig({ OTEL_SERVICE_NAME: 'gw', OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' }).tracing).toBeUndefined();
  });

  it('take the OpenTelemetry defaults, the traces URL under the base endpoint', () => {
    expect(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' }).tracing).toEqual({
      url: 'http://collector:4318/v1/traces',
      protocol: 'http/protobuf',
      headers: {},
      timeoutMs: 10_000,
      compression: 'none',
      resource: { 'service.name': 'tollgate' },
      sampler: 'parentbased_always_on',
      samplerRatio: 1,
      batch: { scheduleDelayMs: 5_000, exportTimeoutMs: 30_000, maxQueueSize: 2_048, maxExportBatchSize: 512 },
    });
  });

  it('let the TRACES_ variants win, decode headers and resource attributes, and read the sampler', () => {
    const tracing = loadConfig({
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318',
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://traces.example.com/otlp/v1/traces',
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
      OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json',
      OTEL_EXPORTER_OTLP_HEADERS: 'x-team=gw, authorization=Basic%20YWJj',
      OTEL_EXPORTER_OTLP_TRACES_HEADERS: 'x-team=traces',
      OTEL_EXPORTER_OTLP_TIMEOUT: '3000',
      OTEL_EXPORTER_OTLP_TRACES_COMPRESSION: 'gzip',
      OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=prod,service.name=ignored',
      OTEL_SERVICE_NAME: 'tollgate-eu',
      OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
      OTEL_TRACES_SAMPLER_ARG: '0.25',
      OTEL_BSP_SCHEDULE_DELAY: '100',
    }).tracing;
    expect(tracing).toMatchObject({
      url: 'https://traces.example.com/otlp/v1/traces',
      protocol: 'http/json',
      headers: { 'x-team': 'traces', authorization: 'Basic YWJj' },
      timeoutMs: 3000,
      compression: 'gzip',
      resource: { 'deployment.environment.name': 'prod', 'service.name': 'tollgate-eu' },
      sampler: 'parentbased_traceidratio',
      samplerRatio: 0.25,
      batch: { scheduleDelayMs: 100 },
    });
  });

  it('turn off with OTEL_SDK_DISABLED or OTEL_TRACES_EXPORTER=none', () => {
    expect(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_SDK_DISABLED: 'true' }).tracing).toBeUndefined();
    expect(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_TRACES_EXPORTER: 'none' }).tracing).toBeUndefined();
  });

  it('refuse what Tollgate cannot do, naming the variable, never showing a header value', () => {
    expect(refusal({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4317', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' })).toContain('OTEL_EXPORTER_OTLP_PROTOCOL');
    expect(refusal({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_TRACES_EXPORTER: 'zipkin' })).toContain('OTEL_TRACES_EXPORTER');
    expect(refusal({ OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' })).toContain('OTEL_EXPORTER_OTLP_ENDPOINT');
    expect(refusal({ OTEL_TRACES_SAMPLER_ARG: '2' })).toContain('OTEL_TRACES_SAMPLER_ARG');
    expect(refusal({ OTEL_TRACES_SAMPLER: 'jaeger_remote' })).toContain('OTEL_TRACES_SAMPLER');
    for (const headers of ['api-key-hunter2-secret', 'k=%zzhunter2-secret']) {
      const message = refusal({ OTEL_EXPORTER_OTLP_HEADERS: headers });
      expect(message).toContain('OTEL_EXPORTER_OTLP_HEADERS');
      expect(message).not.toContain('hunter2');
    }
  });
});
