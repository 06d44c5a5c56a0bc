// Moves sealed WAL segments into ClickHouse, oldest first, one at a time (DESIGN §7).
//
// A segment is one insert whose insert_deduplication_token names its exact content, so an
// insert that is retried (timeout after success, crash before the file was deleted) is a
// no-op in `receipts` and, with deduplicate_blocks_in_dependent_materialized_views, in
// every rollup. The file is deleted only after the insert was acknowledged; failures are
// retried with capped exponential backoff forever: a receipt is never dropped.
//
// The insert body (signed receipts as RowBinary rows) is made by a SegmentPreparer, in a
// worker thread; this thread only hands the bytes, as they are, to the store's inserter.
import { unlink } from 'node:fs/promises';
import path from 'node:path';
import type { RowsInserter } from '../store/clickhouse.js';
import { RECEIPT_COLUMNS } from './rows.js';
import type { PreparedSegment, SegmentPreparer } from './segment-preparer.js';
import { segmentFileName, writeHead } from './wal.js';

export type LogFn = (msg: string, fields?: object) => void;

export interface SealedSegment {
  number: number;
  /** Complete lines in the file (for stats; the insert reads the file). */
  records: number;
}

export interface BatcherOptions {
  walDir: string;
  instanceId: string;
  insertRows: RowsInserter;
  preparer: SegmentPreparer;
  /** `receipts`, or `receipts_distributed` on a cluster. */
  table: string;
  distributed: boolean;
  /** fsync head.json (TOLLGATE_WAL_SYNC=fsync). */
  durable: boolean;
  retryMaxDelayMs: number;
  /**
   * On a cluster: how long an inserted segment's file is kept, so the journal can still serve
   * its receipts while replicas fetch the part (0: deleted at once). A crash meanwhile
   * leaves it to be replayed, which its deduplication token makes a no-op.
   */
  landedGraceMs: number;
  log: LogFn;
  /** After each segment's insert was acknowledged; `lastSeq` is its last receipt's seq (0: none). */
  onInserted: (segment: SealedSegment, receipts: number, lastSeq: number) => void;
}

/** What #insert reports when stop() interrupted it: nothing inserted by this call. */
const STOPPED = { records: 0, lastSeq: 0 } as const;

export class SegmentBatcher {
  readonly #o: BatcherOptions;
  readonly #queue: SealedSegment[] = [];
  readonly #abort = new AbortController();
  #running: Promise<void> | null = null;
  /** The oldest segment's insert body, kept while its insert is retried (a sealed file never changes). */
  #prepared: { number: number; result: PreparedSegment } | null = null;
  #stopped = false;
  #wake: (() => void) | null = null;
  /** Inserted segments' files kept for landedGraceMs: file → its deletion timer. */
  readonly #landedFiles = new Map<string, NodeJS.Timeout>();
  insertedRecords = 0;
  insertErrors = 0;

  constructor(options: BatcherOptions) {
    this.#o = options;
  }

  /** Sealed segments not inserted yet, oldest first. */
  get queue(): readonly SealedSegment[] {
    return this.#queue;
  }

  enqueue(segment: SealedSegment): void {
    if (this.#stopped) return;
    this.#queue.push(segment);
    this.#running ??= this.#run().finally(() => {
      this.#running = null;
    });
  }

  /**
   * Stops after the current attempt; an insert in flight is aborted and a file is never
   * touched after stop, because a journal reopened on the same WAL owns the files then.
   */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#abort.abort(new Error('receipt journal closed'));
    this.#wake?.();
    // Inserted: no reason to replay them at the next start.
    for (const [file, timer] of this.#landedFiles) {
      clearTimeout(timer);
      await unlink(file).catch(() => undefined);
    }
    this.#landedFiles.clear();
    return this.#o.preparer.close();
  }

  async #run(): Promise<void> {
    let failures = 0;
    while (!this.#stopped && this.#queue.length > 0) {
      const segment = this.#queue[0];
      try {
        const { records: inserted, lastSeq } = await this.#insert(segment);
        if (this.#stopped) return;
        this.#queue.shift();
        // Acknowledged: nothing reads the body any more, and its buffer can take the next one.
        if (this.#prepared) this.#o.preparer.recycle(this.#prepared.result.body);
        this.#prepared = null;
        if (failures > 0) this.#o.log('receipts insert succeeded again', { segment: segment.number, failedAttempts: failures });
        failures = 0;
        this.insertedRecords += inserted;
        this.#o.onInserted(segment, inserted, lastSeq);
      } catch (err) {
        if (this.#stopped) return;
        failures++;
        this.insertErrors++;
        // Equal jitter: at least half the capped exponential delay, so instances that lost
        // ClickHouse together do not retry in lockstep.
        const cap = Math.min(this.#o.retryMaxDelayMs, 100 * 2 ** Math.min(failures - 1, 20));
        const delay = Math.round(cap / 2 + (Math.random() * cap) / 2);
        // The first failures, then about once a minute at the default cap.
        if (failures <= 3 || failures % 12 === 0) {
          this.#o.log('receipts insert failed, will retry', {
            segment: segment.number,
            records: segment.records,
            attempt: failures,
            retryInMs: delay,
            pendingSegments: this.#queue.length,
            error: (err as Error).message,
          });
        }
        await this.#sleep(delay);
      }
    }
  }

  async #insert(segment: SealedSegment): Promise<{ records: number; lastSeq: number }> {
    const { walDir, instanceId, insertRows, table } = this.#o;
    const file = path.join(walDir, segmentFileName(segment.number));
    // A retried insert sends the body made for its first attempt again: no second signing.
    let prepared = this.#prepared?.number === segment.number ? this.#prepared.result : null;
    if (!prepared) {
      this.#prepared = null;
      prepared = await this.#o.preparer.prepare(file);
      this.#prepared = { number: segment.number, result: prepared };
    }
    if (this.#stopped) return STOPPED;
    if (prepared.invalidLines > 0) {
      // Only a write cut short by a crash leaves such lines, and its append never resolved.
      this.#o.log('receipts WAL segment has incomplete lines, skipping them', { segment: segment.number, invalidLines: prepared.invalidLines });
    }
    if (prepared.records > 0) {
      // The last line's hash chains over every line before it: with the instance and the
      // segment number, the token names exactly this content, even if a WAL were reset.
      await insertRows({
        table,
        columns: RECEIPT_COLUMNS,
        body: prepared.body,
        signal: this.#abort.signal,
        settings: {
          insert_deduplicate: 1,
          insert_deduplication_token: `${instanceId}:${segment.number}:${prepared.lastLineHash}`,
          deduplicate_blocks_in_dependent_materialized_views: 1,
          // An async insert is acknowledged before it is written: not an acknowledgement.
          async_insert: 0,
          ...(this.#o.distributed ? { distributed_foreground_insert: 1 } : {}),
        },
      });
      if (this.#stopped) return STOPPED;
      // Before the last segment disappears, the chain head and the segment counter must
      // survive somewhere: a new segment must never reuse this number.
      try {
        await writeHead(walDir, { segment: segment.number, seq: prepared.lastSeq, hash: prepared.chainHash }, this.#o.durable);
      } catch (err) {
        // head.json is read only once no segment is left; until then recovery takes the chain
        // from the newest. On a full disk it cannot be replaced, and waiting for it would keep
        // every segment, and the disk full, for ever: while a later sealed segment (whole lines)
        // is on disk, this one is deleted all the same, and frees its space.
        if (this.#queue.length < 2) throw err;
        this.#o.log('receipts WAL: head.json could not be written; a later segment keeps the chain', {
          segment: segment.number,
          error: (err as Error).message,
        });
      }
    }
    if (this.#stopped) return STOPPED;
    if (this.#o.landedGraceMs > 0) this.#deleteLater(file);
    else await unlink(file);
    return { records: prepared.records, lastSeq: prepared.lastSeq };
  }

  #deleteLater(file: string): void {
    const timer = setTimeout(() => {
      this.#landedFiles.delete(file);
      unlink(file).catch((err: Error) => this.#o.log('receipts WAL: deleting an inserted segment failed', { file, error: err.message }));
    }, this.#o.landedGraceMs);
    this.#landedFiles.set(file, timer.unref());
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = () => {
        this.#wake = null;
        done();
      };
    });
  }
}
