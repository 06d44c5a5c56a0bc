// A lock the kernel releases when its holder dies, however it dies (kill -9 included): a Unix
// domain socket bound at the lock's path (Node has no flock(2)). The holder listens there and
// answers every connection with its pid. Whoever wants the lock tries to bind the path:
//   - it binds: the lock is its own;
//   - a connect to the path succeeds: a live process holds it (and says which);
//   - the connect is refused: the socket file of a dead holder, removed (by one taker at a
//     time: see removeDead) and taken over.
// A pid file cannot tell a dead holder from an unrelated live process that was later given
// the same pid; a refused connect can.
//
// Where the path does not fit a socket address (sun_path: 104 bytes on macOS, 108 on Linux,
// and Node silently truncates a longer one), the socket is named after a hash of the real
// path instead, in a private per-user directory in the temp dir. Not a Linux abstract socket:
// those have no file permissions (any local user could bind the name first and keep Tollgate
// from starting) and live in the network namespace, so two containers sharing a data volume
// would not see each other's lock, as they do through a socket file in the volume. On
// Windows a named pipe, derived the same way (pipes vanish with their process).
import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync, readFileSync, realpathSync, rmdirSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface HeldLock {
  release(): void;
}

/** The lock, or the pid of the live process that holds it (null when it did not say). */
export type LockAttempt = { held: HeldLock } | { holderPid: number | null };

/** The longest socket path bound in place: fits sun_path on every platform. */
const MAX_SOCKET_PATH = 103;
/** How long a prober waits for a live holder to say its pid (it is alive either way). */
const PID_WAIT_MS = 1000;
/** How long takeLock keeps trying while the lock changes hands (takers racing for a dead one). */
const TAKE_TIMEOUT_MS = 15_000;
/** A takeover claim this old was left by a taker that died holding it. */
const STALE_TAKEOVER_MS = 10_000;

export async function takeLock(file: string): Promise<LockAttempt> {
  const address = lockAddress(file);
  const deadline = Date.now() + TAKE_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const server = await bind(address);
    if (server) return { held: { release: () => void server.close() } };
    const found = await probe(address);
    if (found.state === 'alive') return { holderPid: found.pid };
    if (found.state === 'absent') {
      await pause(); // released between our bind and the probe (or a dangling link: do not spin)
      continue;
    }
    // A lock file of Tollgate versions before this one holds the owner's pid: honour it while
    // that process lives (an older server may still be running on this data dir).
    const pid = pidInLockFile(address);
    if (pid !== null && pid !== process.pid && isAlive(pid)) return { holderPid: pid };
    // A dead holder's socket: one taker at a time removes it (see removeDead), then all race to bind.
    const claim = claimTakeover(address);
    if (claim === null) {
      await pause();
      continue;
    }
    try {
      await removeDead(address);
    } finally {
      releaseTakeover(address, claim);
    }
  }
  throw new Error(`could not take the lock ${file}: it keeps changing hands`);
}

/** The pid of the live process holding the lock at `file`, null when none does. */
export async function lockHolder(file: string): Promise<{ pid: number | null } | null> {
  let address: string;
  try {
    address = lockAddress(file);
  } catch {
    return null; // no such directory: nobody holds anything there
  }
  const found = await probe(address);
  return found.state === 'alive' ? { pid: found.pid } : null;
}

/** Whether a process with this pid exists (EPERM: it exists, owned by someone else). */
function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function lockAddress(file: string): string {
  // The real path: two processes naming the same directory differently must meet.
  const real = path.join(realpathSync(path.dirname(file)), path.basename(file));
  const digest = () => createHash('sha256').update(real).digest('hex').slice(0, 32);
  if (process.platform === 'win32') return `\\\\.\\pipe\\tollgate-${digest()}`;
  if (Buffer.byteLength(real) <= MAX_SOCKET_PATH) return real;
  const hashed = path.join(privateSocketDir(), `${digest()}.sock`);
  if (Buffer.byteLength(hashed) > MAX_SOCKET_PATH) {
    throw new Error(`cannot place the lock for ${file}: both it and the temp dir's path are too long for a socket; use a shorter TOLLGATE_DATA_DIR or TMPDIR`);
  }
  return hashed;
}

/** `$TMPDIR/tollgate-<uid>`, mode 0700 and this user's (anyone else could squat on our names). */
function privateSocketDir(): string {
  const uid = os.userInfo().uid;
  const dir = path.join(os.tmpdir(), `tollgate-${uid}`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = lstatSync(dir);
  if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o077) !== 0) {
    throw new Error(`${dir} holds Tollgate's lock sockets and must be a directory of this user's with mode 0700`);
  }
  return dir;
}

/** Listens at `address`; null when something is already there. */
function bind(address: string): Promise<net.Server | null> {
  return new Promise((resolve, reject) => {
    const server = net.createServer((socket) => {
      socket.on('error', () => {}); // a prober that hung up early
      socket.end(String(process.pid));
    });
    server.once('error', (err: NodeJS.ErrnoException) => (err.code === 'EADDRINUSE' ? resolve(null) : reject(err)));
    server.listen(address, () => {
      server.unref(); // holding a lock is no reason to stay alive
      resolve(server);
    });
  });
}

type Probe = { state: 'alive'; pid: number | null } | { state: 'refused' } | { state: 'absent' };

function probe(address: string): Promise<Probe> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(address);
    let said = '';
    let connected = false;
    const done = (result: Probe) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const alive = () => done({ state: 'alive', pid: /^\d+$/.test(said) ? Number(said) : null });
    // Connected is alive; the pid is a courtesy a busy holder may be slow to send.
    const timer = setTimeout(alive, PID_WAIT_MS);
    socket.setEncoding('utf8');
    socket.on('connect', () => (connected = true));
    socket.on('data', (chunk: string) => (said += chunk));
    socket.on('end', alive);
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (connected) return alive();
      if (err.code === 'ECONNREFUSED' || err.code === 'ENOTSOCK') return done({ state: 'refused' });
      if (err.code === 'ENOENT') return done({ state: 'absent' });
      // EAGAIN: the holder's backlog is full, so there is a holder.
      if (err.code === 'EAGAIN') return done({ state: 'alive', pid: null });
      clearTimeout(timer);
      reject(err);
    });
  });
}

function statOrNull(file: string) {
  try {
    return lstatSync(file);
  } catch {
    return null;
  }
}

/**
 * Removes the dead lock at `address`; the caller holds the takeover claim. Removals happen only
 * under the claim, so a file found dead here stays there, dead, until this unlink: nobody can
 * bind a live lock at the path meanwhile (the bind fails while the file exists), and no other
 * taker removes or moves anything. Without the claim, a slow taker that had seen the dead file
 * could remove (or move aside and put back) the live lock a faster one had just bound, and two
 * processes would each hold "the" lock.
 */
async function removeDead(address: string): Promise<void> {
  const dead = statOrNull(address);
  if (!dead || (await probe(address)).state !== 'refused') return;
  // And still the same file (a bind makes a new one): a guard should a claim ever be broken
  // under a taker that stalled past STALE_TAKEOVER_MS.
  const now = statOrNull(address);
  if (!now || now.ino !== dead.ino || now.dev !== dead.dev) return;
  try {
    unlinkSync(address);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/** A short, jittered wait before trying again, so that racing takers do not spin in step. */
function pause(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 5 + Math.random() * 10));
}

/**
 * The takeover claim: a directory beside the lock (mkdir is atomic: one taker creates it).
 * Returns its inode (what the claimant releases), null when another taker holds it. A takeover
 * takes a millisecond; a claim older than STALE_TAKEOVER_MS was left by a taker that died
 * holding it, and is broken so that the next attempt can claim it.
 */
function claimTakeover(address: string): number | null {
  const claim = `${address}.takeover`;
  try {
    mkdirSync(claim, { mode: 0o700 });
    return lstatSync(claim).ino;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    const st = statOrNull(claim);
    if (st && Date.now() - st.mtimeMs > STALE_TAKEOVER_MS) releaseTakeover(address, st.ino);
    return null;
  }
}

/** Removes the claim if it is still the one with inode `ino` (not a newer taker's). */
function releaseTakeover(address: string, ino: number): void {
  const claim = `${address}.takeover`;
  if (statOrNull(claim)?.ino !== ino) return; // broken as stale, and maybe claimed again
  try {
    rmdirSync(claim);
  } catch {
    // broken by another taker meanwhile
  }
}

/** The pid in an older version's lock file (a regular file holding it), else null. */
function pidInLockFile(address: string): number | null {
  if (!statOrNull(address)?.isFile()) return null;
  try {
    return Number.parseInt(readFileSync(address, 'utf8'), 10);
  } catch {
    return null;
  }
}
