// The request side of both ports against slow and oversized clients (raw sockets, the way a
// slowloris attack sends them): headers and whole requests are bounded in time, /graphql
// bodies in size, long streamed *responses* are not cut, and shutdown does not wait for a
// request that is still arriving.

import type { AddressInfo } from 'node:net';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../support/gateway.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

/**
 * Sends `head` at once, then `drip` one character every `everyMs` (stopping at its end), and
 * resolves with what the server answered once it closes the connection, or after `giveUpMs`.
 */
function slowClient(port: number, head: string, drip: string, everyMs: number, giveUpMs: number) {
  const socket = net.connect(port, '127.0.0.1');
  let received = '';
  const t0 = Date.now();
  socket.on('data', (d) => (received += d.toString('latin1')));
  socket.on('error', () => undefined);
  socket.write(head);
  let i = 0;
  const timer = setInterval(() => {
    if (i < drip.length && !socket.destroyed) socket.write(drip[i++]!);
  }, everyMs);
  const done = new Promise<{ received: string; closedAfterMs: number | null }>((resolve) => {
    const giveUp = setTimeout(() => finish(null), giveUpMs);
    socket.on('close', () => finish(Date.now() - t0));
    function finish(closedAfterMs: number | null) {
      clearTimeout(giveUp);
      clearInterval(timer);
      socket.destroy();
      resolve({ received, closedAfterMs });
    }
  });
  return { socket, done };
}

async function metric(gw: TestGateway, line: RegExp): Promise<number> {
  const text = await (await fetch(`${gw.url}/metrics`)).text();
  const m = text.split('\n').find((l) => line.test(l));
  return m ? Number(m.split(' ').at(-1)) : 0;
}

const HEADERS_MS = 500;
const REQUEST_MS = 1_500;

describe('request timeouts and body limits', () => {
  let gw: TestGateway;
  let adminPort: number;
  let secret: string;
  let mainPort: number;

  beforeAll(async () => {
    adminPort = await freePort();
    gw = await startTestGateway({
      env: {
        TOLLGATE_HEADERS_TIMEOUT_MS: String(HEADERS_MS),
        TOLLGATE_REQUEST_TIMEOUT_MS: String(REQUEST_MS),
        TOLLGATE_ADMIN_PORT: String(adminPort),
        TOLLGATE_MAX_BODY_BYTES: String(64 * 1024),
      },
    });
    secret = (await gw.createKey('inbound')).secret;
    mainPort = Number(new URL(gw.url).port);
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('answers 408 and closes a connection whose headers come too slowly, on the main and the admin port', async () => {
    for (const port of [mainPort, adminPort]) {
      const drip = Array.from({ length: 40 }, (_, i) => `x-slow-${i}: 1\r\n`).join('');
      const { done } = slowClient(port, 'GET /healthz HTTP/1.1\r\nHost: t\r\n', drip, 20, 5_000);
      const { received, closedAfterMs } = await done;
      expect(received, `port ${port}`).toMatch(/^HTTP\/1\.1 408 Request Timeout/);
      expect(closedAfterMs).not.toBeNull();
      expect(closedAfterMs!).toBeLessThan(HEADERS_MS + 3_000); // the headers never end: only the timeout closes it
    }
  });

  it('answers 408 to a body that comes too slowly and records it in one receipt', async () => {
    const before = gw.started.runtime.journal.stats().appendedRecords;
    const body = JSON.stringify({ model: 'chat-default', messages: [{ role: 'user', content: 'slowly' }] });
    const head =
      `POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer ${secret}\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`;
    const { done } = slowClient(mainPort, head, body, 150, 8_000);
    const { received, closedAfterMs } = await done;
    expect(received).toMatch(/^HTTP\/1\.1 408/);
    expect(closedAfterMs!).toBeLessThan(REQUEST_MS + 3_000); // the whole body would take ~12 s
    await expect.poll(() => gw.started.runtime.journal.stats().appendedRecords - before).toBe(1);
    expect(await metric(gw, /^tollgate_request_errors_total\{.*code="request_timeout"/)).toBe(1);
  });

  it('records a client that leaves while sending its body as cancelled (499), not as an internal error', async () => {
    const before = gw.started.runtime.journal.stats().appendedRecords;
    const body = JSON.stringify({ model: 'chat-default', messages: [{ role: 'user', content: 'gone half way' }] });
    const socket = net.connect(mainPort, '127.0.0.1');
    socket.on('error', () => undefined);
    await new Promise((r) => socket.once('connect', r));
    socket.write(
      `POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer ${secret}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 20)}`,
    );
    await sleep(100);
    socket.destroy();
    await expect.poll(() => gw.started.runtime.journal.stats().appendedRecords - before).toBe(1);
    expect(await metric(gw, /^tollgate_request_errors_total\{.*code="client_cancelled"/)).toBe(1);
    expect(await metric(gw, /^tollgate_request_errors_total\{.*code="internal_error"/)).toBe(0);
  });

  it('does not cut a streamed response that lasts longer than the request timeout', async () => {
    gw.sim.behave('long-stream', { tokensPerSecond: 4, completionTokens: 10 }); // ~2.5 s
    const t0 = Date.now();
    const stream = await gw
      .client(secret)
      .chat.completions.create({ model: 'sim/long-stream', messages: [{ role: 'user', content: 'take your time' }], stream: true });
    let chunks = 0;
    let finish: string | null = null;
    for await (const chunk of stream) {
      chunks++;
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(Date.now() - t0).toBeGreaterThan(REQUEST_MS + 500);
    expect(finish).toBe('stop');
    expect(chunks).toBeGreaterThanOrEqual(10);
  });

  it('limits /graphql bodies like the proxy: 413 beyond TOLLGATE_MAX_BODY_BYTES, declared or chunked', async () => {
    const graphqlUrl = `http://127.0.0.1:${adminPort}/graphql`;
    const small = await fetch(graphqlUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${gw.adminToken}` },
      body: JSON.stringify({ query: '{ teams { name } }' }),
    });
    expect(small.status).toBe(200);
    expect(((await small.json()) as any).data.teams.map((t: { name: string }) => t.name)).toContain('inbound');

    const padding = 'x'.repeat(100 * 1024);
    const large = await fetch(graphqlUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${gw.adminToken}` },
      body: JSON.stringify({ query: `{ teams { name } } # ${padding}` }),
    });
    expect(large.status).toBe(413);
    expect(((await large.json()) as any).errors[0]).toMatchObject({ message: 'Request body exceeds 65536 bytes.', extensions: { code: 'REQUEST_TOO_LARGE' } });

    // No Content-Length: counted as it arrives.
    const socket = net.connect(adminPort, '127.0.0.1');
    let received = '';
    socket.on('data', (d) => (received += d));
    socket.on('error', () => undefined);
    socket.write(`POST /graphql HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`);
    for (let i = 0; i < 10 && !socket.destroyed; i++) {
      socket.write(`${(16 * 1024).toString(16)}\r\n${'y'.repeat(16 * 1024)}\r\n`);
      await sleep(5);
    }
    await new Promise((r) => (socket.destroyed ? r(null) : socket.on('close', r)));
    expect(received).toMatch(/^HTTP\/1\.1 413/);
  });
});

describe('shutdown while requests are still arriving', () => {
  let gw: TestGateway;
  // Started in the hook: a gateway's start may take longer than a test's timeout on a busy machine.
  beforeAll(async () => {
    gw = await startTestGateway({ env: { TOLLGATE_DRAIN_TIMEOUT_MS: '20000' } });
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('cuts requests whose headers or body have not arrived, finishes the ones that have, and does not wait for the drain timeout', async () => {
    const port = Number(new URL(gw.url).port);
    const { secret } = await gw.createKey('drain');
    const before = gw.started.runtime.journal.stats().appendedRecords;

    // In flight and whole: a stream of ~1 s that must finish.
    gw.sim.behave('drain-stream', { tokensPerSecond: 10, completionTokens: 10 });
    const streamed = (async () => {
      const stream = await gw
        .client(secret)
        .chat.completions.create({ model: 'sim/drain-stream', messages: [{ role: 'user', content: 'finish me' }], stream: true });
      let text = '';
      for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
      return text;
    })();
    // Still arriving: half a body, and half a head.
    const halfBody = slowClient(
      port,
      `POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer ${secret}\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{"model":`,
      '',
      1_000,
      30_000,
    );
    const halfHead = slowClient(port, 'POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\n', '', 1_000, 30_000);
    await sleep(300); // both have reached the server, the stream has started
    await expect.poll(() => gw.sim.requests.length, { timeout: 10_000 }).toBe(1);

    const t0 = Date.now();
    await gw.started.stop();
    const stopMs = Date.now() - t0;

    expect(stopMs).toBeLessThan(10_000); // not the 20 s drain timeout
    expect((await streamed).length).toBeGreaterThan(0); // the whole request was answered to the end
    expect((await halfBody.done).closedAfterMs).not.toBeNull();
    expect((await halfHead.done).closedAfterMs).not.toBeNull();
    // One receipt each for the stream and for the cut body (a request without headers has none).
    expect(gw.started.runtime.journal.stats().appendedRecords - before).toBe(2);
  });
});
