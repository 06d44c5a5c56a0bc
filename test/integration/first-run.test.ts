// The first run: what `npm start` says with nothing configured, `tollgate demo` beside a running
// server (and on its own), and Ctrl-C / SIGTERM on `npm start` leaving no process behind.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { gqlOk } from '../support/graphql.js';
import { runTollgate, type ServerProcess, startTollgateProcess } from '../support/processes.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const dirs: string[] = [];
const servers: ServerProcess[] = [];

async function dataDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'tollgate-first-run-'));
  dirs.push(dir);
  return dir;
}

afterAll(async () => {
  for (const s of servers) {
    s.child.kill('SIGTERM');
    await Promise.race([s.exited, new Promise((r) => setTimeout(r, 10_000))]);
  }
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function until<T>(what: string, read: () => Promise<T | null | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await read().catch(() => null);
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('first run', () => {
  it('prints where the console and GraphQL are, and the two ways forward without a provider; the demo goes through the running server and leaves its routes alone', async () => {
    const env = { TOLLGATE_DATA_DIR: await dataDir() };
    const server = await startTollgateProcess(env);
    servers.push(server);
    const banner = server.output();
    expect(banner).toContain(`console           ${server.url}/console`);
    expect(banner).toContain(`GraphQL           ${server.url}/graphql`);
    expect(banner).toContain('No provider is configured yet');
    expect(banner).toContain('OPENROUTER_API_KEY=');
    expect(banner).toContain('npx tollgate demo');

    // The user's own route, which the demo must not touch.
    const token = (await readFile(path.join(env.TOLLGATE_DATA_DIR, 'admin-token'), 'utf8')).trim();
    await gqlOk(server.url, token, 'mutation { upsertProvider(input: { name: "mine", kind: SIMULATED, baseUrl: "http://127.0.0.1:9/v1" }) { name } }');
    await gqlOk(
      server.url,
      token,
      'mutation { upsertRoute(input: { name: "chat-default", strategy: PRIORITY, targets: [{ provider: "mine", model: "my-model" }] }) { name } }',
    );

    const demo = runTollgate(['demo', '--duration', '3', '--rate', '20'], env);
    expect(await Promise.race([demo.exited, new Promise((r) => setTimeout(() => r('timeout'), 60_000))])).toBe(0);
    expect(demo.output()).toContain(`through the running Tollgate at ${server.url}`);
    expect(demo.output()).toContain(`${server.url}/console`);
    expect(demo.output()).toMatch(/demo: sent [1-9]\d* requests/);

    const { routes } = await gqlOk(server.url, token, '{ routes { name targets { provider model } } }');
    expect(routes.find((r: { name: string }) => r.name === 'chat-default').targets).toEqual([{ provider: 'mine', model: 'my-model' }]);
    expect(routes.map((r: { name: string }) => r.name)).toEqual(expect.arrayContaining(['demo-chat', 'demo-chat-fast', 'demo-faq', 'demo-embed']));
    // Its traffic went through this server: receipts on the demo's routes, none on the user's.
    const usage = await until('the demo receipts', async () => {
      const { usage } = await gqlOk(server.url, token, 'query ($f: AnalyticsFilter!) { usage(filter: $f, groupBy: [ROUTE]) { key { route } requests } }', {
        f: { from: new Date(Date.now() - 3_600_000).toISOString(), to: new Date(Date.now() + 60_000).toISOString() },
      });
      return usage.length > 0 ? (usage as Array<{ key: { route: string | null }; requests: number }>) : null;
    });
    expect(usage.some((u) => u.key.route === 'demo-chat' && u.requests > 0)).toBe(true);
    expect(usage.some((u) => u.key.route === 'chat-default')).toBe(false);
  }, 180_000);

  it('runs the demo on its own data dir when no server runs, and stops it after --duration', async () => {
    const env = { TOLLGATE_DATA_DIR: await dataDir(), TOLLGATE_PORT: '0' };
    const demo = runTollgate(['demo', '--duration', '2'], env);
    expect(await Promise.race([demo.exited, new Promise((r) => setTimeout(() => r('timeout'), 90_000))])).toBe(0);
    const out = demo.output();
    expect(out).toMatch(/Tollgate is listening on (http:\/\/127\.0\.0\.1:\d+)/);
    const url = /Tollgate is listening on (\S+)/.exec(out)![1];
    expect(out).toContain(`Watch it in the console: ${url}/console`);
    expect(out).not.toContain('No provider is configured');
    expect(out).toMatch(/demo: sent [1-9]\d* requests/);
    // Stopped: the data dir is free again.
    expect(existsSync(path.join(env.TOLLGATE_DATA_DIR, 'owner.json'))).toBe(false);
  }, 120_000);

  it('help works where the environment does not parse; a demo duration past what a timer holds is refused', async () => {
    const help = runTollgate(['help'], { TOLLGATE_PORT: 'not-a-port' });
    expect(await help.exited).toBe(0);
    expect(help.output()).toContain('verify-receipt');
    // 1000 h is past Node's longest timer, which would fire at once: the demo stopped as it began.
    const demo = runTollgate(['demo', '--duration', '1000h'], { TOLLGATE_DATA_DIR: await dataDir(), TOLLGATE_PORT: '0' });
    expect(await demo.exited).not.toBe(0);
    expect(demo.output()).toContain('--duration: at most');
  }, 60_000);

  for (const [how, stop] of [
    ['SIGTERM to npm', (npmPid: number) => process.kill(npmPid, 'SIGTERM')],
    ['Ctrl-C (SIGINT to the process group)', (npmPid: number) => process.kill(-npmPid, 'SIGINT')],
  ] as const) {
    it(`stops \`npm start\` on ${how}, with no process left behind`, async () => {
      if (!existsSync(path.join(root, 'dist/cli.js'))) throw new Error('dist/ is missing: run `npm run build` (npm start runs the build)');
      const dir = await dataDir();
      const npm = spawn('npm', ['start'], {
        cwd: root,
        // Its own process group, as a terminal gives it: Ctrl-C signals the whole group.
        detached: true,
        env: { PATH: process.env.PATH, HOME: process.env.HOME, TOLLGATE_DATA_DIR: dir, TOLLGATE_PORT: '0', TOLLGATE_LOG_LEVEL: 'warn' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      npm.stdout!.on('data', (d) => (out += d));
      npm.stderr!.on('data', (d) => (out += d));
      const exited = new Promise<number | string>((resolve) => npm.on('exit', (code, signal) => resolve(code ?? signal ?? -1)));
      const owner = await until(
        'the server to listen',
        async () => {
          const o = JSON.parse(await readFile(path.join(dir, 'owner.json'), 'utf8')) as { pid: number; url?: string };
          return o.url && (await fetch(`${o.url}/readyz`)).ok ? o : null;
        },
        60_000,
      ).catch((err) => {
        process.kill(-npm.pid!, 'SIGKILL');
        throw new Error(`${(err as Error).message}\n${out}`);
      });
      expect(owner.pid).not.toBe(npm.pid); // the server is a child of npm

      stop(npm.pid!);
      await Promise.race([exited, new Promise((r) => setTimeout(r, 30_000))]);
      await until('the server process to exit', async () => !processAlive(owner.pid!), 30_000).catch((err) => {
        process.kill(owner.pid!, 'SIGKILL');
        throw err;
      });
      expect(existsSync(path.join(dir, 'owner.json'))).toBe(false); // it shut down, not killed
    }, 120_000);
  }
});

/** Whether a process with this pid exists (signal 0 checks without signalling). */
function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
