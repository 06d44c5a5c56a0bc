// kill -9 under load, restart on the same data dir: every response that completed has
// exactly one receipt, in the receipts table and in every rollup. Also: SIGTERM drains.
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type SimulatedProvider, startSimulatedProvider } from '../../src/sim/simulated.js';
import { openClickHouse } from '../../src/store/clickhouse.js';
import { scratchDatabase } from '../support/gateway.js';
import { runTollgate, startTollgateProcess } from '../support/processes.js';

let sim: SimulatedProvider;
let dataDir: string;
let env: Record<string, string>;
let db: Awaited<ReturnType<typeof scratchDatabase>>;

beforeAll(async () => {
  sim = await startSimulatedProvider({ defaults: { latencyMs: 5, completionTokens: 12 }, record: false });
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'tollgate-durability-'));
  const configFile = path.join(dataDir, 'tollgate.yaml');
  await writeFile(
    configFile,
    [
      'providers:',
      '  - name: sim',
      '    kind: SIMULATED',
      `    baseUrl: ${sim.url}`,
      '    apiKey: ${SIM_KEY}',
      'routes:',
      '  - name: chat-default',
      '    strategy: PRIORITY',
      '    targets: [{ provider: sim, model: sim-chat }]',
      'prices:',
      '  - { provider: sim, model: sim-chat, inputPerMTokUsd: 0.15, outputPerMTokUsd: 0.6 }',
      'teams: [durable]',
    ].join('\n'),
  );
  db = await scratchDatabase();
  env = {
    TOLLGATE_DATA_DIR: dataDir,
    TOLLGATE_CONFIG: configFile,
    SIM_KEY: 'sim-secret',
    // Small, frequent batches: a kill lands between inserts, mid-insert and mid-segment.
    TOLLGATE_BATCH_MAX_MS: '20',
    TOLLGATE_BATCH_MAX_ROWS: '25',
    ...(db ? { DATABASE_URL: db.url } : {}),
  };
});
afterAll(async () => {
  await sim?.close();
  await db?.drop().catch(() => undefined);
  await rm(dataDir, { recursive: true, force: true });
});

async function createKey(): Promise<string> {
  const proc = runTollgate(['keys', 'create', '--team', 'durable', '--json'], env);
  expect(await proc.exited).toBe(0);
  return JSON.parse(proc.output().trim().split('\n').at(-1)!).secret;
}

/** Sends requests from `workers` loops until stopped; returns the receipt ids of completed ones. */
function load(url: string, secret: string, workers: number) {
  const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: secret, maxRetries: 0, timeout: 10_000 });
  const task = (w: number, i: number) => ({ headers: { 'x-tollgate-task-id': `task-${w}-${Math.floor(i / 5)}` } });
  const completed: string[] = [];
  let stop = false;
  const loops = Array.from({ length: workers }, async (_, w) => {
    for (let i = 0; !stop; i++) {
      try {
        if ((w + i) % 3 === 0) {
          const { data, response } = await client.chat.completions
            .create({ model: 'chat-default', stream: true, messages: [{ role: 'user', content: `s ${w} ${i}` }] }, task(w, i))
            .withResponse();
          let done = false;
          for await (const chunk of data) if (chunk.choices[0]?.finish_reason) done = true;
          if (done) completed.push(response.headers.get('x-tollgate-receipt-id')!);
        } else {
          const { response } = await client.chat.completions
            .create({ model: 'chat-default', messages: [{ role: 'user', content: `j ${w} ${i}` }] }, task(w, i))
            .withResponse();
          completed.push(response.headers.get('x-tollgate-receipt-id')!);
        }
      } catch {
        return; // the server died under us: this request did not complete
      }
    }
  });
  return {
    completed,
    stop: async () => {
      stop = true;
      await Promise.all(loops);
    },
  };
}

/** For each id, the files of the data dir (WAL segments, chDB's text files) that hold it. */
async function findOnDisk(ids: string[]) {
  const files = (await readdir(dataDir, { recursive: true, withFileTypes: true })).filter((f) => f.isFile() && !f.name.endsWith('.bin'));
  const texts = await Promise.all(
    files.map(async (f) => ({ file: path.join(f.parentPath, f.name), text: await readFile(path.join(f.parentPath, f.name), 'latin1') })),
  );
  return ids.map((id) => ({ id, in: texts.filter((f) => f.text.includes(id)).map((f) => path.relative(dataDir, f.file)) }));
}

describe('durability', () => {
  it('loses no receipt and duplicates none across kill -9 and restart', async () => {
    const secret = await (async () => {
      const first = await startTollgateProcess(env);
      try {
        return await createKey();
      } finally {
        first.child.kill('SIGTERM');
        expect(await first.exited).toBe(0);
      }
    })();

    const completed: string[] = [];
    const killedOutputs: string[] = [];
    for (let round = 0; round < 2; round++) {
      const server = await startTollgateProcess(env);
      const traffic = load(server.url, secret, 8);
      await new Promise((r) => setTimeout(r, 1500 + round * 300));
      server.child.kill('SIGKILL');
      await server.exited;
      await traffic.stop();
      killedOutputs.push(server.output());
      completed.push(...traffic.completed);
      expect(traffic.completed.length).toBeGreaterThan(20);
    }

    // Restart on the same data dir: replay happens at start; SIGTERM flushes the rest within
    // the journal's close timeout (5 s). On a loaded machine the replay can outlast it: the
    // rest then stays in the WAL (Tollgate says so) and the next start inserts it. Lost is
    // only what no restart brings back.
    const outputs: string[] = [];
    for (let start = 0; start < 5; start++) {
      const next = await startTollgateProcess(env);
      next.child.kill('SIGTERM');
      expect(await next.exited).toBe(0);
      outputs.push(next.output());
      if (!next.output().includes('not yet in ClickHouse')) break;
    }
    expect(outputs.at(-1), outputs.join('\n---\n')).not.toContain('not yet in ClickHouse');

    const ch = await openClickHouse({ dataDir });
    try {
      const rows = async (query: string, params: Record<string, unknown> = {}) =>
        (await (await ch.client.query({ query, query_params: params, format: 'JSONEachRow' })).json()) as any[];
      const q = async (query: string, params: Record<string, unknown> = {}) => (await rows(query, params))[0];
      const totals = await q('SELECT count() AS rows, uniqExact(receipt_id) AS ids FROM receipts');
      expect(Number(totals.rows)).toBe(Number(totals.ids));
      // Which completed responses have no receipt, and whether their lines are still in a file
      // of the data dir (in the WAL, not inserted) or nowhere (lost): said when this fails.
      const inserted = new Set(
        (await rows('SELECT receipt_id FROM receipts WHERE receipt_id IN {ids:Array(String)}', { ids: completed })).map((r) => r.receipt_id),
      );
      const missing = completed.filter((id) => !inserted.has(id));
      const whereMissing = missing.length === 0 ? [] : await findOnDisk(missing);
      expect(whereMissing, [...killedOutputs, ...outputs].join('\n---\n')).toEqual([]);
      const found = await q('SELECT count() AS n, uniqExact(receipt_id) AS u FROM receipts WHERE receipt_id IN {ids:Array(String)}', { ids: completed });
      expect(Number(found.n)).toBe(completed.length);
      expect(Number(found.u)).toBe(completed.length);
      // Receipts beyond the completed ones can only be requests that were in flight at a kill.
      expect(Number(totals.rows) - completed.length).toBeLessThanOrEqual(2 * 8);

      const hourly = await q('SELECT sum(requests) AS requests FROM receipts_hourly');
      expect(Number(hourly.requests)).toBe(Number(totals.rows));
      const tasks = await q(
        'SELECT sum(requests) AS requests, count() AS tasks FROM (SELECT task_id, sum(requests) AS requests FROM task_costs GROUP BY team_id, task_id)',
      );
      const raw = await q("SELECT count() AS requests, uniqExact(task_id) AS tasks FROM receipts WHERE task_id != ''");
      expect(Number(tasks.requests)).toBe(Number(raw.requests));
      expect(Number(tasks.tasks)).toBe(Number(raw.tasks));
      expect(Number(raw.requests)).toBe(Number(totals.rows));
    } finally {
      await ch.close();
    }
  }, 180_000);
});
