// The settings added for the edges (src/config.ts): defaults, lists, and errors that name the variable.
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';
import { parseIp } from '../../src/net/ip.js';

describe('edge settings', () => {
  it('has sane defaults', () => {
    const c = loadConfig({});
    expect(c.inbound).toEqual({ headersTimeoutMs: 15_000, requestTimeoutMs: 60_000 });
    expect(c.websocket).toEqual({ maxSubscriptions: 100, maxBufferBytes: 4 * 1024 * 1024 });
    expect(c.authFailLimit).toBe(50);
    expect(c.trustedProxies.size).toBe(0);
    expect(c.egressAllow.hosts).toEqual([]);
    expect(c.egressAllow.cidrs.size).toBe(0);
    expect(c.heapGrowthPercent).toBe(50);
  });

  it('takes a heap growth percent, 0 for V8 own sizing, and refuses a negative one', () => {
    expect(loadConfig({ TOLLGATE_HEAP_GROWTH_PERCENT: '0' }).heapGrowthPercent).toBe(0);
    expect(loadConfig({ TOLLGATE_HEAP_GROWTH_PERCENT: '100' }).heapGrowthPercent).toBe(100);
    expect(() => loadConfig({ TOLLGATE_HEAP_GROWTH_PERCENT: '-5' })).toThrow(/TOLLGATE_HEAP_GROWTH_PERCENT/);
  });

  it('reads lists of CIDRs and host names', () => {
    const c = loadConfig({ TOLLGATE_TRUSTED_PROXIES: '10.0.0.0/8, fd00::/8', TOLLGATE_EGRESS_ALLOW: 'Hooks.Internal., 192.168.1.0/24 127.0.0.1' });
    expect(c.trustedProxies.has(parseIp('10.9.9.9')!)).toBe(true);
    expect(c.egressAllow.hosts).toEqual(['hooks.internal']);
    expect(c.egressAllow.cidrs.has(parseIp('192.168.1.7')!)).toBe(true);
    expect(c.egressAllow.cidrs.has(parseIp('127.0.0.1')!)).toBe(true);
  });

  it('names the variable and the entry that is wrong', () => {
    expect(() => loadConfig({ TOLLGATE_TRUSTED_PROXIES: '10.0.0.0/8,10.0.0.0/40' })).toThrow(
      /TOLLGATE_TRUSTED_PROXIES: '10\.0\.0\.0\/40' is not an IP address or CIDR range/,
    );
    expect(() => loadConfig({ TOLLGATE_EGRESS_ALLOW: 'http://hooks.internal' })).toThrow(
      /TOLLGATE_EGRESS_ALLOW: 'http:\/\/hooks\.internal' is neither a host name/,
    );
    expect(() => loadConfig({ TOLLGATE_HEADERS_TIMEOUT_MS: '90000' })).toThrow(ConfigError);
    expect(() => loadConfig({ TOLLGATE_WS_MAX_BUFFER_BYTES: '1000' })).toThrow(/TOLLGATE_WS_MAX_BUFFER_BYTES/);
  });

  it('refuses durations a timer cannot run (Node fires them after 1 ms), ports past 65535 and numbers that are not decimal digits', () => {
    expect(() => loadConfig({ TOLLGATE_TOTAL_TIMEOUT_MS: '9999999999' })).toThrow(/TOLLGATE_TOTAL_TIMEOUT_MS: must be an integer from 1 to 2147483647/);
    expect(loadConfig({ TOLLGATE_TOTAL_TIMEOUT_MS: '2147483647' }).timeouts.totalMs).toBe(2_147_483_647);
    expect(() => loadConfig({ TOLLGATE_CATALOG_REFRESH_MS: '3000000000' })).toThrow(/TOLLGATE_CATALOG_REFRESH_MS/);
    expect(() => loadConfig({ TOLLGATE_PORT: '70000' })).toThrow(/TOLLGATE_PORT: must be an integer from 0 to 65535/);
    for (const port of ['0x1F90', '8e3', '80.5']) expect(() => loadConfig({ TOLLGATE_PORT: port }), port).toThrow(/TOLLGATE_PORT/);
    expect(loadConfig({ TOLLGATE_PORT: ' 8080 ' }).port).toBe(8080);
  });

  it('takes an empty enumerated variable as unset (Helm and compose write them), and refuses an unknown log level by name', () => {
    const c = loadConfig({
      TOLLGATE_WAL_SYNC: '',
      TOLLGATE_LOG_LEVEL: '',
      OTEL_TRACES_SAMPLER: ' ',
      OTEL_EXPORTER_OTLP_PROTOCOL: '',
      OTEL_EXPORTER_OTLP_COMPRESSION: '',
    });
    expect(c.walSync).toBe('write');
    expect(c.logLevel).toBe('info');
    expect(() => loadConfig({ TOLLGATE_LOG_LEVEL: 'warning' })).toThrow(/TOLLGATE_LOG_LEVEL/);
    expect(loadConfig({ TOLLGATE_LOG_LEVEL: 'debug' }).logLevel).toBe('debug');
  });

  it('refuses an admin token shorter than 32 characters, naming the variable but never the token', () => {
    const err = (() => {
      try {
        loadConfig({ TOLLGATE_ADMIN_TOKEN: 'changeme2024' });
      } catch (e) {
        return e as Error;
      }
      return null;
    })();
    expect(err?.message).toMatch(/TOLLGATE_ADMIN_TOKEN: must be at least 32 characters/);
    expect(err?.message).not.toContain('changeme2024');
    expect(loadConfig({ TOLLGATE_ADMIN_TOKEN: 'x'.repeat(32) }).adminToken).toBe('x'.repeat(32));
  });
});
