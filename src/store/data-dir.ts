// The embedded engines are single-process: one process owns $TOLLGATE_DATA_DIR at a time.
// The owner writes its pid and where it listens, so a CLI command can go through it.
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export interface OwnerInfo {
  pid: number;
  url?: string;
}

export class DataDirBusyError extends Error {
  constructor(readonly owner: OwnerInfo) {
    super(`data dir is in use by process ${owner.pid}${owner.url ? ` (${owner.url})` : ''}`);
  }
}

const ownerFile = (dataDir: string) => path.join(dataDir, 'owner.json');

export function readOwner(dataDir: string): OwnerInfo | null {
  try {
    const info = JSON.parse(readFileSync(ownerFile(dataDir), 'utf8')) as OwnerInfo;
    return isAlive(info.pid) && info.pid !== process.pid ? info : null;
  } catch {
    return null;
  }
}

/** Claims the data dir for this process, or throws DataDirBusyError naming the live owner. */
export function claimDataDir(dataDir: string): { setUrl(url: string): void; release(): void } {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const owner = readOwner(dataDir);
  if (owner) throw new DataDirBusyError(owner);
  const write = (info: OwnerInfo) => {
    const tmp = `${ownerFile(dataDir)}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(info), { mode: 0o600 });
    renameSync(tmp, ownerFile(dataDir));
  };
  write({ pid: process.pid });
  return {
    setUrl: (url) => write({ pid: process.pid, url }),
    release: () => {
      try {
        const info = JSON.parse(readFileSync(ownerFile(dataDir), 'utf8')) as OwnerInfo;
        if (info.pid === process.pid) rmSync(ownerFile(dataDir), { force: true });
      } catch {
        // already gone
      }
    },
  };
}

/** Whether a process with this pid exists (EPERM: it exists, owned by someone else). */
export function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
