// Upstream HTTP: Retry-After parsing, failure classification, and real loopback sockets.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { errors as undiciErrors } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { classify, parseRetryAfter, UpstreamClient, UpstreamFailure } from '../../src/gateway/upstream.js';
import { PRESETS } from '../../src/providers/presets.js';
import type { Provider } from '../../src/routing/catalog.js';

describe('parseRetryAfter', () => {
  it('parses delta-seconds into milliseconds', () => {
    expect(parseRetryAfter('0')).toBe(0);
    expect(parseRetryAfter('5')).toBe(5_000);
    expect(parseRetryAfter('1.5')).toBe(1_500);
  });

  it('caps large values (default 60 s, or the given cap)', () => {
    expect(parseRetryAfter('120')).toBe(60_000);
    expect(parseRetryAfter('86400')).toBe(60_000);
    expect(parseRetryAfter('120', 10_000)).toBe(10_000);
    expect(parseRetryAfter('5', 10_000)).toBe(5_000);
  });

  it('parses an HTTP date relative to now; past dates give 0', () => {
    const inTen = new Date(Date.now() + 10_000).toUTCString(); // second precision
    const ms = parseRetryAfter(inTen)!;
    expect(ms).toBeGreaterThan(8_000);
    expect(ms).toBeLessThanOrEqual(10_000);
    expect(parseRetryAfter('Wed, 21 Oct 2015 07:28:00 GMT')).toBe(0);
    expect(parseRetryAfter(new Date(Date.now() + 3_600_000).toUTCString())).toBe(60_000);
  });

  it('is undefined for absent or unparseable values', () => {
    expect(parseRetryAfter(undefined)).toBeUndefined();
    expect(parseRetryAfter('')).toBeUndefined();
    expect(parseRetryAfter('soon')).toBeUndefined();
    expect(parseRetryAfter('5s')).toBeUndefined();
    expect(parseRetryAfter('NaN')).toBeUndefined();
  });

  it('takes the first of repeated headers', () => {
    expect(parseRetryAfter(['3', '9'])).toBe(3_000);
    expect(parseRetryAfter([])).toBeUndefined();
  });
});

describe('classify', () => {
  it('maps undici error classes to failure kinds', () => {
    expect(classify(new undiciErrors.HeadersTimeoutError()).kind).toBe('timeout_first_byte');
    expect(classify(new undiciErrors.BodyTimeoutError()).kind).toBe('timeout_idle');
    expect(classify(new undiciErrors.ConnectTimeoutError()).kind).toBe('connect_timeout');
    expect(classify(new undiciErrors.SocketError('other side closed')).kind).toBe('connection_reset');
    expect(classify(new undiciErrors.RequestAbortedError()).kind).toBe('aborted');
  });

  it('maps bare error codes (and codes on the cause) to failure kinds', () => {
    const withCode = (code: string) => Object.assign(new Error(code), { code });
    expect(classify(withCode('UND_ERR_HEADERS_TIMEOUT')).kind).toBe('timeout_first_byte');
    expect(classify(withCode('UND_ERR_BODY_TIMEOUT')).kind).toBe('timeout_idle');
    expect(classify(withCode('UND_ERR_CONNECT_TIMEOUT')).kind).toBe('connect_timeout');
    expect(classify(withCode('ECONNREFUSED')).kind).toBe('connect_refused');
    expect(classify(new TypeError('fetch failed', { cause: withCode('ECONNREFUSED') })).kind).toBe('connect_refused');
    expect(classify(withCode('ECONNRESET')).kind).toBe('connection_reset');
    expect(classify(new Error('x', { cause: withCode('ECONNRESET') })).kind).toBe('connection_reset');
    expect(classify(withCode('UND_ERR_SOCKET')).kind).toBe('connection_reset');
    expect(classify(withCode('UND_ERR_ABORTED')).kind).toBe('aborted');
    expect(classify(withCode('ENOTFOUND')).kind).toBe('network_error');
    expect(classify(new Error('weird')).kind).toBe('network_error');
    expect(classify('not even an error').kind).toBe('network_error');
    expect(classify(undefined).kind).toBe('network_error');
  });

  it('timeouts report isTimeout; others do not', () => {
    expect(new UpstreamFailure('timeout_first_byte', '').isTimeout).toBe(true);
    expect(new UpstreamFailure('timeout_idle', '').isTimeout).toBe(true);
    expect(new UpstreamFailure('timeout_total', '').isTimeout).toBe(true);
    expect(new UpstreamFailure('connect_timeout', '').isTimeout).toBe(true);
    expect(new UpstreamFailure('connect_refused', '').isTimeout).toBe(false);
    expect(new UpstreamFailure('aborted', '').isTimeout).toBe(false);
  });

  it('passes an UpstreamFailure through, and prefers the abort reason of an aborted signal', () => {
    const f = new UpstreamFailure('timeout_total', 'total');
    expect(classify(f)).toBe(f);
    const ac = new AbortController();
    ac.abort(f);
    expect(classify(new undiciErrors.RequestAbortedError(), ac.signal)).toBe(f);
    const plain = new AbortController();
    plain.abort();
    // Even an error that looks like a timeout is 'aborted' once the signal fired.
    expect(classify(new undiciErrors.HeadersTimeoutError(), plain.signal).kind).toBe('aborted');
  });
});

describe('UpstreamClient on loopback sockets', () => {
  let server: http.Server;
  let port: number;
  const client = new UpstreamClient({ connectMs: 1_000, firstByteMs: 150, answerMs: 400, idleMs: 30_000, totalMs: 60_000 });

  const provider = (origin: string): Provider => ({
    name: 'local',
    kind: 'OPENAI_COMPATIBLE',
    preset: PRESETS.OPENAI_COMPATIBLE,
    origin,
    basePath: '/v1',
    query: '',
    headers: { authorization: 'Bearer sk-local' },
    timeoutMs: null,
    modelMap: {},
  });

  const seen: Array<{ url?: string; headers: http.IncomingHttpHeaders; body: string }> = [];

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        seen.push({ url: req.url, headers: req.headers, body });
        if (req.url === '/v1/hang') return; // never answers
        if (req.url === '/v1/slow') return void setTimeout(() => res.end('{"ok":true}'), 300);
        if (req.url === '/v1/drip') {
          // Headers at once, then a chunk every 50 ms for 600 ms.
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          let n = 0;
          const timer = setInterval(() => {
            if (++n < 12) return res.write(`data: ${n}\n\n`);
            clearInterval(timer);
            res.end();
          }, 50);
          res.on('close', () => clearInterval(timer));
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"ok":true}');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });

  afterEach(() => {
    seen.length = 0;
  });

  afterAll(async () => {
    await client.close();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  it('posts to origin + basePath + path with the provider headers and resolves on headers', async () => {
    const res = await client.post(provider(`http://127.0.0.1:${port}`), '/chat/completions', '{"model":"m"}', new AbortController().signal);
    expect(res.status).toBe(200);
    expect((await res.body.read()).toString()).toBe('{"ok":true}');
    expect(seen[0]!.url).toBe('/v1/chat/completions');
    expect(seen[0]!.headers.authorization).toBe('Bearer sk-local');
    expect(seen[0]!.headers['content-type']).toBe('application/json');
    expect(seen[0]!.body).toBe('{"model":"m"}');
  });

  it("a server that never answers → 'timeout_first_byte': after firstByteMs for a stream, answerMs for an answer in one piece", async () => {
    for (const [whole, ms] of [
      [false, 150],
      [true, 400],
    ] as const) {
      const started = Date.now();
      const err = await client.post(provider(`http://127.0.0.1:${port}`), '/hang', '{}', new AbortController().signal, { whole }).catch((e) => e);
      const took = Date.now() - started;
      expect(err).toBeInstanceOf(UpstreamFailure);
      expect((err as UpstreamFailure).kind).toBe('timeout_first_byte');
      expect((err as UpstreamFailure).isTimeout).toBe(true);
      expect(took).toBeGreaterThanOrEqual(ms - 20);
      expect(took).toBeLessThan(ms + 2_000);
    }
  });

  it('times the wait for headers on a kept-alive connection too (undici does not re-arm its own timer reliably)', async () => {
    const origin = provider(`http://127.0.0.1:${port}`);
    const outcomes: string[] = [];
    for (const path of ['/ok', '/ok', '/slow', '/ok', '/slow', '/slow', '/ok', '/slow']) {
      const outcome = await client.post(origin, path, '{}', new AbortController().signal).then(
        async (r) => `${path}:${(await r.body.read()).length > 0 ? 'ok' : 'empty'}`,
        (e: UpstreamFailure) => `${path}:${e.kind}`,
      );
      outcomes.push(outcome);
    }
    // 300 ms to the headers against a first-byte timeout of 150: every slow one times out.
    expect(outcomes).toEqual([
      '/ok:ok',
      '/ok:ok',
      '/slow:timeout_first_byte',
      '/ok:ok',
      '/slow:timeout_first_byte',
      '/slow:timeout_first_byte',
      '/ok:ok',
      '/slow:timeout_first_byte',
    ]);
  });

  it("a provider's timeoutMs bounds the whole call, its body included: 'timeout_total'", async () => {
    const origin = `http://127.0.0.1:${port}`;
    // Without one, the 600-ms drip is read to its end (no chunk is late for the idle timeout).
    const whole = await client.post(provider(origin), '/drip', '{}', new AbortController().signal);
    expect((await whole.body.read()).toString()).toContain('data: 11');
    const limited = await client.post({ ...provider(origin), timeoutMs: 250 }, '/drip', '{}', new AbortController().signal);
    expect(limited.status).toBe(200);
    const err = await limited.body.read().catch((e) => e);
    expect(err).toBeInstanceOf(UpstreamFailure);
    expect((err as UpstreamFailure).kind).toBe('timeout_total');
    // Before the headers too.
    const hung = await client.post({ ...provider(origin), timeoutMs: 100 }, '/hang', '{}', new AbortController().signal).catch((e) => e);
    expect((hung as UpstreamFailure).kind).toBe('timeout_total');
  });

  it('an abort whose reason is an UpstreamFailure surfaces that failure', async () => {
    const ac = new AbortController();
    const total = new UpstreamFailure('timeout_total', 'total timeout');
    setTimeout(() => ac.abort(total), 50);
    const err = await client.post(provider(`http://127.0.0.1:${port}`), '/hang', '{}', ac.signal).catch((e) => e);
    expect(err).toBe(total);
  });

  it("a closed port → 'connect_refused'", async () => {
    // Grab a free port, then close it so nothing listens there.
    const tmp = http.createServer();
    await new Promise<void>((r) => tmp.listen(0, '127.0.0.1', r));
    const closedPort = (tmp.address() as AddressInfo).port;
    await new Promise((r) => tmp.close(r));
    const err = await client.post(provider(`http://127.0.0.1:${closedPort}`), '/chat/completions', '{}', new AbortController().signal).catch((e) => e);
    expect(err).toBeInstanceOf(UpstreamFailure);
    expect((err as UpstreamFailure).kind).toBe('connect_refused');
    expect((err as UpstreamFailure).isTimeout).toBe(false);
  });
});
