// readUpstreamBody: what it resolves and rejects with, on real undici response bodies from a
// loopback server (the shapes the pipeline hands it), and on a plain Readable for the edges.
import http from 'node:http';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { readUpstreamBody } from '../../src/gateway/body.js';

let server: http.Server;
let origin: string;
beforeAll(async () => {
  server = http.createServer((req, res) => {
    if (req.url === '/chunks') {
      res.write('{"a":');
      setTimeout(() => res.end('"é"}'), 5);
    } else if (req.url === '/big') {
      res.end(Buffer.alloc(100_000, 0x61));
    } else {
      // Headers, part of a body, then the connection is cut.
      res.writeHead(200, { 'content-length': '1000' });
      res.write('partial');
      setTimeout(() => res.socket?.destroy(), 5);
    }
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  origin = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});
afterAll(() => new Promise<void>((ok) => server.close(() => ok())));

test('collects every chunk of an undici body, multi-byte characters across chunks included', async () => {
  const res = await request(`${origin}/chunks`);
  expect((await readUpstreamBody(res.body)).toString('utf8')).toBe('{"a":"é"}');
});

test('a body past the limit is refused and its stream destroyed', async () => {
  const res = await request(`${origin}/big`);
  await expect(readUpstreamBody(res.body, 10_000)).rejects.toThrow('upstream body too large');
  expect(res.body.destroyed).toBe(true);
});

test('a connection cut mid-body rejects with the stream error', async () => {
  const res = await request(`${origin}/cut`);
  await expect(readUpstreamBody(res.body)).rejects.toThrow();
});

test('a body destroyed before it is read rejects at once instead of waiting forever', async () => {
  const errored = new Readable({ read() {} }).on('error', () => undefined);
  errored.destroy(new Error('aborted by the client'));
  await new Promise((ok) => setImmediate(ok)); // its 'error' and 'close' have been emitted
  await expect(readUpstreamBody(errored)).rejects.toThrow('aborted by the client');
  const closed = new Readable({ read() {} });
  closed.destroy();
  await new Promise((ok) => setImmediate(ok));
  await expect(readUpstreamBody(closed)).rejects.toMatchObject({ code: 'ERR_STREAM_PREMATURE_CLOSE' });
});

test('a stream destroyed while being read, without an error, rejects as a premature close', async () => {
  const body = new Readable({ read() {} });
  body.push('part');
  const read = readUpstreamBody(body);
  setTimeout(() => body.destroy(), 5);
  await expect(read).rejects.toMatchObject({ code: 'ERR_STREAM_PREMATURE_CLOSE' });
});
