// `tollgate migrate` and a start, with ClickHouse out of reach: the start waits for it in the
// background (receipts wait in the WAL); `migrate` fails instead of saying it applied anything.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/main.js';
import { openStores } from '../../src/runtime.js';
import { startClickHouseHttp } from '../faults/clickhouse-http.js';
import { startTcpProxy } from '../faults/tcp-proxy.js';
import { scratchDatabase } from '../support/gateway.js';

let dataDir: string;
let db: Awaited<ReturnType<typeof scratchDatabase>>;

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'tollgate-migrate-'));
  db = await scratchDatabase();
});
afterAll(async () => {
  await db?.drop();
  await rm(dataDir, { recursive: true, force: true });
});

describe('ClickHouse out of reach', () => {
  // Port 1 on loopback: nothing listens, the connection is refused at once.
  const config = () =>
    loadConfig({ TOLLGATE_DATA_DIR: dataDir, CLICKHOUSE_URL: 'http://127.0.0.1:1', TOLLGATE_LOG_LEVEL: 'silent', ...(db ? { DATABASE_URL: db.url } : {}) });

  it('migrate fails naming the connection error (it printed "migrations applied" and exited 0)', async () => {
    const c = config();
    await expect(openStores(c, createLogger(c), { waitForClickHouse: false })).rejects.toThrow(/ECONNREFUSED/);
  });

  it('a start goes on without it', async () => {
    const c = config();
    const stores = await openStores(c, createLogger(c));
    await stores.close();
  });

  it('a start migrates it in the background once it comes, and stops trying when its stores close', async () => {
    const ch = await startClickHouseHttp(path.join(dataDir, 'chdb'));
    const proxy = await startTcpProxy({ host: '127.0.0.1', port: ch.port });
    try {
      proxy.setMode('reset');
      const c = { ...config(), clickhouse: { url: proxy.via(ch.url) } };
      const stores = await openStores(c, createLogger(c));
      proxy.setMode('pass');
      const deadline = Date.now() + 15_000;
      while ((await ch.stats()).statements < 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      expect((await ch.stats()).statements).toBeGreaterThanOrEqual(5); // the migrations, once it answered
      await stores.close();

      // Away at the start and closed at once: no attempt after the close (it went on every 1…30 s, against a closed client).
      proxy.setMode('reset');
      const other = await openStores(c, createLogger(c));
      await other.close();
      const attempts = proxy.accepted();
      await new Promise((r) => setTimeout(r, 2_500));
      expect(proxy.accepted()).toBe(attempts);
    } finally {
      await proxy.close();
      await ch.close();
    }
  }, 60_000);
});
