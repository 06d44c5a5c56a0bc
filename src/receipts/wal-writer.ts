// The WAL's write side (DESIGN §7): receipt lines go into numbered segment files; a segment
// is sealed at `maxRows` lines or `maxMs` after its first one, and a sealed segment is handed
// on (to the batcher, which inserts it into ClickHouse and then deletes it).
//
// The journal decides what the lines are and keeps the chain; this module only guarantees
// that a line is either wholly in its segment or not there at all, and that a segment is
// handed on only once all its lines are written (and, with fsync, synced).
import { closeSync, fdatasync, ftruncateSync, openSync, writeSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import type { LogFn, SealedSegment } from './batcher.js';
import { segmentFileName, syncDir } from './wal.js';

const fdatasyncAsync = promisify(fdatasync);
const NEWLINE = 0x0a;

/** A segment being written. */
export interface OpenSegment extends SealedSegment {
  fd: number;
  bytes: number;
  timer: NodeJS.Timeout | null;
  /** Created by this process and its directory entry not fsynced yet. */
  fresh: boolean;
}

export interface WalWriterOptions {
  dir: string;
  /** Number of the first segment this writer creates (past every segment on disk). */
  firstSegment: number;
  maxRows: number;
  maxMs: number;
  log: LogFn;
  onSealed: (segment: SealedSegment) => void;
}

/**
 * A write that failed after `written` of its lines were on disk (whole lines; none after them),
 * in the segments `touched`.
 */
export class WalWriteError extends Error {
  constructor(
    readonly written: number,
    readonly touched: OpenSegment[],
    override readonly cause: unknown,
  ) {
    super(`receipts WAL write failed after ${written} lines: ${(cause as Error)?.message ?? String(cause)}`);
  }
}

export class WalWriter {
  readonly #o: WalWriterOptions;
  #nextSegment: number;
  #active: OpenSegment | null = null;
  /** While held, sealed segments stay open here (fsync mode: until their last lines are synced). */
  #holding = false;
  readonly #held: OpenSegment[] = [];
  /**
   * Where a write's lines are encoded, reused by every write (writes are synchronous): no joined
   * string and no fresh Buffer per group commit, and each line's offset is known as it is encoded.
   */
  #scratch = Buffer.allocUnsafeSlow(64 * 1024);
  /** Where each line of the last encoding starts in #scratch. */
  readonly #starts: number[] = [];

  constructor(o: WalWriterOptions) {
    this.#o = o;
    this.#nextSegment = o.firstSegment;
  }

  /** Number of the newest segment created so far (firstSegment − 1 before the first). */
  get lastSegment(): number {
    return this.#nextSegment - 1;
  }

  /**
   * Writes the lines, one write per segment they span, synchronously. Returns the segments
   * written; `placed` learns where each written line starts (segment, byte offset, index in
   * `lines`). Throws WalWriteError, with how many lines were written, if anything fails.
   */
  write(lines: string[], placed?: (segment: number, offset: number, line: number) => void): OpenSegment[] {
    const { maxRows } = this.#o;
    const touched: OpenSegment[] = [];
    let written = 0;
    try {
      while (written < lines.length) {
        const segment = this.#active ?? this.#openSegment();
        const n = Math.min(lines.length - written, maxRows - segment.records);
        const buf = this.#encode(lines, written, n);
        try {
          writeFully(segment.fd, buf, segment.bytes);
        } catch (err) {
          // Leave no partial line behind; if that fails too, the segment ends here (the
          // reader skips a torn tail, but no line may follow one).
          try {
            ftruncateSync(segment.fd, segment.bytes);
          } catch {
            this.seal();
          }
          throw err;
        }
        if (placed) for (let i = 0; i < n; i++) placed(segment.number, segment.bytes + this.#starts[i]!, written + i);
        if (segment.records === 0) segment.timer = setTimeout(() => this.seal(), this.#o.maxMs).unref();
        segment.bytes += buf.length;
        segment.records += n;
        if (!touched.includes(segment)) touched.push(segment);
        written += n;
        if (segment.records >= maxRows) this.seal();
      }
    } catch (err) {
      throw new WalWriteError(written, touched, err);
    }
    return touched;
  }

  /** fdatasync of the segments, and of the directory when one of them is new. */
  async sync(segments: OpenSegment[]): Promise<void> {
    await Promise.all(segments.map((s) => fdatasyncAsync(s.fd)));
    // A new file's directory entry must be durable too, or the file can vanish with the machine.
    if (segments.some((s) => s.fresh)) {
      await syncDir(this.#o.dir);
      for (const s of segments) s.fresh = false;
    }
  }

  /** From now until release(), sealed segments are not handed on. */
  hold(): void {
    this.#holding = true;
  }

  /** Hands on the segments sealed while held. */
  release(): void {
    this.#holding = false;
    for (const segment of this.#held.splice(0)) {
      try {
        closeSync(segment.fd);
      } catch (err) {
        this.#o.log('receipts WAL: closing a segment failed', { segment: segment.number, error: (err as Error).message });
      }
      this.#o.onSealed({ number: segment.number, records: segment.records });
    }
  }

  /** Ends the open segment: no more lines go into it, and it is handed on (unless held). */
  seal(): void {
    const segment = this.#active;
    if (!segment || segment.records === 0) return;
    this.#active = null;
    if (segment.timer) clearTimeout(segment.timer);
    this.#held.push(segment);
    if (!this.#holding) this.release();
  }

  /** Receipts written and not handed on yet: the open segment's and the held ones'. */
  pending(): { oldestSegment: number; records: number; segments: number } {
    const active = this.#active && this.#active.records > 0 ? this.#active : null;
    let records = active ? active.records : 0;
    for (const s of this.#held) records += s.records;
    const oldestSegment = this.#held[0]?.number ?? active?.number ?? Infinity;
    return { oldestSegment, records, segments: this.#held.length + (active ? 1 : 0) };
  }

  /**
   * Seals and hands on what was written; closes a segment left empty by a failed first write.
   * Segments held for a sync still running stay held: the commit releases them after it.
   */
  close(): void {
    this.seal();
    if (!this.#holding) this.release();
    if (this.#active) {
      // Only a segment whose first write failed is still open; recovery removes it.
      if (this.#active.timer) clearTimeout(this.#active.timer);
      closeSync(this.#active.fd);
      this.#active = null;
    }
  }

  /** Lines [from, from + n) as UTF-8, each ended by a newline, in #scratch (grown to fit). */
  #encode(lines: string[], from: number, n: number): Buffer {
    // A UTF-16 code unit is at most 3 bytes of UTF-8, and Buffer.write() cuts what does not fit.
    let capacity = 0;
    for (let i = from; i < from + n; i++) capacity += lines[i]!.length * 3 + 1;
    if (capacity > this.#scratch.length) this.#scratch = Buffer.allocUnsafeSlow(Math.max(capacity, this.#scratch.length * 2));
    const buf = this.#scratch;
    this.#starts.length = 0;
    let at = 0;
    for (let i = from; i < from + n; i++) {
      this.#starts.push(at);
      at += buf.write(lines[i]!, at);
      buf[at++] = NEWLINE;
    }
    return buf.subarray(0, at);
  }

  #openSegment(): OpenSegment {
    const number = this.#nextSegment++; // a number whose file could not be made is not reused
    const fd = openSync(path.join(this.#o.dir, segmentFileName(number)), 'wx', 0o600);
    this.#active = { number, fd, bytes: 0, records: 0, timer: null, fresh: true };
    return this.#active;
  }
}

function writeFully(fd: number, buf: Buffer, position: number): void {
  for (let offset = 0; offset < buf.length; ) {
    offset += writeSync(fd, buf, offset, buf.length - offset, position + offset);
  }
}
