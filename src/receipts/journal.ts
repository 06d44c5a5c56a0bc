// The receipts journal (DESIGN §7): chain → append to the local WAL (group commit) → the
// request completes → a sealed segment is signed and inserted into ClickHouse → the
// segment is deleted.
//
// A request waits only for its receipt's line to reach the WAL: one write syscall for all
// the receipts appended in the same event-loop turn (plus fdatasync with sync='fsync').
// The line is the canonical JSON of the receipt without signature, which is both the text
// its signature covers and what the next receipt's prev_hash hashes (verify.ts), so the
// append path never signs: the request path costs one serialization and one sha256.
// Signing (Ed25519, ~20–40 µs a receipt: ed25519.ts) happens when a sealed segment is prepared for its
// insert, in a worker thread (segment-preparer.ts); a receipt asked for before that is
// signed on demand with sign(). Signatures are deterministic, so both give the same bytes.
//
// ClickHouse being down or slow never blocks an append; segments accumulate and drain when
// it is back. After kill -9 at any point, reopening finds the chain head on disk and
// replays every sealed segment; deduplication tokens make a replay exactly-once.
//
// Until its segment is in ClickHouse, find() serves a receipt from its line in the WAL
// (wal-index.ts holds where each line is).
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { receiptsUnavailable } from '../gateway/errors.js';
import type { RowsInserter } from '../store/clickhouse.js';
import { RECEIPTS_DISTRIBUTED_TABLE } from '../store/clickhouse-migrate.js';
import { type LogFn, SegmentBatcher } from './batcher.js';
import { unsignedReceipt } from './normalize.js';
import type { Receipt, ReceiptDraft, UnsignedReceipt } from './receipt.js';
import { type SegmentPreparer, SegmentWorker } from './segment-preparer.js';
import { canonicalUnsignedJson, ReceiptSigner } from './signer.js';
import { type ChainHead, indexLeftovers, loadInstanceId, lockWal, readLineAt, recoverWal, segmentFileName, sha256Hex, WAL_DIR } from './wal.js';
import { WalIndex } from './wal-index.js';
import { type OpenSegment, WalWriteError, WalWriter } from './wal-writer.js';

export interface ReceiptJournalOptions {
  dataDir: string;
  signer: ReceiptSigner;
  /** Inserts the segments' rows: the ClickHouse store's `insertRows`. */
  insertRows: RowsInserter;
  /** `write` survives a crash of the process; `fsync` also a crash of the machine. */
  sync: 'write' | 'fsync';
  /** A segment is sealed (becomes one insert) at this many receipts… */
  batchMaxRows: number;
  /** …or this long after its first receipt. */
  batchMaxMs: number;
  log?: LogFn;
  /** Cluster mode: insert through the Distributed table made by migrateClickHouse({ cluster }). */
  cluster?: string;
  /** Sees each receipt the previous run left in the WAL, before its replay (budgets/spend.ts). */
  onLeftover?: (receipt: UnsignedReceipt) => void;
  /** How long close() waits for pending segments to be inserted (default 5 s). */
  closeTimeoutMs?: number;
  /** Cap of the insert retry backoff (default 5 s). */
  retryMaxDelayMs?: number;
  /**
   * Where sealed segments are signed and turned into insert bodies; default: one worker
   * thread (SegmentWorker). Closed by close().
   */
  preparer?: SegmentPreparer;
  /**
   * On a cluster: how long find() still serves a segment from the WAL after its insert was
   * acknowledged (its file is kept that long). A read may reach a replica that has not
   * fetched the part yet. Default 0: on one server an acknowledged insert is readable.
   */
  landedGraceMs?: number;
  /** At most this many receipts not in ClickHouse yet are found by find(): the newest (default 20,000). */
  findLimit?: number;
}

export interface ReceiptJournalStats {
  /** Receipts in the WAL not yet acknowledged by ClickHouse. */
  pendingRecords: number;
  /** WAL segments holding them (the open one included). */
  pendingSegments: number;
  /** Receipts inserted by this process. */
  insertedRecords: number;
  /** Failed insert attempts (each is retried). */
  insertErrors: number;
  /** Appends that reached the WAL in this process. */
  appendedRecords: number;
}

/** Appends of one event-loop turn, written together. */
interface Group {
  lines: string[];
  hashes: string[];
  /** receipt_id of each line. */
  ids: string[];
  before: ChainHead;
  /** Set when its write failed part-way: how many of its lines are in the WAL all the same. */
  written: number;
  done: Promise<void>;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export class ReceiptJournal {
  readonly instanceId: string;
  readonly #signer: ReceiptSigner;
  readonly #fsync: boolean;
  readonly #closeTimeoutMs: number;
  readonly #log: LogFn;
  readonly #batcher: SegmentBatcher;
  readonly #wal: WalWriter;
  readonly #dir: string;
  readonly #index: WalIndex;
  readonly #releaseLock: () => void;

  #chain: ChainHead;
  #group: Group | null = null;
  #commitScheduled = false;
  #committing = false;
  #flushWaiters: Array<{ upTo: number; resolve: () => void; reject: (err: Error) => void }> = [];
  #appended = 0;
  #landedSeq = 0;
  #closed = false;

  private constructor(o: ReceiptJournalOptions, init: { instanceId: string; dir: string; chain: ChainHead; nextSegment: number; releaseLock: () => void }) {
    this.instanceId = init.instanceId;
    this.#signer = o.signer;
    this.#fsync = o.sync === 'fsync';
    this.#closeTimeoutMs = o.closeTimeoutMs ?? 5000;
    this.#log = o.log ?? (() => undefined);
    this.#chain = init.chain;
    this.#releaseLock = init.releaseLock;
    this.#dir = init.dir;
    this.#index = new WalIndex(o.findLimit);
    const graceMs = o.landedGraceMs ?? 0;
    this.#batcher = new SegmentBatcher({
      walDir: init.dir,
      instanceId: init.instanceId,
      insertRows: o.insertRows,
      preparer: o.preparer ?? new SegmentWorker(ReceiptSigner.privateKeyOf(o.signer), o.signer.keyId),
      table: o.cluster ? RECEIPTS_DISTRIBUTED_TABLE : 'receipts',
      distributed: Boolean(o.cluster),
      durable: this.#fsync,
      retryMaxDelayMs: o.retryMaxDelayMs ?? 5000,
      log: this.#log,
      landedGraceMs: graceMs,
      onInserted: (segment, _receipts, lastSeq) => {
        // Segments are inserted in order, so every receipt up to lastSeq is in ClickHouse.
        if (lastSeq > this.#landedSeq) this.#landedSeq = lastSeq;
        if (graceMs > 0) setTimeout(() => this.#index.landed(segment.number), graceMs).unref();
        else this.#index.landed(segment.number);
        this.#notifyFlushWaiters();
      },
    });
    this.#wal = new WalWriter({
      dir: init.dir,
      firstSegment: init.nextSegment,
      maxRows: Math.max(1, Math.floor(o.batchMaxRows)),
      maxMs: Math.max(1, o.batchMaxMs),
      log: this.#log,
      onSealed: (segment) => this.#batcher.enqueue(segment),
    });
  }

  /**
   * Opens the WAL in `${dataDir}/wal`, recovers it after a crash (torn tail cut off, chain
   * head found, the last segment sealed) and starts replaying every sealed segment.
   */
  static async open(o: ReceiptJournalOptions): Promise<ReceiptJournal> {
    const dir = path.join(o.dataDir, WAL_DIR);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const releaseLock = await lockWal(dir);
    try {
      const instanceId = await loadInstanceId(o.dataDir);
      const log = o.log ?? (() => undefined);
      const { chain, nextSegment, pending } = await recoverWal(dir, log, o.onLeftover);
      const journal = new ReceiptJournal(o, { instanceId, dir, chain, nextSegment, releaseLock });
      const records = pending.reduce((s, p) => s + p.records, 0);
      if (pending.length > 0) log('receipts WAL: replaying segments left by the previous run', { segments: pending.length, records });
      await indexLeftovers(journal.#index, dir, pending);
      for (const segment of pending) journal.#batcher.enqueue(segment);
      return journal;
    } catch (err) {
      releaseLock();
      throw err;
    }
  }

  /**
   * Normalizes and chains a receipt and appends it to the WAL. Resolves, once its line is
   * in the WAL (written, or synced with sync='fsync'), with the receipt as stored, not yet
   * signed: it is signed with its segment, off the main thread, and sign() gives the same
   * signature now. Rejects if the draft cannot be stored or the write fails.
   */
  append(draft: ReceiptDraft): Promise<UnsignedReceipt> {
    if (this.#closed) return Promise.reject(new Error('receipt journal is closed'));
    let receipt: UnsignedReceipt;
    try {
      receipt = unsignedReceipt(draft, {
        instance_id: this.instanceId,
        seq: this.#chain.seq + 1,
        prev_hash: this.#chain.hash,
        key_id: this.#signer.keyId,
      });
    } catch (err) {
      return Promise.reject(err);
    }
    const line = canonicalUnsignedJson(receipt);
    const hash = sha256Hex(line);
    const group = (this.#group ??= newGroup(this.#chain));
    const index = group.lines.length;
    this.#chain = { seq: receipt.seq, hash };
    group.lines.push(line);
    group.hashes.push(hash);
    group.ids.push(receipt.receipt_id);
    if (!this.#commitScheduled) {
      this.#commitScheduled = true;
      setImmediate(() => void this.#commit());
    }
    // A line that reached the WAL before its group's write failed is a receipt like any other:
    // it will be inserted, so its request is answered, not refused.
    return group.done.then(
      () => receipt,
      (err: unknown) => (index < group.written ? receipt : Promise.reject(err)),
    );
  }

  /**
   * The receipt as served (DESIGN §6), signed here, on the calling thread (~20–40 µs): for a
   * receipt asked for before it is in ClickHouse. Ed25519 is deterministic, so this is
   * exactly the signature stored with it. `receipt` must be as append() returned it.
   */
  sign(receipt: UnsignedReceipt): Receipt {
    return { ...receipt, signature: this.#signer.sign(receipt) };
  }

  /**
   * A receipt not in ClickHouse yet (appended by this process, or left by the previous run;
   * within findLimit), read from its WAL line and signed; undefined otherwise, and then
   * ClickHouse has it if anyone does: a segment's file is deleted only after its insert was
   * acknowledged.
   */
  async find(id: string): Promise<Receipt | undefined> {
    const at = this.#index.find(id);
    if (!at) return undefined;
    const line = await readLineAt(path.join(this.#dir, segmentFileName(at.segment)), at.offset);
    if (line === null) return undefined;
    let receipt: UnsignedReceipt;
    try {
      receipt = JSON.parse(line) as UnsignedReceipt;
    } catch {
      return undefined; // a damaged line: the segment's insert skips it too
    }
    return receipt.receipt_id === id ? this.sign(receipt) : undefined;
  }

  /** seq of the newest receipt this process knows is in ClickHouse (0: none yet). */
  get landedSeq(): number {
    return this.#landedSeq;
  }

  /**
   * Seals the open segment and waits until every receipt appended so far is in ClickHouse, or
   * at most `timeoutMs` (ClickHouse may be down for longer): resolves whether they all are.
   */
  async flush(timeoutMs = Number.POSITIVE_INFINITY): Promise<boolean> {
    const group = this.#group;
    if (group) await group.done.catch(() => undefined);
    this.#wal.seal();
    const upTo = this.#wal.lastSegment;
    if (this.#oldestPendingSegment() > upTo) return true;
    const landed = new Promise<boolean>((resolve, reject) => this.#flushWaiters.push({ upTo, resolve: () => resolve(true), reject }));
    if (timeoutMs === Number.POSITIVE_INFINITY) return landed;
    const timer = new AbortController();
    try {
      return await Promise.race([landed, sleep(timeoutMs, false, { signal: timer.signal })]);
    } finally {
      timer.abort();
    }
  }

  /**
   * Stops accepting appends, flushes with a bounded wait, stops the batcher and closes the
   * files. Receipts not inserted by then stay in the WAL for the next start.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.flush(this.#closeTimeoutMs);
    const stats = this.stats();
    if (stats.pendingRecords > 0) {
      this.#log('receipts journal closed with receipts not yet in ClickHouse; they stay in the WAL for the next start', {
        pendingRecords: stats.pendingRecords,
        pendingSegments: stats.pendingSegments,
      });
    }
    await this.#batcher.stop();
    this.#wal.close();
    const err = new Error('receipt journal closed before its receipts were inserted');
    for (const w of this.#flushWaiters) w.reject(err);
    this.#flushWaiters = [];
    this.#releaseLock();
  }

  stats(): ReceiptJournalStats {
    const queued = this.#batcher.queue;
    const written = this.#wal.pending();
    let pendingRecords = written.records;
    for (const s of queued) pendingRecords += s.records;
    return {
      pendingRecords,
      pendingSegments: written.segments + queued.length,
      insertedRecords: this.#batcher.insertedRecords,
      insertErrors: this.#batcher.insertErrors,
      appendedRecords: this.#appended,
    };
  }

  // -------------------------------------------------------------------------------------
  // Group commit

  async #commit(): Promise<void> {
    this.#commitScheduled = false;
    if (this.#committing) return; // the running commit picks the new group up
    this.#committing = true;
    try {
      for (let group = this.#group; group !== null; group = this.#group) {
        this.#group = null;
        // With fsync, segments filled by this group are not inserted before their lines are synced.
        if (this.#fsync) this.#wal.hold();
        try {
          const touched = this.#write(group);
          if (this.#fsync) await this.#wal.sync(touched);
          this.#appended += group.lines.length;
          group.resolve();
        } catch (err) {
          await this.#refuse(group, err);
        } finally {
          this.#wal.release();
        }
      }
    } finally {
      this.#committing = false;
    }
  }

  /** Writes a group's lines (synchronously: no append can slip in before the chain is put back). */
  #write(group: Group): OpenSegment[] {
    try {
      return this.#wal.write(group.lines, (segment, offset, i) => this.#index.add(segment, group.ids[i]!, offset));
    } catch (err) {
      // The unwritten receipts of this group were never acknowledged: put the chain back on
      // the last line on disk, so that the next receipts take their seq and link to it.
      const { written } = err as WalWriteError;
      this.#chain = written === 0 ? group.before : { seq: group.before.seq + written, hash: group.hashes[written - 1] };
      throw err;
    }
  }

  /**
   * After a failed write or sync, the group's appends are refused, except those whose lines the
   * write had put in the WAL before it failed (with fsync: and that sync now). Those are
   * receipts like any other, inserted in their turn, so their requests are answered.
   */
  async #refuse(group: Group, err: unknown): Promise<void> {
    let cause = err;
    if (err instanceof WalWriteError) {
      cause = err.cause;
      group.written = err.written;
      if (this.#fsync && err.written > 0) await this.#wal.sync(err.touched).catch(() => (group.written = 0));
    }
    this.#appended += group.written;
    this.#log('receipts WAL write failed', { records: group.lines.length, written: group.written, error: (cause as Error).message });
    group.reject(receiptsUnavailable(cause));
  }

  // -------------------------------------------------------------------------------------
  // flush()

  #oldestPendingSegment(): number {
    const queued = this.#batcher.queue;
    return Math.min(this.#wal.pending().oldestSegment, queued[0]?.number ?? Infinity);
  }

  #notifyFlushWaiters(): void {
    if (this.#flushWaiters.length === 0) return;
    const oldest = this.#oldestPendingSegment();
    this.#flushWaiters = this.#flushWaiters.filter((w) => {
      if (oldest > w.upTo) w.resolve();
      return oldest <= w.upTo;
    });
  }
}

function newGroup(before: ChainHead): Group {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const done = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Rejections reach every append through .then(); this keeps an unobserved group quiet.
  done.catch(() => undefined);
  return { lines: [], hashes: [], ids: [], before, written: 0, done, resolve, reject };
}
