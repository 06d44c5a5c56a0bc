// Fault 3: kill -9 timed to a flush. The Tollgate child process inserts receipts into the
// test ClickHouse endpoint through the fault proxy, whose answers are held back: the kill
// lands after ClickHouse applied an insert and before Tollgate saw the acknowledgement (so
// its segment is still in the WAL). The restart replays that segment with the same
// deduplication token: nothing lost, nothing doubled.
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createClient } from '@clickhouse/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type SimulatedProvider, startSimulatedProvider } from '../../src/sim/simulated.js';
import { scratchDatabase } from '../support/gateway.js';
import { runTollgate, startTollgateProcess } from '../support/processes.js';
import { type ClickHouseHttp, startClickHouseHttp } from './clickhouse-http.js';
import { chat, eventually, expectNothingLost } from './support.js';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.js';

let tmp: string;
let sim: SimulatedProvider;
let ch: ClickHouseHttp;
let proxy: TcpProxy;
let env: Record<string, string>;
let db: Awaited<ReturnType<typeof scratchDatabase>>;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'tollgate-faults-crash-'));
  sim = await startSimulatedProvider({ defaults: { completionTokens: 6 }, record: false });
  ch = await startClickHouseHttp(path.join(tmp, 'chdb'));
  proxy = await startTcpProxy({ host: '127.0.0.1', port: ch.port });
  const configFile = path.join(tmp, 'tollgate.yaml');
  await writeFile(
    configFile,
    [
      'providers:',
      `  - { name: sim, kind: SIMULATED, baseUrl: "${sim.url}", apiKey: x }`,
      'routes:',
      '  - { name: chat-default, strategy: PRIORITY, targets: [{ provider: sim, model: sim-chat }] }',
      'prices:',
      '  - { provider: sim, model: sim-chat, inputPerMTokUsd: 0.15, outputPerMTokUsd: 0.6 }',
      'teams: [crash]',
    ].join('\n'),
  );
  db = await scratchDatabase();
  env = {
    TOLLGATE_DATA_DIR: path.join(tmp, 'data'),
    TOLLGATE_CONFIG: configFile,
    CLICKHOUSE_URL: proxy.via(ch.url),
    TOLLGATE_BATCH_MAX_MS: '20',
    TOLLGATE_BATCH_MAX_ROWS: '10',
    ...(db ? { DATABASE_URL: db.url } : {}),
  };
}, 120_000);
afterAll(async () => {
  await proxy?.close();
  await ch?.close();
  await sim?.close();
  await db?.drop().catch(() => undefined);
  await rm(tmp, { recursive: true, force: true });
});

describe('kill -9 during a flush', () => {
  it('replays the insert that ClickHouse applied but never acknowledged, exactly once', async ({ annotate }) => {
    const first = await startTollgateProcess(env);
    const keyProc = runTollgate(['keys', 'create', '--team', 'crash', '--json'], env);
    expect(await keyProc.exited).toBe(0);
    const secret = JSON.parse(keyProc.output().trim().split('\n').at(-1)!).secret as string;

    // Hold every ClickHouse answer, then send traffic; kill as soon as an insert was applied.
    const completed: string[] = [];
    const clientCosts = new Map<string, number | null>();
    const insertsBefore = (await ch.stats()).inserts;
    proxy.setDelay(60_000);
    for (let i = 0; i < 40; i++) {
      const r = await chat(`${first.url}/v1`, secret, { model: 'chat-default', stream: i % 2 === 0, messages: [{ role: 'user', content: `crash ${i}` }] });
      expect(r.completed).toBe(true);
      completed.push(r.receiptId!);
      if (r.cost !== undefined) clientCosts.set(r.receiptId!, r.cost);
    }
    await eventually(async () => (await ch.stats()).inserts > insertsBefore, 10_000, 'an insert applied by ClickHouse');
    const walBefore = (await readdir(path.join(env.TOLLGATE_DATA_DIR!, 'wal'))).filter((f) => f.endsWith('.jsonl'));
    first.child.kill('SIGKILL');
    await first.exited;
    proxy.setDelay(0);
    const peek = createClient({ url: ch.url });
    const applied = Number(((await (await peek.query({ query: 'SELECT count() AS n FROM receipts', format: 'JSONEachRow' })).json()) as any[])[0].n);
    await peek.close();
    await annotate(
      `kill -9 during a flush: ${completed.length} completed, ${applied} rows applied by ClickHouse before the kill, ${walBefore.length} WAL segments left`,
      'observed',
    );
    // The kill really landed mid-flush: some rows applied, and their segment still in the WAL.
    expect(applied).toBeGreaterThan(0);
    expect(walBefore.length).toBeGreaterThan(0);

    // Restart: replay; then SIGTERM flushes and exits 0.
    const second = await startTollgateProcess(env);
    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);

    const { tokens } = await ch.stats();
    expect(
      Object.values(tokens).some((n) => n >= 2),
      'a segment was sent twice with one token',
    ).toBe(true);
    const client = createClient({ url: ch.url });
    try {
      const report = await expectNothingLost(client, { completed, clientCosts, total: completed.length });
      expect(report.rows).toBe(40);
    } finally {
      await client.close();
    }
  }, 120_000);
});
