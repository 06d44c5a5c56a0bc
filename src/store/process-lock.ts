// A lock the kernel releases when its holder dies, however it dies (kill -9 included): a Unix
// domain socket bound at the lock's path (Node has no flock(2)). The holder listens there and
// answers every connection with its pid. Whoever wants the lock tries to bind the path:
//   - it binds: the lock is its own;
//   - a connect to the path succeeds: a live process holds it (and says which);
//   - the connect is refused: the socket file of a dead holder, removed and taken over.
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
import { createHash, randomUUID } from 'node:crypto';
import { lstatSync, mkdirSync, readFileSync, realpathSync, renameSync, unlinkSync } from 'node:fs';
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

export async function takeLock(file: string): Promise<LockAttempt> {
  const address = lockAddress(file);
  for (let attempt = 0; attempt < 5; attempt++) {
    const server = await bind(address);
    if (server) return { held: { release: () => void server.close() } };
    const before = statOrNull(address);
    const found = await probe(address);
    if (found.state === 'alive') return { holderPid: found.pid };
    if (found.state === 'absent') continue; // released between our bind and the probe
    // A lock file of Tollgate versions before this one holds the owner's pid: honour it while
    // that process lives (an older server may still be running on this data dir).
    if (before?.isFile()) {
      const pid = Number.parseInt(readFileSync(address, 'utf8'), 10);
      if (pid !== process.pid && isAlive(pid)) return { holderPid: pid };
    }
    if (before) removeIfUnchanged(address, before.ino);
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
 * Removes the dead lock at `address`, unless another taker replaced it meanwhile. The file is
 * first renamed aside (atomic: of two takers, one moves it and the other finds nothing) and
 * removed only if it is the one found dead; a live lock moved by mistake is put back.
 */
function removeIfUnchanged(address: string, deadIno: number): void {
  const aside = `${address}.${process.pid}.${randomUUID().slice(0, 8)}.stale`;
  try {
    renameSync(address, aside);
  } catch {
    return; // another taker moved it first
  }
  if (lstatSync(aside).ino === deadIno) unlinkSync(aside);
  else renameSync(aside, address);
}
