// The embedded engines are single-process: one process owns $TOLLGATE_DATA_DIR at a time. The
// owner holds `owner.sock`, a lock the kernel releases when the process dies (see
// process-lock.ts), and writes owner.json (its pid and, once it listens, its URL) so that a
// CLI command can go through it. owner.json is information only: a stale one blocks nothing.
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { lockHolder, takeLock } from './process-lock.js';

export interface OwnerInfo {
  /** Null when the owner did not say (it is alive all the same). */
  pid: number | null;
  url?: string;
}

export interface DataDirClaim {
  setUrl(url: string): void;
  release(): void;
}

export class DataDirBusyError extends Error {
  constructor(readonly owner: OwnerInfo) {
    super(`data dir is in use by ${describeOwner(owner)}`);
  }
}

export function describeOwner(owner: OwnerInfo): string {
  return `${owner.pid === null ? 'another process' : `process ${owner.pid}`}${owner.url ? ` at ${owner.url}` : ''}`;
}

const ownerFile = (dataDir: string) => path.join(dataDir, 'owner.json');
const lockFile = (dataDir: string) => path.join(dataDir, 'owner.sock');

/** The live process that owns the data dir, or null when none does. */
export async function findOwner(dataDir: string): Promise<OwnerInfo | null> {
  const holder = await lockHolder(lockFile(dataDir));
  return holder ? withUrl(dataDir, holder.pid) : null;
}

/** Claims the data dir for this process, or throws DataDirBusyError naming the live owner. */
export async function claimDataDir(dataDir: string): Promise<DataDirClaim> {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const attempt = await takeLock(lockFile(dataDir));
  if (!('held' in attempt)) throw new DataDirBusyError(withUrl(dataDir, attempt.holderPid));
  const write = (info: OwnerInfo) => {
    const tmp = `${ownerFile(dataDir)}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(info), { mode: 0o600 });
    renameSync(tmp, ownerFile(dataDir));
  };
  write({ pid: process.pid });
  let released = false;
  return {
    setUrl: (url) => write({ pid: process.pid, url }),
    release: () => {
      if (released) return;
      released = true;
      rmSync(ownerFile(dataDir), { force: true });
      attempt.held.release();
    },
  };
}

/** The owner's URL from owner.json, when that file is the live holder's (`pid` null: trust it). */
function withUrl(dataDir: string, pid: number | null): OwnerInfo {
  try {
    const info = JSON.parse(readFileSync(ownerFile(dataDir), 'utf8')) as { pid?: unknown; url?: unknown };
    const filePid = typeof info.pid === 'number' ? info.pid : null;
    if (pid === null || filePid === pid) return { pid: pid ?? filePid, url: typeof info.url === 'string' ? info.url : undefined };
  } catch {
    // none yet, or torn: the lock alone names the owner
  }
  return { pid };
}
