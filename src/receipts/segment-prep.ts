// Turns one sealed WAL segment into the body of its ClickHouse insert (DESIGN §7): every
// line signed, mapped to a `receipts` row, and written as RowBinaryWithNamesAndTypes (insert-body.ts).
// Runs in the journal's worker thread (segment-worker.ts), off the request path and the main thread.
//
// The result is a pure function of the file and the key: Ed25519 signatures are
// deterministic, so a segment prepared again after a crash or a failed insert gives the
// same rows, byte for byte, under the same deduplication token.
import { open } from 'node:fs/promises';
import { RowBinaryWriter } from '../store/row-binary.js';
import type { Ed25519Sign } from './ed25519.js';
import { RECEIPT_BODY_COLUMNS, writeReceiptRow } from './insert-body.js';
import type { Receipt } from './receipt.js';
import { chainHeadOfLine, sha256Hex } from './wal.js';

export interface PreparedSegment {
  /**
   * The insert body: RECEIPT_BODY_COLUMNS' header, then one row per receipt. It starts its own
   * ArrayBuffer (transferable), which may be longer than the body: the buffer it was written
   * in, handed back to a scratch for the next segment once the insert is acknowledged.
   */
  body: Uint8Array;
  /** Receipts in the body. */
  records: number;
  /** Lines that are not complete JSON (a torn tail, never acknowledged); skipped. */
  invalidLines: number;
  /** seq of the last receipt (0 when there is none). */
  lastSeq: number;
  /** sha256 hex of the last line as stored: names the segment's content in the dedup token. */
  lastLineHash: string;
  /** Chain hash of the last receipt (head.json); equals lastLineHash for unsigned lines. */
  chainHash: string;
}

export class SigningKeyMismatchError extends Error {}

const NEWLINE = 0x0a;

/**
 * The two large buffers of a prepare, kept for the next one by the thread that prepares: a
 * fresh multi-megabyte buffer is fresh pages, and on the VMs measured the kernel maps each 4 KB
 * page in at ~11 µs, more than writing the rows into it costs. The body buffer leaves with the
 * prepared body and comes back through recycle() once its insert is acknowledged. One scratch
 * serves one prepare at a time.
 */
export class SegmentScratch {
  file: Buffer = Buffer.allocUnsafeSlow(0);
  body: Buffer = Buffer.allocUnsafeSlow(0);

  /** Takes back the buffer of a body whose insert was acknowledged (nothing reads it any more). */
  recycle(body: Uint8Array): void {
    if (body.byteOffset === 0 && body.buffer.byteLength > this.body.length) this.body = Buffer.from(body.buffer as ArrayBuffer);
  }
}

export async function prepareSegment(file: string, sign: Ed25519Sign, keyId: string, scratch = new SegmentScratch()): Promise<PreparedSegment> {
  const buf = await readInto(scratch, file);
  // The segment's size is a first guess of the body's (the writer grows it when it is short).
  if (scratch.body.length < buf.length) scratch.body = Buffer.allocUnsafeSlow(Math.max(buf.length, 4096));
  const body = new RowBinaryWriter(scratch.body);
  body.header(RECEIPT_BODY_COLUMNS);
  let records = 0;
  let invalidLines = 0;
  let lastLine: string | null = null;
  let lastSeq = 0;
  let start = 0;
  for (let end = buf.indexOf(NEWLINE); end !== -1; start = end + 1, end = buf.indexOf(NEWLINE, start)) {
    const line = buf.toString('utf8', start, end);
    let receipt: Receipt;
    try {
      receipt = JSON.parse(line) as Receipt;
    } catch {
      invalidLines++;
      continue;
    }
    // JSON that is not a receipt (a line damaged into other JSON) is skipped like a torn one:
    // refused by the insert, it would hold back this segment and every later one for ever.
    if (!isReceiptLine(receipt)) {
      invalidLines++;
      continue;
    }
    // A line written by an older version is already signed; every other line is the
    // canonical text its signature covers, so the line's bytes are signed as they are.
    if (receipt.signature === undefined) {
      if (receipt.key_id !== keyId) {
        throw new SigningKeyMismatchError(
          `receipt seq ${receipt.seq} names signing key ${receipt.key_id}, but the signing key of this data directory is ${keyId}: ` +
            'restore the receipt-signing-key.pem that signed it',
        );
      }
      receipt.signature = sign(buf.subarray(start, end)).toString('base64url');
    }
    const rowStart = body.position;
    try {
      writeReceiptRow(body, receipt);
    } catch {
      body.rewind(rowStart); // a field that cannot be written (damaged): the line is skipped
      invalidLines++;
      continue;
    }
    records++;
    lastLine = line;
    lastSeq = receipt.seq;
  }
  // Bytes after the last newline are a torn line.
  if (start < buf.length) invalidLines++;
  if (lastLine === null) {
    return { body: new Uint8Array(0), records: 0, invalidLines, lastSeq: 0, lastLineHash: '', chainHash: '' };
  }
  // The body leaves the scratch with the buffer it was written in (recycle() brings it back).
  const bytes = body.bytes();
  scratch.body = Buffer.allocUnsafeSlow(0);
  const lastLineHash = sha256Hex(lastLine);
  return {
    body: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length),
    records,
    invalidLines,
    lastSeq,
    lastLineHash,
    chainHash: chainHeadOfLine(lastLine).hash,
  };
}

/** The file's bytes, in the scratch's file buffer (grown to fit). */
async function readInto(scratch: SegmentScratch, file: string): Promise<Buffer> {
  const handle = await open(file, 'r');
  try {
    const { size } = await handle.stat();
    if (scratch.file.length < size) scratch.file = Buffer.allocUnsafeSlow(size);
    let length = 0;
    while (length < size) {
      const { bytesRead } = await handle.read(scratch.file, length, size - length, length);
      if (bytesRead === 0) break; // shorter than it was a moment ago: read what is there
      length += bytesRead;
    }
    return scratch.file.subarray(0, length);
  } finally {
    await handle.close();
  }
}

/** The members every receipt line has, with their types (a damaged line may parse as other JSON). */
function isReceiptLine(r: unknown): r is Receipt {
  const x = r as Partial<Record<keyof Receipt, unknown>> | null;
  return (
    typeof x === 'object' &&
    x !== null &&
    typeof x.receipt_id === 'string' &&
    Number.isSafeInteger(x.seq) &&
    typeof x.key_id === 'string' &&
    typeof x.prev_hash === 'string' &&
    Array.isArray(x.attempts)
  );
}
