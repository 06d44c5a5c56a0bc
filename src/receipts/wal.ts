// On-disk format of the receipts write-ahead log (DESIGN §7), `${dataDir}/wal/`:
//
//   000000000042.jsonl   a segment: one receipt per line, the canonical JSON of the receipt
//                        WITHOUT its signature (the text the signature covers; sha256 of a
//                        line is the next receipt's prev_hash). Receipts are signed when
//                        their segment is prepared for ClickHouse (Ed25519 is
//                        deterministic: preparing a segment again gives the same rows).
//                        Numbers increase forever; a segment is one ClickHouse insert.
//   head.json            {segment, seq, hash} of the last segment deleted after its insert
//                        was acknowledged: the chain head and segment counter when no
//                        segment is left on disk.
//   LOCK                 pid of the process that owns this WAL.
//
// Only the newest segment can have a torn tail (a crash in the middle of a write); every
// older one was complete when the next was started.
import { hash, randomUUID } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { link, open, readdir, readFile, rename, truncate, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { takeLock } from '../store/process-lock.js';
import type { LogFn } from './batcher.js';
import type { UnsignedReceipt } from './receipt.js';
import { canonicalUnsignedJson } from './signer.js';
import { GENESIS_PREV_HASH } from './verify.js';
import type { WalIndex } from './wal-index.js';

export const WAL_DIR = 'wal';
export const HEAD_FILE = 'head.json';
const SEGMENT_FILE = /^(\d{12})\.jsonl$/;

export const segmentFileName = (n: number): string => `${String(n).padStart(12, '0')}.jsonl`;

/** sha256 hex of a text's UTF-8 bytes (one-shot: no Hash object). */
export const sha256Hex = (text: string): string => hash('sha256', text);

export interface ChainHead {
  seq: number;
  /** sha256 hex of the last receipt's canonical JSON without signature: the next prev_hash. */
  hash: string;
}

/**
 * The chain head a WAL line leaves: its seq, and the hash of its receipt without signature.
 * That is sha256 of the line itself, except for a line written by a version that logged
 * signed receipts (it has a `signature` member), whose signature is left out.
 */
export function chainHeadOfLine(line: string): ChainHead {
  const r = JSON.parse(line) as UnsignedReceipt & { signature?: unknown };
  return { seq: r.seq, hash: r.signature === undefined ? sha256Hex(line) : sha256Hex(canonicalUnsignedJson(r)) };
}

export interface WalHead extends ChainHead {
  segment: number;
}

/** Segment numbers present in the WAL directory, ascending. */
export async function listSegments(dir: string): Promise<number[]> {
  const numbers: number[] = [];
  for (const name of await readdir(dir)) {
    const m = SEGMENT_FILE.exec(name);
    if (m) numbers.push(Number(m[1]));
  }
  return numbers.sort((a, b) => a - b);
}

export async function readHead(dir: string): Promise<WalHead | null> {
  let text: string;
  try {
    text = await readFile(path.join(dir, HEAD_FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  const head = JSON.parse(text) as WalHead;
  if (!Number.isSafeInteger(head.segment) || !Number.isSafeInteger(head.seq) || typeof head.hash !== 'string') {
    throw new Error(`corrupt ${path.join(dir, HEAD_FILE)}: ${text}`);
  }
  return head;
}

/** Replaces head.json atomically (write a temporary file, then rename over). */
export async function writeHead(dir: string, head: WalHead, durable: boolean): Promise<void> {
  const file = path.join(dir, HEAD_FILE);
  const tmp = `${file}.tmp`;
  const handle = await open(tmp, 'w', 0o600);
  try {
    await handle.writeFile(JSON.stringify(head));
    if (durable) await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(tmp, file);
  if (durable) await syncDir(dir);
}

export async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Cuts a torn tail off a segment: bytes after the last newline, then complete lines at the
 * end that do not parse (e.g. zeros left by a crash of the machine). Returns the last valid
 * line, or null when nothing valid is left.
 */
export async function repairTail(file: string): Promise<{ lastLine: string | null; truncatedBytes: number; records: number }> {
  const buf = await readFile(file);
  let end = buf.lastIndexOf(0x0a) + 1; // bytes [0, end) are newline-terminated lines
  let lastLine: string | null = null;
  while (end > 0) {
    // (a negative offset would make lastIndexOf count from the end of the buffer)
    const start = end >= 2 ? buf.lastIndexOf(0x0a, end - 2) + 1 : 0;
    const line = buf.toString('utf8', start, end - 1);
    try {
      JSON.parse(line);
      lastLine = line;
      break;
    } catch {
      end = start;
    }
  }
  if (end < buf.length) await truncate(file, end);
  return { lastLine, truncatedBytes: buf.length - end, records: countNewlines(buf, end) };
}

function countNewlines(buf: Buffer, end: number): number {
  let n = 0;
  for (let i = buf.indexOf(0x0a); i !== -1 && i < end; i = buf.indexOf(0x0a, i + 1)) n++;
  return n;
}

/** Number of complete lines of a segment, read in bounded memory. */
export function countRecords(file: string): number {
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    let n = 0;
    for (let read: number; (read = readSync(fd, buf, 0, buf.length, null)) > 0; ) n += countNewlines(buf, read);
    return n;
  } finally {
    closeSync(fd);
  }
}

/** A WAL directory made consistent after a stop or a crash: where appending goes on. */
export interface RecoveredWal {
  /** The chain head the next receipt links to. */
  chain: ChainHead;
  /** Number of the next segment: past every segment on disk and the one head.json names. */
  nextSegment: number;
  /** Segments left to insert, oldest first, with their number of complete lines. */
  pending: Array<{ number: number; records: number }>;
}

/**
 * Only the newest segment can be torn: its torn tail is cut off. Segments left empty by the
 * repair never held an acknowledged receipt: they are deleted, and the one before is looked at.
 */
export async function recoverWal(dir: string, log: LogFn, onLeftover?: (receipt: UnsignedReceipt) => void): Promise<RecoveredWal> {
  const segments = await listSegments(dir);
  const head = await readHead(dir);
  let chain: ChainHead | null = null;
  while (segments.length > 0 && chain === null) {
    const newest = segments[segments.length - 1]!;
    const file = path.join(dir, segmentFileName(newest));
    const repaired = await repairTail(file);
    if (repaired.truncatedBytes > 0) log('receipts WAL: cut a torn tail off the last segment', { segment: newest, bytes: repaired.truncatedBytes });
    if (repaired.lastLine === null) {
      await unlink(file);
      segments.pop();
      continue;
    }
    chain = chainHeadOfLine(repaired.lastLine);
  }
  chain ??= head ? { seq: head.seq, hash: head.hash } : { seq: 0, hash: GENESIS_PREV_HASH };
  // One segment at a time: a long outage's backlog is not held in memory at once.
  const pending: RecoveredWal['pending'] = [];
  for (const n of segments) {
    const file = path.join(dir, segmentFileName(n));
    pending.push({ number: n, records: onLeftover ? await readLeftover(file, onLeftover) : countRecords(file) });
  }
  return {
    chain,
    nextSegment: Math.max(segments.at(-1) ?? 0, head?.segment ?? 0) + 1,
    pending,
  };
}

/** Shows each receipt of a segment to `visit` (a line that is not whole JSON is skipped, as its insert skips it); returns its complete lines. */
async function readLeftover(file: string, visit: (receipt: UnsignedReceipt) => void): Promise<number> {
  const lines = (await readFile(file, 'utf8')).split('\n');
  for (const line of lines) {
    let receipt: UnsignedReceipt;
    try {
      receipt = JSON.parse(line) as UnsignedReceipt;
    } catch {
      continue; // torn, damaged, or the empty rest after the last newline
    }
    if (receipt && typeof receipt === 'object') visit(receipt);
  }
  return lines.length - 1;
}

/** Longest line readLineAt() reads; a receipt line is ~1.5 KB. */
const MAX_LINE_BYTES = 1 << 20;

/**
 * The newest receipts the previous run left in `pending` segments (as many as the index holds),
 * indexed so that they are served by id until their segments land: a client holding a receipt
 * id from before a restart gets it, not a 404, while ClickHouse is down or behind.
 */
export async function indexLeftovers(index: WalIndex, dir: string, pending: ReadonlyArray<{ number: number; records: number }>): Promise<void> {
  let from = pending.length;
  for (let held = 0; from > 0 && held < index.limit; ) held += pending[--from]!.records;
  for (const segment of pending.slice(from)) {
    const file = await readFile(path.join(dir, segmentFileName(segment.number))).catch(() => null);
    if (file) index.addLines(segment.number, file);
  }
}

/**
 * The line of a segment that starts at byte `offset`, without its newline; null when the
 * file is gone (its insert was acknowledged and it was deleted) or holds no whole line there.
 */
export async function readLineAt(file: string, offset: number): Promise<string | null> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  try {
    let buf = Buffer.allocUnsafe(4096);
    let length = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buf, length, buf.length - length, offset + length);
      const end = buf.subarray(0, length + bytesRead).indexOf(0x0a, length);
      if (end !== -1) return buf.toString('utf8', 0, end);
      length += bytesRead;
      if (bytesRead === 0 || length >= MAX_LINE_BYTES) return null;
      if (length === buf.length) buf = Buffer.concat([buf, Buffer.allocUnsafe(buf.length)]);
    }
  } finally {
    await handle.close();
  }
}

/** `${dataDir}/instance-id`: this gateway's identity in receipts, created once. */
export async function loadInstanceId(dataDir: string): Promise<string> {
  const file = path.join(dataDir, 'instance-id');
  try {
    const id = (await readFile(file, 'utf8')).trim();
    if (id) return id;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  // Written under a temporary name and linked into place: never a torn or half-created id,
  // and a concurrent starter's id wins consistently.
  const tmp = `${file}.${randomUUID()}.tmp`;
  await writeFile(tmp, `${randomUUID()}\n`, { mode: 0o644 });
  try {
    await link(tmp, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
  return (await readFile(file, 'utf8')).trim();
}

// Locks held by this process: a second journal on the same directory in one process is as
// wrong as one in another process.
const heldLocks = new Set<string>();

/**
 * Takes `wal/LOCK` for this process; throws if a live process holds it. The lock is released
 * by the kernel when its holder dies (store/process-lock.ts), so one left by a process killed
 * with -9 is taken over. Returns the release function.
 */
export async function lockWal(dir: string): Promise<() => void> {
  const file = path.join(dir, 'LOCK');
  if (heldLocks.has(file)) throw new Error(`the receipts WAL ${dir} is already open in this process`);
  heldLocks.add(file);
  const attempt = await takeLock(file).catch((err: unknown) => {
    heldLocks.delete(file);
    throw err;
  });
  if (!('held' in attempt)) {
    heldLocks.delete(file);
    const holder = attempt.holderPid === null ? 'another process' : `process ${attempt.holderPid}`;
    throw new Error(`the receipts WAL ${dir} is in use by ${holder}; only one Tollgate process may use a data directory`);
  }
  return () => {
    if (heldLocks.delete(file)) attempt.held.release();
  };
}
