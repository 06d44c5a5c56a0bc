// A provider that points back at Tollgate (DESIGN §4, loop_detected): every upstream request
// carries this deployment's x-tollgate-hop marker; directly at Tollgate's own socket the
// connection is refused (and the route fails over); through anything else (here a TCP
// forwarder) the request arrives with the marker and is answered 508, so one client request
// makes one upstream call, not a cascade.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deploymentMarker } from '../../src/net/hop.js';
import { startTcpProxy, type TcpProxy } from '../faults/tcp-proxy.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';

let gw: TestGateway;
let forwarder: TcpProxy;
let key: { secret: string; id: string; teamId: string };
const appended = () => gw.started.runtime.journal.stats().appendedRecords;

beforeAll(async () => {
  // A low failed-auth limit: a looped request must never count as a failed authentication.
  gw = await startTestGateway({ env: { TOLLGATE_AUTH_FAIL_LIMIT: '2' } });
  key = await gw.createKey('loops');
  const self = new URL(gw.url);
  forwarder = await startTcpProxy({ host: self.hostname, port: Number(self.port) });
  const store = gw.started.runtime.adminStore;
  await store.providers.upsertProvider({ name: 'self', kind: 'OPENAI_COMPATIBLE', baseUrl: `${gw.url}/v1`, apiKey: 'self-upstream-key' });
  await store.providers.upsertProvider({ name: 'loop', kind: 'OPENAI_COMPATIBLE', baseUrl: forwarder.via(`${gw.url}/v1`), apiKey: 'loop-upstream-key' });
  await store.routing.upsertRoute({
    name: 'self-first',
    strategy: 'PRIORITY',
    targets: [
      { provider: 'self', model: 'm', priority: 0 },
      { provider: 'sim', model: 'sim-large', priority: 1 },
    ],
  });
  await gw.started.runtime.app.catalog.refresh();
});
afterAll(async () => {
  await gw?.close();
  await forwarder?.close();
});

async function chat(model: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${gw.baseURL}/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key.secret}`, 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
  });
  return {
    status: res.status,
    json: (await res.json()) as any,
    receiptId: res.headers.get('x-tollgate-receipt-id')!,
    attempts: res.headers.get('x-tollgate-attempts'),
  };
}

async function receipt(id: string) {
  return (await (await fetch(`${gw.baseURL}/receipts/${id}`, { headers: { authorization: `Bearer ${gw.adminToken}` } })).json()) as any;
}

describe('loop protection', () => {
  it("marks every upstream request with this deployment's marker (not the admin token)", async () => {
    gw.sim.reset();
    expect((await chat('chat-default')).status).toBe(200);
    const marker = gw.sim.requests.at(-1)!.headers['x-tollgate-hop'];
    expect(marker).toBe(deploymentMarker(gw.adminToken));
    expect(String(marker)).not.toContain(gw.adminToken);
  });

  it("refuses to connect to Tollgate's own socket, like a refused connection, and the route fails over", async () => {
    const before = appended();
    const failedOver = await chat('self-first');
    expect(failedOver.status).toBe(200);
    expect(failedOver.attempts).toBe('2');
    expect((await receipt(failedOver.receiptId)).attempts.map((a: { provider: string; error: string | null }) => [a.provider, a.error])).toEqual([
      ['self', 'connect_refused'],
      ['sim', null],
    ]);
    const pinned = await chat('self/m');
    expect(pinned.status).toBe(502);
    expect(pinned.json.error).toMatchObject({ type: 'api_error', code: 'upstream_error' });
    expect(pinned.json.error.message).not.toMatch(/127\.0\.0\.1/);
    // No request reached Tollgate through the refused provider: one receipt per client request.
    await expect.poll(() => appended() - before).toBe(2);
  });

  it('answers 508 loop_detected to a request that comes back through another path: one upstream call, not a cascade', async () => {
    for (let round = 0; round < 3; round++) {
      const before = appended();
      const acceptedBefore = forwarder.accepted();
      const looped = await chat('loop/m');
      expect(looped.status).toBe(508);
      expect(looped.json).toEqual({
        error: { message: expect.stringContaining('points back at Tollgate'), type: 'api_error', param: null, code: 'loop_detected' },
      });
      // The client's request and the one that came back: two receipts, and nothing more.
      await expect.poll(() => appended() - before).toBe(2);
      expect(forwarder.accepted() - acceptedBefore).toBeLessThanOrEqual(1);
      const outer = await receipt(looped.receiptId);
      expect(outer.attempts).toHaveLength(1);
      expect(outer.attempts[0]).toMatchObject({ provider: 'loop', status: 508 });
    }
    // Three loops later the client is not throttled: the looped requests never counted as bad keys.
    expect((await chat('chat-default')).status).toBe(200);
  });

  it('lets through a request marked by another deployment (Tollgate behind Tollgate)', async () => {
    const r = await chat('chat-default', { 'x-tollgate-hop': deploymentMarker('another deployment') });
    expect(r.status).toBe(200);
  });
});
