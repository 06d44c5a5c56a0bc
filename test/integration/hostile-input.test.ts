// Exactly one receipt per request, whatever the input (DESIGN §4, §6). Hostile strings —
// non-Latin-1 (a Chinese model alias is normal for ARK/Qwen/Zhipu users), CR/LF, NUL, lone
// surrogates, percent signs, header-injection attempts, very long values — go into every
// attributed field (model, route, feature, task id, task type, end user, metadata) on every
// endpoint, streaming and not, through the official client and through raw sockets. Each
// answer must be a non-5xx with a receipt id; each id stored once; every receipt verifies.
import net from 'node:net';
import fc from 'fast-check';
import { APIError } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { headerValue } from '../../src/gateway/endings.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { expectOneReceiptEach, storedReceipts } from '../support/receipts.js';

let gw: TestGateway;

beforeAll(async () => {
  gw = await startTestGateway();
  // An Anthropic upstream too, so pinned Messages requests take the native pass-through path
  // (where metadata.user_id travels upstream) as well as the translated one.
  await gw.started.runtime.adminStore.providers.upsertProvider({ name: 'claude', kind: 'ANTHROPIC', baseUrl: gw.sim.origin, apiKey: 'sk-ant-upstream' });
  await gw.started.runtime.app.catalog.refresh();
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

/** DESIGN §4: the header wins when it holds anything but blanks, else the body; trimmed, at most 256 characters. */
const attributed = (header: string, body: string): string | null =>
  header.trim() ? header.trim().slice(0, 256) : body.trim() ? body.trim().slice(0, 256) : null;

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

  it.each([false, true])('/v1/messages (stream: %s): hostile attribution in headers and metadata.user_id', async (stream) => {
    const key = await gw.createKey(`team-hostile-messages-${stream}`);
    const messagesModel = fc.oneof(
      model,
      hostile.map((s) => `claude/${s}`),
    );
    const receiptIds: Array<string | null> = [];
    const expectedEndUser = new Map<string, string | null>();
    await fc.assert(
      fc.asyncProperty(messagesModel, attribution, fc.boolean(), fc.boolean(), async (m, a, viaHeaders, bearer) => {
        // Anthropic SDKs send the key as x-api-key; some clients send a Bearer token. Both count.
        const headers: Record<string, string> = bearer
          ? { authorization: `Bearer ${key.secret}`, 'content-type': 'application/json' }
          : { 'x-api-key': key.secret, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' };
        if (viaHeaders) {
          headers['x-tollgate-feature'] = asHeader(a.feature);
          headers['x-tollgate-task-id'] = asHeader(a.taskId);
          headers['x-tollgate-task-type'] = asHeader(a.taskType);
          headers['x-tollgate-user'] = asHeader(a.user);
        }
        // Anthropic's metadata knows only user_id (the end user); Tollgate's own keys ride beside it.
        const metadata = { user_id: a.user, feature: a.feature, task_id: a.taskId, task_type: a.taskType, [a.metadataKey || 'k']: a.metadataValue };
        const body = { model: m, max_tokens: 64, system: a.metadataValue, messages: [{ role: 'user', content: `hello ${a.metadataValue}` }], metadata, stream };
        const res = await fetch(`${gw.url}/v1/messages`, { method: 'POST', headers, body: JSON.stringify(body) });
        const text = await res.text();
        receiptIds.push(res.headers.get('x-tollgate-receipt-id'));
        expect(res.status, text.slice(0, 300)).toBeLessThan(500);
        if (res.status >= 400) expect(JSON.parse(text)).toMatchObject({ type: 'error', error: { type: expect.any(String), message: expect.any(String) } });
        else if (stream) expect(text).toContain('event: message_stop');
        else expect(JSON.parse(text)).toMatchObject({ type: 'message', role: 'assistant' });
        const route = res.headers.get('x-tollgate-route');
        if (route !== null) expect(decodeURIComponent(route)).toBe(m);
        // Where it was answered, the end user is the header's value, else metadata.user_id.
        if (res.status === 200)
          expectedEndUser.set(res.headers.get('x-tollgate-receipt-id')!, attributed(viaHeaders ? headers['x-tollgate-user']! : '', a.user));
      }),
      { numRuns: 25, seed: 20261205 },
    );
    const stored = await expectOneReceiptEach(gw, key.teamId, receiptIds);
    expect(stored.every((r) => r.endpoint === '/v1/messages')).toBe(true);
    expect(expectedEndUser.size).toBeGreaterThan(0);
    for (const r of stored) if (expectedEndUser.has(r.receipt_id)) expect(r.end_user, r.receipt_id).toBe(expectedEndUser.get(r.receipt_id));
    // The property reached past validation too: some answers came from an upstream, some were refused.
    expect(stored.some((r) => r.status === 'ok')).toBe(true);
    expect(stored.some((r) => r.status === 'rejected')).toBe(true);
  });

  it('/v1/messages/count_tokens: hostile models and metadata never 5xx and write no receipt', async () => {
    const key = await gw.createKey('team-hostile-count-tokens');
    const statuses: number[] = [];
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          model,
          hostile.map((s) => `claude/${s}`),
        ),
        attribution,
        async (m, a) => {
          const body = {
            model: m,
            system: a.feature,
            messages: [{ role: 'user', content: `count ${a.metadataValue}` }],
            metadata: { user_id: a.user, [a.metadataKey || 'k']: a.metadataValue },
          };
          const res = await fetch(`${gw.url}/v1/messages/count_tokens`, {
            method: 'POST',
            headers: {
              'x-api-key': key.secret,
              'content-type': 'application/json',
              'x-tollgate-feature': asHeader(a.feature),
              'x-tollgate-user': asHeader(a.user),
            },
            body: JSON.stringify(body),
          });
          const json = await res.json();
          statuses.push(res.status);
          expect(res.status, JSON.stringify(json).slice(0, 300)).toBeLessThan(500);
          if (res.status === 200) expect(json.input_tokens).toBeGreaterThan(0);
          else expect(json).toMatchObject({ type: 'error', error: { type: expect.any(String) } });
          expect(res.headers.get('x-tollgate-receipt-id')).toBeNull();
        },
      ),
      { numRuns: 25, seed: 20261206 },
    );
    expect(statuses).toContain(200);
    expect(await storedReceipts(gw, key.teamId)).toEqual([]);
  });

  it('the official openai client: hostile attribution headers (default and per request) and metadata', async () => {
    const key = await gw.createKey('team-hostile-sdk-headers');
    const receiptIds: Array<string | null> = [];
    const expected = new Map<string, { feature: string | null; task_id: string | null; end_user: string | null }>();
    let answered = 0;
    await fc.assert(
      fc.asyncProperty(attribution, attribution, fc.constantFrom('chat', 'chat-stream', 'responses', 'responses-stream', 'embeddings'), async (d, a, call) => {
        // The client's defaultHeaders carry one set; a request's own headers override some of them.
        const client = gw.client(key.secret, {
          defaultHeaders: { 'x-tollgate-feature': asHeader(d.feature), 'x-tollgate-task-type': asHeader(d.taskType), 'x-tollgate-user': asHeader(d.user) },
        });
        const headers = { 'x-tollgate-task-id': asHeader(a.taskId), 'x-tollgate-user': asHeader(a.user) };
        const metadata = { feature: a.feature, task_id: a.taskId, task_type: a.taskType, [a.metadataKey || 'k']: a.metadataValue };
        // openai's metadata values are strings up to 512 characters; the client does not check.
        const run = async () => {
          switch (call) {
            case 'chat':
            case 'chat-stream': {
              const stream = call === 'chat-stream';
              const r = await client.chat.completions
                .create({ model: 'chat-default', messages: [{ role: 'user', content: a.metadataValue || 'hi' }], metadata, user: a.user, stream } as any, {
                  headers,
                })
                .withResponse();
              if (stream) for await (const _ of r.data as any) void _;
              return r.response;
            }
            case 'responses':
            case 'responses-stream': {
              const stream = call === 'responses-stream';
              const r = await client.responses
                .create({ model: 'chat-default', input: a.metadataValue || 'hi', metadata, user: a.user, stream } as any, { headers })
                .withResponse();
              if (stream) for await (const _ of r.data as any) void _;
              return r.response;
            }
            default:
              return (await client.embeddings.create({ model: 'embed-default', input: a.metadataValue || 'hi', user: a.user }, { headers }).withResponse())
                .response;
          }
        };
        try {
          const response = await run();
          answered++;
          const id = response.headers.get('x-tollgate-receipt-id');
          receiptIds.push(id);
          // A request's own header overrides the client's default; either beats the body.
          const inBody = call === 'embeddings' ? { feature: '', taskId: '' } : { feature: a.feature, taskId: a.taskId };
          expected.set(id!, {
            feature: attributed(asHeader(d.feature), inBody.feature),
            task_id: attributed(headers['x-tollgate-task-id'], inBody.taskId),
            end_user: attributed(headers['x-tollgate-user'], a.user),
          });
        } catch (err) {
          if (!(err instanceof APIError) || err.status === undefined) throw err;
          expect(err.status, err.message).toBeLessThan(500);
          receiptIds.push(err.headers?.get('x-tollgate-receipt-id') ?? null);
        }
      }),
      { numRuns: 30, seed: 20261207 },
    );
    expect(answered).toBeGreaterThan(0);
    const stored = await expectOneReceiptEach(gw, key.teamId, receiptIds);
    for (const r of stored)
      if (expected.has(r.receipt_id))
        expect({ feature: r.feature, task_id: r.task_id, end_user: r.end_user }, r.receipt_id).toEqual(expected.get(r.receipt_id));
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
      {
        headers: Buffer.concat([Buffer.from('x-tollgate-feature: '), Buffer.from('模型', 'utf8'), Buffer.from('\r\n')]),
        body: JSON.stringify({ model: 'sim/ok-模型', messages: [{ role: 'user', content: 'x' }] }),
      },
      {
        headers: Buffer.from('x-tollgate-task-type: caf\xe9\r\n', 'latin1'),
        body: JSON.stringify({ model: 'sim/a\r\nb', messages: [{ role: 'user', content: 'x' }], stream: true }),
      },
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
        Buffer.from(
          `POST ${path} HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: Bearer ${secret}\r\nContent-Type: application/json\r\nContent-Length: ${payload.length}\r\nConnection: close\r\n`,
        ),
        extraHeaders,
        Buffer.from('\r\n'),
        payload,
      ]),
    );
  });
}
