// What the benches share for running their arms as processes: a forked TypeScript helper
// (simulator, bare proxy, subscribers) that reports when ready, Tollgate stopped gracefully,
// an API key made through the CLI, and teardown that runs even when a bench fails midway.
import { type ChildProcess, fork } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { runTollgate, type ServerProcess } from '../../test/support/processes.js';

/** Tollgate runs as deployed: the compiled CLI (dist/), not src/ through tsx. */
export const BUILT = { built: true };

/** Forks `file` (a .ts, through tsx) and resolves with its first IPC message (its "ready"). */
export function forkTs(file: string, args: string[]): Promise<{ child: ChildProcess; message: any }> {
  const child = fork(file, args, { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  return new Promise((resolve, reject) => {
    child.once('message', (message) => resolve({ child, message }));
    child.once('exit', (code) => reject(new Error(`${file} exited ${code}`)));
  });
}

/**
 * The benches' Tollgate config, written to `${dir}/tollgate.yaml`: one priced route,
 * `chat-default`, to the simulated provider at `simUrl`. Returns the file's path.
 */
export async function writeSimConfig(dir: string, simUrl: string): Promise<string> {
  const file = path.join(dir, 'tollgate.yaml');
  await writeFile(
    file,
    `providers:\n  - { name: sim, kind: SIMULATED, baseUrl: "${simUrl}" }\nroutes:\n  - name: chat-default\n    strategy: PRIORITY\n    targets: [{ provider: sim, model: sim-chat }]\nprices:\n  - { provider: sim, model: sim-chat, inputPerMTokUsd: 0.15, outputPerMTokUsd: 0.6 }\n`,
  );
  return file;
}

/** SIGTERM (graceful drain and flush), SIGKILL if it has not exited after 30 s. */
export async function stopTollgate(p: ServerProcess): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill('SIGTERM');
  const timeout = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 30_000).unref());
  if ((await Promise.race([p.exited, timeout])) === 'timeout') {
    console.warn('bench: Tollgate did not exit 30 s after SIGTERM; SIGKILL');
    p.child.kill('SIGKILL');
    await p.exited;
  }
}

/** An API key created by the CLI against the stores of the instance that `env` describes. */
export async function createKey(env: Record<string, string>, team = 'bench'): Promise<string> {
  const proc = runTollgate(['keys', 'create', '--team', team, '--json'], env, BUILT);
  const code = await proc.exited;
  if (code !== 0) throw new Error(`tollgate keys create exited ${code}:\n${proc.output()}`);
  return JSON.parse(proc.output().trim().split('\n').at(-1)!).secret;
}

/**
 * Teardown: everything started registers its undo; they run last-in first-out, in `finally`
 * and on SIGINT / SIGTERM, so an error mid-bench still stops processes and removes files.
 */
export class Cleanups {
  private readonly undo: Array<{ what: string; run: () => unknown }> = [];

  constructor(private readonly bench: string) {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      process.once(signal, () => void this.run().finally(() => process.exit(130)));
    }
  }

  defer(what: string, run: () => unknown): void {
    this.undo.push({ what, run });
  }

  async run(): Promise<void> {
    for (let c = this.undo.pop(); c; c = this.undo.pop()) {
      try {
        await c.run();
      } catch (err) {
        console.warn(`${this.bench}: cleanup "${c.what}" failed: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
  }
}
