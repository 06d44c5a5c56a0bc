// UpstreamBody: what reading a response whole or chunk by chunk resolves and rejects with, on
// real responses from a loopback server through UpstreamClient (the bodies the pipeline gets).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { Cancellation } from '../../src/gateway/cancellation.js';
import { UpstreamClient, UpstreamFailure } from '../../src/gateway/upstream.js';
import { PRESETS } from '../../src/providers/presets.js';
import type { Provider } from '../../src/routing/catalog.js';

let server: http.Server;
let provider: Provider;
const client = new UpstreamClient({ connectMs: 1_000, firstByteMs: 5_000, answerMs: 5_000, idleMs: 1_000, totalMs: 10_000 });
/** Bytes the /flood response managed to write before the server's socket buffer filled. */
let floodWritten = 0;

beforeAll(async () => {
  server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      if (req.url === '/chunks') {
        res.write(Buffer.from('{"a":"\xc3', 'latin1')); // 'é' split across chunks
        setTimeout(() => res.end(Buffer.from('\xa9"}', 'latin1')), 5);
      } else if (req.url === '/big') {
        res.end(Buffer.alloc(100_000, 0x61));
      } else if (req.url === '/stream') {
        let n = 0;
        const timer = setInterval(() => {
          res.write(`data: ${n++}\n\n`);
          if (n === 3) {
            clearInterval(timer);
            setTimeout(() => res.end(), 50);
          }
        }, 2);
      } else if (req.url === '/flood') {
        // Writes until the socket pushes back: a reader that does not read must pause the upstream.
        floodWritten = 0;
        const chunk = Buffer.alloc(16 * 1024, 0x62);
        const write = () => {
          while (res.write(chunk)) floodWritten += chunk.length;
          floodWritten += chunk.length;
          res.once('drain', write);
        };
        write();
        res.on('close', () => res.removeAllListeners('drain'));
      } else {
        // Headers, part of a body, then the connection is cut.
        res.writeHead(200, { 'content-length': '1000' });
        res.write('partial');
        setTimeout(() => res.socket?.destroy(), 5);
      }
    });
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  provider = {
    name: 'local',
    kind: 'OPENAI_COMPATIBLE',
    preset: PRESETS.OPENAI_COMPATIBLE,
    origin,
    basePath: '',
    query: '',
    headers: {},
    timeoutMs: null,
    modelMap: {},
  };
});
afterAll(async () => {
  await client.close();
  server.closeAllConnections();
  await new Promise((ok) => server.close(ok));
});

const post = (path: string, signal = new Cancellation()) => client.post(provider, path, '{}', signal);

test('read() collects every chunk, a multi-byte character split across chunks included', async () => {
  const res = await post('/chunks');
  expect((await res.body.read()).toString('utf8')).toBe('{"a":"é"}');
});

test('a body past the limit is refused and destroyed; a body under it is whole', async () => {
  const refused = await post('/big');
  await expect(refused.body.read(10_000)).rejects.toThrow('upstream body too large');
  expect(refused.body.destroyed).toBe(true);
  const whole = await post('/big');
  expect((await whole.body.read(100_000)).length).toBe(100_000);
});

test('a connection cut mid-body rejects with the transfer error', async () => {
  const res = await post('/cut');
  expect(res.status).toBe(200);
  await expect(res.body.read()).rejects.toThrow();
});

test('iterating yields the chunks in order and ends', async () => {
  const res = await post('/stream');
  let text = '';
  for await (const chunk of res.body) text += chunk.toString();
  expect(text).toBe('data: 0\n\ndata: 1\n\ndata: 2\n\n');
});

test('a body destroyed before it is read rejects at once instead of waiting forever', async () => {
  const res = await post('/flood');
  res.body.destroy();
  await expect(res.body.read()).rejects.toMatchObject({ code: 'ERR_STREAM_PREMATURE_CLOSE' });
  const iterator = res.body[Symbol.asyncIterator]();
  await expect(iterator.next()).rejects.toMatchObject({ code: 'ERR_STREAM_PREMATURE_CLOSE' });
});

test('a reader waiting on a body that is destroyed meanwhile gets a premature close', async () => {
  const res = await post('/stream');
  const iterator = res.body[Symbol.asyncIterator]();
  let text = '';
  while (!text.includes('data: 2')) text += (await iterator.next()).value!.toString();
  const waiting = iterator.next(); // the end has not come yet: it waits
  res.body.destroy();
  await expect(waiting).rejects.toMatchObject({ code: 'ERR_STREAM_PREMATURE_CLOSE' });
});

test('an unread streaming body pauses the upstream: the server is pushed back, not buffered without bound', async () => {
  const res = await post('/flood');
  await new Promise((ok) => setTimeout(ok, 300));
  const before = floodWritten;
  await new Promise((ok) => setTimeout(ok, 300));
  expect(floodWritten).toBe(before); // pushed back
  expect(floodWritten).toBeLessThan(16 * 1024 * 1024); // socket buffers and the high-water mark, not more
  // Reading resumes the transfer.
  const iterator = res.body[Symbol.asyncIterator]();
  let read = 0;
  while (read < before + 256 * 1024) {
    const { value } = await iterator.next();
    read += value!.length;
  }
  expect(floodWritten).toBeGreaterThan(before);
  await iterator.return!();
  expect(res.body.destroyed).toBe(true);
});

test('the request signal aborts a body being read with its reason', async () => {
  const signal = new Cancellation();
  const res = await post('/flood', signal);
  const iterator = res.body[Symbol.asyncIterator]();
  await iterator.next();
  const gone = new UpstreamFailure('timeout_total', 'total timeout');
  signal.abort(gone);
  let error: unknown;
  try {
    for (;;) if ((await iterator.next()).done) break;
  } catch (err) {
    error = err;
  }
  expect(error).toBe(gone);
});

test('a signal already aborted rejects the call without sending it', async () => {
  const signal = new Cancellation();
  signal.abort(new UpstreamFailure('timeout_total', 'total timeout'));
  await expect(post('/chunks', signal)).rejects.toMatchObject({ kind: 'timeout_total' });
});
