// Exactly one receipt per request, whatever the input (DESIGN §4, §6). Hostile strings —
// non-Latin-1 (a Chinese model alias is normal for ARK/Qwen/Zhipu users), CR/LF, NUL, lone
// surrogates, percent signs, header-injection attempts, very long values — go into every
// attributed field (model, route, feature, task id, task type, end user, metadata) on every
// endpoint, streaming and not, through the official client and through raw sockets. Each
// answer must be a non-5xx with a receipt id; each id stored once; every receipt verifies.
import net from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { headerValue } from '../../src/gateway/endings.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { expectOneReceiptEach } from '../support/receipts.js';

let gw: TestGateway;

beforeAll(async () => {
  gw = await startTestGateway();
}, 120_000);
afterAll(async () => {
  await gw?.close();
});

const HOSTILE = [
  'ok-模型',
  '豆包-长文本',
  'line\r\nbreak',
  'x\r\nSet-Cookie: stolen=1',
  'nul\u0000byte',
  'tab\there',
  'lone \ud800 surrogate',
  '100% sure',
  '%E6%A8%A1',
  'emoji 🎉🔥',
  'rtl \u202e override',
  'zero\u200bwidth',
  'para\u2028sep',
  '"quoted" \\ back\\slash',
  "'; DROP TABLE receipts; --",
  '<script>alert(1)</script>',
  ' ',
  '',
  'a'.repeat(300),
  'ü'.repeat(200),
];

const hostile = fc.oneof(fc.constantFrom(...HOSTILE), fc.string({ unit: 'binary', maxLength: 40 }), fc.string({ unit: 'grapheme', maxLength: 20 }));

/** A model as a client might send it: a pin on a real provider, an unknown alias, or a route. */
const model = fc.oneof(
  hostile.map((s) => `sim/${s}`),
  hostile,
  fc.constant('chat-default'),
);

const attribution = fc.record({
  feature: hostile,
  taskId: hostile,
  taskType: hostile,
  user: hostile,
  metadataKey: hostile,
  metadataValue: hostile,
});

type Attribution = typeof attribution extends fc.Arbitrary<infer T> ? T : never;

function bodyFor(endpoint: string, m: string, a: Attribution, stream: boolean): Record<string, unknown> {
  const metadata = { feature: a.feature, task_id: a.taskId, task_type: a.taskType, [a.metadataKey || 'k']: a.metadataValue };
  switch (endpoint) {
    case '/v1/chat/completions':
      return { model: m, messages: [{ role: 'user', content: `hello ${a.metadataValue}` }], user: a.user, metadata, stream };
    case '/v1/responses':
      return { model: m, input: `hello ${a.metadataValue}`, user: a.user, metadata, stream };
    default:
      return { model: m, input: `hello ${a.metadataValue}`, user: a.user, metadata };
  }
}

/** Header values fetch can send as they are (visible ASCII and Latin-1); others percent-encoded. */
const asHeader = (s: string) => (/^[\t\x20-\x7e\x80-\xff]*$/.test(s) && s.trim() === s ? s : headerValue(s));

describe('one receipt per request, whatever the input', () => {
  it.each([
    ['/v1/chat/completions', false],
    ['/v1/chat/completions', true],
    ['/v1/responses', false],
    ['/v1/responses', true],
    ['/v1/embeddings', false],
  ] as const)('%s (stream: %s): hostile attribution and models through fetch', async (endpoint, stream) => {
    const key = await gw.createKey(`team-hostile-${endpoint.split('/').pop()}-${stream}`);
    const receiptIds: Array<string | null> = [];
    await fc.assert(
      fc.asyncProperty(model, attribution, fc.boolean(), async (m, a, viaHeaders) => {
        const headers: Record<string, string> = { authorization: `Bearer ${key.secret}`, 'content-type': 'application/json' };
        if (viaHeaders) {
          headers['x-tollgate-feature'] = asHeader(a.feature);
          headers['x-tollgate-task-id'] = asHeader(a.taskId);
          headers['x-tollgate-task-type'] = asHeader(a.taskType);
          headers['x-tollgate-user'] = asHeader(a.user);
        }
        const res = await fetch(`${gw.url}${endpoint}`, { method: 'POST', headers, body: JSON.stringify(bodyFor(endpoint, m, a, stream)) });
        const text = await res.text();
        receiptIds.push(res.headers.get('x-tollgate-receipt-id'));
        expect(res.status, text.slice(0, 300)).toBeLessThan(500);
        // Values built from the request come back percent-encoded, never broken.
        const route = res.headers.get('x-tollgate-route');
        if (route !== null) expect(decodeURIComponent(route)).toBe(m);
        const pinned = res.headers.get('x-tollgate-model');
        if (pinned !== null && m.startsWith('sim/')) expect(decodeURIComponent(pinned)).toBe(m.slice(4));
      }),
      { numRuns: 25, seed: 20261204 },
    );
    await expectOneReceiptEach(gw, key.teamId, receiptIds);
  });

  it('the official openai client, with a Chinese model alias pinned and streamed', async () => {
    const key = await gw.createKey('team-hostile-sdk');
    const client = gw.client(key.secret);
    const ids: string[] = [];
    for (const stream of [false, true]) {
      const { response } = await client.chat.completions
        .create({ model: 'sim/ok-模型', messages: [{ role: 'user', content: '你好' }], stream } as any)
        .withResponse();
      expect(response.status).toBe(200);
      expect(response.headers.get('x-tollgate-model')).toBe('ok-%E6%A8%A1%E5%9E%8B');
      expect(response.headers.get('x-tollgate-route')).toBe('sim/ok-%E6%A8%A1%E5%9E%8B');
      ids.push(response.headers.get('x-tollgate-receipt-id')!);
    }
    const r = await client.responses.create({ model: 'sim/豆包-长文本', input: '你好' }).withResponse();
    expect(r.data.output_text.length).toBeGreaterThan(0);
    ids.push(r.response.headers.get('x-tollgate-receipt-id')!);
    const stored = await expectOneReceiptEach(gw, key.teamId, ids);
    expect(stored.map((s) => s.model).sort()).toEqual(['ok-模型', 'ok-模型', '豆包-长文本']);
  });

  it('raw sockets: Latin-1 and UTF-8 bytes in headers, CR/LF and NUL in the body', async () => {
    const key = await gw.createKey('team-hostile-raw');
    const ids: string[] = [];
    const cases: Array<{ headers: Buffer; body: string }> = [
      // UTF-8 bytes of 模型 as a header value: Node reads them as Latin-1.
      { headers: Buffer.concat([Buffer.from('x-tollgate-feature: '), Buffer.from('模型', 'utf8'), Buffer.from('\r\n')]), body: JSON.stringify({ model: 'sim/ok-模型', messages: [{ role: 'user', content: 'x' }] }) },
      { headers: Buffer.from('x-tollgate-task-type: caf\xe9\r\n', 'latin1'), body: JSON.stringify({ model: 'sim/a\r\nb', messages: [{ role: 'user', content: 'x' }], stream: true }) },
      { headers: Buffer.from('x-tollgate-user: \xff\xfe\r\n', 'latin1'), body: JSON.stringify({ model: 'sim/nul\u0000', input: 'x' }) },
    ];
    for (const [i, c] of cases.entries()) {
      const path = i === 2 ? '/v1/responses' : '/v1/chat/completions';
      const { status, headers } = await rawPost(path, key.secret, c.headers, c.body);
      expect(status, `case ${i}`).toBeLessThan(500);
      expect(headers['x-tollgate-receipt-id'], `case ${i}`).toBeDefined();
      ids.push(headers['x-tollgate-receipt-id']!);
    }
    // Control characters in a header value never reach Tollgate: Node's HTTP parser refuses
    // the request (400) before there is a key or a body, so there is nothing to record.
    const refused = await rawPost('/v1/chat/completions', key.secret, Buffer.from('x-tollgate-user: \x01\x7f\r\n', 'latin1'), '{}');
    expect(refused.status).toBe(400);
    expect(refused.headers['x-tollgate-receipt-id']).toBeUndefined();
    await expectOneReceiptEach(gw, key.teamId, ids);
  });
});

/** A POST written byte for byte on a socket; the status and headers of the answer. */
function rawPost(path: string, secret: string, extraHeaders: Buffer, body: string): Promise<{ status: number; headers: Record<string, string> }> {
  const url = new URL(gw.url);
  const payload = Buffer.from(body, 'utf8');
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(url.port), url.hostname);
    let received = Buffer.alloc(0);
    socket.on('data', (d) => (received = Buffer.concat([received, d])));
    socket.on('error', reject);
    socket.on('close', () => {
      const head = received.toString('latin1').split('\r\n\r\n')[0]!;
      const [statusLine, ...lines] = head.split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of lines) {
        const at = line.indexOf(':');
        headers[line.slice(0, at).toLowerCase()] = line.slice(at + 1).trim();
      }
      resolve({ status: Number(statusLine!.split(' ')[1]), headers });
    });
    socket.write(
      Buffer.concat([
        Buffer.from(`POST ${path} HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: Bearer ${secret}\r\nContent-Type: application/json\r\nContent-Length: ${payload.length}\r\nConnection: close\r\n`),
        extraHeaders,
        Buffer.from('\r\n'),
        payload,
      ]),
    );
  });
}
