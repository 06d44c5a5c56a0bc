// Fault 7: 1000 idle websockets on /graphql that never send connection_init. Each must be
// closed with 4408 after the 3 s init timeout, and memory must come back flat.
import v8 from 'node:v8';
import vm from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { expectNothingLost } from './support.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

let gw: TestGateway;
beforeAll(async () => {
  gw = await startTestGateway();
});
afterAll(async () => {
  await gw?.close();
});

async function idleSockets(n: number): Promise<{ codes: Map<number, number>; closedAfterMs: number[] }> {
  const url = `${gw.url.replace(/^http/, 'ws')}/graphql`;
  const codes = new Map<number, number>();
  const closedAfterMs: number[] = [];
  await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<void>((resolve) => {
          const ws = new WebSocket(url, 'graphql-transport-ws');
          let openedAt = 0;
          ws.on('open', () => (openedAt = Date.now()));
          ws.on('error', () => undefined);
          ws.on('close', (code) => {
            codes.set(code, (codes.get(code) ?? 0) + 1);
            if (openedAt) closedAfterMs.push(Date.now() - openedAt);
            resolve();
          });
        }),
    ),
  );
  return { codes, closedAfterMs: closedAfterMs.sort((a, b) => a - b) };
}

describe('1000 idle websockets without connection_init', () => {
  it('closes every one with 4408 after ~3 s, and memory is flat afterwards', async ({ annotate }) => {
    await idleSockets(100); // warm-up (ws, yoga, JIT)
    gc();
    const rss0 = process.memoryUsage().rss;
    const heap0 = process.memoryUsage().heapUsed;
    const t0 = Date.now();
    const { codes, closedAfterMs } = await idleSockets(1000);
    const took = Date.now() - t0;
    await new Promise((r) => setTimeout(r, 200));
    gc();
    const rssDelta = process.memoryUsage().rss - rss0;
    const heapDelta = process.memoryUsage().heapUsed - heap0;
    const p = (q: number) => closedAfterMs[Math.floor((closedAfterMs.length - 1) * q)]!;
    await annotate(
      `1000 idle websockets: closes ${JSON.stringify([...codes])} in ${took} ms (open→close min ${p(0)} / p50 ${p(0.5)} / max ${p(1)} ms), ` +
        `heap Δ ${(heapDelta / 2 ** 20).toFixed(1)} MiB, RSS Δ ${(rssDelta / 2 ** 20).toFixed(1)} MiB`,
      'observed',
    );
    expect(codes.get(4408)).toBe(1000);
    expect(closedAfterMs).toHaveLength(1000);
    // Not before the 3 s timeout (the server's timer starts at the upgrade, a little before
    // the client sees 'open' when 1000 connect at once).
    expect(p(0)).toBeGreaterThanOrEqual(2500);
    expect(p(1)).toBeLessThan(6000); // and not much after it
    // Everything they held is released: bounds for 1000 sockets on both ends in this process.
    expect(heapDelta).toBeLessThan(8 * 2 ** 20);
    expect(rssDelta).toBeLessThan(48 * 2 ** 20);
    // The proxy is unaffected meanwhile.
    const { secret } = await gw.createKey('team-ws');
    const { response } = await gw
      .client(secret)
      .chat.completions.create({ model: 'chat-default', messages: [{ role: 'user', content: 'hi' }] })
      .withResponse();
    expect(response.status).toBe(200);
    await gw.started.runtime.journal.flush();
    await expectNothingLost(gw.started.runtime.clickhouse.client, { completed: [response.headers.get('x-tollgate-receipt-id')!], total: 1 });
  }, 60_000);
});
