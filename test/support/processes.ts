// Tollgate as a child process, started through the real CLI, for tests that kill -9 it,
// restart it, or run two of them.
import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const entry = path.join(root, 'test/support/server-process.ts');
const builtEntry = path.join(root, 'bin/tollgate.js');

export interface RunOptions {
  /**
   * Run the compiled CLI (`bin/tollgate.js` → dist/, as `npm start` does) instead of src/
   * through tsx. Benchmarks use it: tsx's loader thread and on-the-fly transforms cost memory
   * and start-up time that a deployment does not pay (~90 MB more RSS under bench:proxy's
   * load). dist/ must be as new as src/ (the bench scripts build first).
   */
  built?: boolean;
}

/** Throws when src/ changed after the last build: a benchmark must not measure stale code. */
function assertBuildIsFresh(): void {
  const built = statSync(path.join(root, 'dist/cli.js'), { throwIfNoEntry: false })?.mtimeMs ?? 0;
  const newest = (dir: string): number =>
    Math.max(
      0,
      ...readdirSync(dir, { withFileTypes: true }).map((e) => (e.isDirectory() ? newest(path.join(dir, e.name)) : statSync(path.join(dir, e.name)).mtimeMs)),
    );
  if (newest(path.join(root, 'src')) > built) throw new Error('dist/ is older than src/: run `npm run build` first');
}

export interface ServerProcess {
  child: ChildProcess;
  url: string;
  output: () => string;
  /** Resolves with the exit code (or signal name). */
  exited: Promise<number | string>;
}

export function runTollgate(
  args: string[],
  env: Record<string, string>,
  opts: RunOptions = {},
): { child: ChildProcess; output: () => string; exited: Promise<number | string> } {
  // NODE_ARGS: extra flags for node itself (profiling: `--cpu-prof`), not allowed in NODE_OPTIONS.
  const nodeArgs = env.NODE_ARGS ? env.NODE_ARGS.split(' ') : [];
  if (opts.built) assertBuildIsFresh();
  const script = opts.built ? [builtEntry] : ['--import', 'tsx', entry];
  const child = spawn(process.execPath, [...nodeArgs, ...script, ...args], {
    cwd: root,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, TOLLGATE_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | string>((resolve) => child.on('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  return { child, output: () => out, exited };
}

/** Starts `tollgate start` and waits until it has written its URL and answers /readyz. */
export async function startTollgateProcess(env: Record<string, string>, opts: RunOptions & { timeoutMs?: number } = {}): Promise<ServerProcess> {
  const proc = runTollgate(['start'], { TOLLGATE_PORT: '0', ...env }, opts);
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const deadline = Date.now() + timeoutMs;
  let exitedEarly: number | string | null = null;
  void proc.exited.then((code) => (exitedEarly = code));
  while (Date.now() < deadline) {
    if (exitedEarly !== null) throw new Error(`tollgate exited (${exitedEarly}) during start:\n${proc.output()}`);
    try {
      const owner = JSON.parse(await readFile(path.join(env.TOLLGATE_DATA_DIR!, 'owner.json'), 'utf8'));
      if (owner.pid === proc.child.pid && owner.url) {
        const ready = await fetch(`${owner.url}/readyz`).catch(() => null);
        if (ready?.ok) return { ...proc, url: owner.url };
      }
    } catch {
      // not yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  proc.child.kill('SIGKILL');
  throw new Error(`tollgate did not become ready:\n${proc.output()}`);
}

export interface Instances {
  procs: ServerProcess[];
  /** Each instance's environment (to run CLI commands against its data dir). */
  envs: Array<Record<string, string>>;
  /** SIGTERM (graceful drain), then removes the data dirs. */
  close(): Promise<void>;
}

/** `count` Tollgate processes, each with its own data dir, all bootstrapped from the same YAML lines. */
export async function startInstances(count: number, yaml: string[], env: Record<string, string>): Promise<Instances> {
  const dirs: string[] = [];
  const procs: ServerProcess[] = [];
  const envs: Array<Record<string, string>> = [];
  const close = async () => {
    for (const p of procs) {
      p.child.kill('SIGTERM');
      await Promise.race([p.exited, new Promise((r) => setTimeout(r, 10_000))]);
    }
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < count; i++) {
      const dataDir = await mkdtemp(path.join(os.tmpdir(), `tollgate-instance-${i}-`));
      dirs.push(dataDir);
      const configFile = path.join(dataDir, 'tollgate.yaml');
      await writeFile(configFile, yaml.join('\n'));
      const instanceEnv = { TOLLGATE_DATA_DIR: dataDir, TOLLGATE_CONFIG: configFile, ...env };
      envs.push(instanceEnv);
      procs.push(await startTollgateProcess(instanceEnv));
    }
  } catch (err) {
    await close();
    throw err;
  }
  return { procs, envs, close };
}
