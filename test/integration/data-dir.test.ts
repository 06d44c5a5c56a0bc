// One process owns a data dir (DESIGN §3), held by a lock the kernel releases when the owner
// dies: a live owner blocks a second start and is named; kill -9 frees the dir; a stale
// owner.json, even one naming a live unrelated process, blocks nothing.
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { startServer } from '../../src/main.js';
import { DataDirBusyError } from '../../src/store/data-dir.js';
import { startTollgateProcess } from '../support/processes.js';

let dataDir: string;
let env: Record<string, string>;

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'tollgate-datadir-'));
  env = { TOLLGATE_DATA_DIR: dataDir, TOLLGATE_PORT: '0', TOLLGATE_LOG_LEVEL: 'silent', TOLLGATE_DRAIN_TIMEOUT_MS: '1000' };
});

afterAll(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

const startHere = () => startServer(loadConfig(env), { quiet: true });

describe('data dir ownership', () => {
  it('refuses a second start while the owner lives, naming it; kill -9 frees the dir; a stale owner.json naming a live unrelated process blocks nothing', async () => {
    const owner = await startTollgateProcess(env);
    try {
      const refused = await startHere().catch((err: unknown) => err);
      expect(refused).toBeInstanceOf(DataDirBusyError);
      expect((refused as DataDirBusyError).owner).toEqual({ pid: owner.child.pid, url: owner.url });
      expect((refused as Error).message).toContain(String(owner.child.pid));
      expect((refused as Error).message).toContain(owner.url);
    } finally {
      owner.child.kill('SIGKILL');
      await owner.exited;
    }

    // What kill -9 leaves behind, with the dead owner's pid since given to another program.
    const unrelated = spawn('sleep', ['60'], { stdio: 'ignore' });
    try {
      const stale = JSON.parse(await readFile(path.join(dataDir, 'owner.json'), 'utf8'));
      expect(stale.pid).toBe(owner.child.pid);
      await writeFile(path.join(dataDir, 'owner.json'), JSON.stringify({ pid: unrelated.pid, url: stale.url }));

      const started = await startHere();
      try {
        expect((await fetch(`${started.url}/readyz`)).status).toBe(200);
        expect(JSON.parse(await readFile(path.join(dataDir, 'owner.json'), 'utf8'))).toEqual({ pid: process.pid, url: started.url });
      } finally {
        await started.stop();
      }
    } finally {
      unrelated.kill('SIGKILL');
    }
  }, 120_000);
});
