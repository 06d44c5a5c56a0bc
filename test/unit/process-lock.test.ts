// The data-dir lock (and the config-store and WAL locks, which use the same primitive) is
// released by the kernel when its holder dies: no pid liveness check, so a pid reused by an
// unrelated program blocks nothing, and kill -9 frees the lock.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, rmdirSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { type HeldLock, type LockAttempt, lockHolder, takeLock } from '../../src/store/process-lock.js';

const holderScript = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../support/lock-holder.ts');
const children: ChildProcess[] = [];
const dirs: string[] = [];
const held: HeldLock[] = [];

afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
  for (const h of held.splice(0)) h.release();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tollgate-lock-'));
  dirs.push(dir);
  return dir;
}

function mine(attempt: LockAttempt): HeldLock {
  if (!('held' in attempt)) throw new Error(`expected the lock, but process ${attempt.holderPid} holds it`);
  held.push(attempt.held);
  return attempt.held;
}

/** A child process holding the lock at `file` (or reporting that it could not). */
async function childTaking(file: string): Promise<{ child: ChildProcess; said: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', holderScript, file], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  const said = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      if (out.includes('\n')) resolve(out.trim());
    });
    child.on('exit', (code) => reject(new Error(`lock holder exited (${code}) before taking the lock`)));
  });
  return { child, said };
}

/** A live process that has nothing to do with Tollgate. */
function unrelatedProcess(): ChildProcess {
  const child = spawn('sleep', ['60'], { stdio: 'ignore' });
  children.push(child);
  return child;
}

describe('process lock', () => {
  it('refuses a second taker while the holder lives, naming its pid, and is free once the holder is killed with -9', async () => {
    const file = path.join(tempDir(), 'owner.sock');
    const { child, said } = await childTaking(file);
    expect(said).toBe('held');

    expect(await takeLock(file)).toEqual({ holderPid: child.pid });
    expect(await lockHolder(file)).toEqual({ pid: child.pid });

    const gone = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await gone;
    // The socket file is still there, but nobody answers on it: taken over.
    expect(await lockHolder(file)).toBeNull();
    mine(await takeLock(file));
    expect(await lockHolder(file)).toEqual({ pid: process.pid });
  });

  it('is refused to a second taker in the same process, and free again after release', async () => {
    const file = path.join(tempDir(), 'pg.lock');
    const lock = mine(await takeLock(file));
    expect(await takeLock(file)).toEqual({ holderPid: process.pid });
    lock.release();
    mine(await takeLock(file));
  });

  it('takes over a pid lock file of an earlier version whose process is gone, and honours one whose process lives', async () => {
    const dir = tempDir();
    const dead = spawn(process.execPath, ['-e', '']);
    await new Promise((resolve) => dead.once('exit', resolve));
    writeFileSync(path.join(dir, 'LOCK'), String(dead.pid));
    mine(await takeLock(path.join(dir, 'LOCK')));

    const live = unrelatedProcess();
    writeFileSync(path.join(dir, 'pg.lock'), `${live.pid} 6f1c…`);
    expect(await takeLock(path.join(dir, 'pg.lock'))).toEqual({ holderPid: live.pid });
  });

  it('works where the lock path is too long for a socket address, and two spellings of one directory meet', async () => {
    const base = tempDir();
    const deep = path.join(base, 'a-rather-long-directory-name-'.repeat(4), 'data');
    mkdirSync(deep, { recursive: true });
    const file = path.join(deep, 'owner.sock');
    expect(Buffer.byteLength(file)).toBeGreaterThan(108);

    const { child, said } = await childTaking(file);
    expect(said).toBe('held');
    // The same directory through a symlink: the same lock.
    const link = path.join(base, 'link');
    symlinkSync(deep, link);
    expect(await takeLock(path.join(link, 'owner.sock'))).toEqual({ holderPid: child.pid });

    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    mine(await takeLock(file));
  });

  it('lets exactly one of several simultaneous takers have a lock left behind by a dead holder', async () => {
    const file = path.join(tempDir(), 'owner.sock');
    const { child } = await childTaking(file);
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));

    const takers = await Promise.all([childTaking(file), childTaking(file), childTaking(file)]);
    const winners = takers.filter((t) => t.said === 'held');
    expect(winners).toHaveLength(1);
    for (const loser of takers.filter((t) => t.said !== 'held')) expect(loser.said).toBe(`busy ${winners[0]!.child.pid}`);
  });

  it('removes a dead lock only under the takeover claim: waits while another taker holds one, breaks one left by a dead taker', async () => {
    const file = path.join(tempDir(), 'owner.sock');
    const claim = `${file}.takeover`;
    writeFileSync(file, '0'); // dead: nothing listens there, and no live pid
    mkdirSync(claim); // another taker is removing it right now
    let settled = false;
    const taking = takeLock(file).finally(() => (settled = true));
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(settled).toBe(false);
    expect(lstatSync(file).isFile()).toBe(true); // not touched without the claim
    rmdirSync(claim); // that taker is done
    mine(await taking);
    expect(existsSync(claim)).toBe(false);
    expect(lstatSync(file).isSocket()).toBe(true);

    const other = path.join(tempDir(), 'owner.sock');
    writeFileSync(other, '0');
    mkdirSync(`${other}.takeover`);
    const minuteAgo = new Date(Date.now() - 60_000);
    utimesSync(`${other}.takeover`, minuteAgo, minuteAgo); // its taker died holding it
    mine(await takeLock(other));
    expect(existsSync(`${other}.takeover`)).toBe(false);
  });
});
