// Where each receipt that is not in ClickHouse yet sits in the WAL (segment and byte offset of
// its line), so that GET /v1/receipts/:id serves it from there until its segment's insert is
// acknowledged (on a cluster, a grace period longer), and from ClickHouse after.
//
// Positions are held, not receipts, and not in JS objects. A receipt waits ~1.5 s under load
// for its segment to land: long enough for V8 to copy whatever holds it into the old
// generation and trace it there. Measured with bench:ab at c=32, 16–20 rounds each way:
//   - holding the receipts themselves (~1.2 KB of objects each) cost 4.5–6.6 % of the CPU
//     per request and 9–10 % of the requests per second;
//   - a Map from receipt id to offset still cost 3–4.5 % of the CPU.
// So each segment's positions are fixed-size records in one Buffer, outside V8's heap: the
// id's 36 characters, then the line's offset. A lookup (a GET, rare) searches those bytes.

/** A receipt_id: a UUID in its 36-character text form. */
const ID_BYTES = 36;
/** One position: the id, then the offset of its line as a 32-bit integer. */
const RECORD_BYTES = ID_BYTES + 4;
/** How a line names its receipt (canonical JSON: no space after the colon). */
const RECEIPT_ID_KEY = '"receipt_id":"';
const NEWLINE = 0x0a;
/** Records a segment's buffer starts with; it doubles when full. */
const FIRST_CAPACITY = 512;

export interface WalPosition {
  segment: number;
  /** Byte offset of the line in the segment file. */
  offset: number;
}

interface SegmentPositions {
  segment: number;
  records: Buffer;
  count: number;
}

export class WalIndex {
  /** Oldest first. */
  readonly #segments: SegmentPositions[] = [];
  readonly #limit: number;
  #held = 0;
  /** The buffer of the last segment let go of, for the next one: fresh pages cost page faults. */
  #spare: Buffer | null = null;

  /**
   * `limit`: the newest receipts held, at least this many (once there are) and less than one
   * segment more (whole segments go); older receipts wait for ClickHouse.
   */
  constructor(limit = 20_000) {
    this.#limit = limit;
  }

  /** Positions held now. */
  get size(): number {
    return this.#held;
  }

  /** At most this many positions are held. */
  get limit(): number {
    return this.#limit;
  }

  /**
   * Every line of a segment file (one the previous run left, being replayed): its receipts are
   * served from the WAL, as if this process had appended them, until the segment lands.
   */
  addLines(segment: number, file: Buffer): void {
    // Sized to its lines: after a long outage the WAL may hold thousands of one-line segments,
    // and a buffer of FIRST_CAPACITY each would be 20 KB apiece.
    let lines = 0;
    for (let at = file.indexOf(NEWLINE); at !== -1; at = file.indexOf(NEWLINE, at + 1)) lines++;
    if (lines === 0) return;
    this.#start(segment, lines);
    for (let start = 0, end = file.indexOf(NEWLINE); end !== -1; start = end + 1, end = file.indexOf(NEWLINE, start)) {
      const key = file.indexOf(RECEIPT_ID_KEY, start, 'latin1');
      if (key === -1 || key > end) continue; // a damaged line: its segment's insert skips it too
      const id = file.toString('latin1', key + RECEIPT_ID_KEY.length, key + RECEIPT_ID_KEY.length + ID_BYTES);
      this.add(segment, id, start);
    }
  }

  add(segment: number, id: string, offset: number): void {
    // Not a receipt id this gateway made, or a segment past 4 GB: served from ClickHouse once inserted.
    if (id.length !== ID_BYTES || offset > 0xffff_ffff) return;
    let positions = this.#segments.at(-1);
    if (positions?.segment !== segment) positions = this.#start(segment, FIRST_CAPACITY);
    let at = positions.count * RECORD_BYTES;
    if (at + RECORD_BYTES > positions.records.length) {
      const grown = Buffer.allocUnsafeSlow(positions.records.length * 2);
      positions.records.copy(grown, 0, 0, at);
      positions.records = grown;
    }
    at += positions.records.write(id, at, ID_BYTES, 'latin1');
    positions.records.writeUInt32LE(offset, at);
    positions.count++;
    this.#held++;
    // With ClickHouse down the WAL grows; what is held does not. Whole segments go, oldest
    // first, never the one being written, and only while the limit is still held without them
    // (dropping whenever it was passed left as few as the limit less a segment: a restart's
    // leftovers in segments of 4 and 3 kept 8 of the newest 10).
    while (this.#segments.length > 1 && this.#held - this.#segments[0]!.count >= this.#limit) this.#drop(0);
  }

  find(id: string): WalPosition | undefined {
    if (id.length !== ID_BYTES) return undefined;
    for (const { segment, records, count } of this.#segments) {
      const written = records.subarray(0, count * RECORD_BYTES);
      for (let at = written.indexOf(id, 0, 'latin1'); at !== -1; at = written.indexOf(id, at + 1, 'latin1')) {
        if (at % RECORD_BYTES === 0) return { segment, offset: written.readUInt32LE(at + ID_BYTES) };
      }
    }
    return undefined;
  }

  /** The segment's receipts are in ClickHouse (past any grace): they are served from there. */
  landed(segment: number): void {
    const i = this.#segments.findIndex((p) => p.segment === segment);
    if (i !== -1) this.#drop(i);
  }

  /** A new segment's positions, room for `capacity` to begin with (it grows). */
  #start(segment: number, capacity: number): SegmentPositions {
    const spare = this.#spare && this.#spare.length >= capacity * RECORD_BYTES ? this.#spare : null;
    const records = spare ?? Buffer.allocUnsafeSlow(capacity * RECORD_BYTES);
    if (spare) this.#spare = null;
    const positions = { segment, records, count: 0 };
    this.#segments.push(positions);
    return positions;
  }

  #drop(i: number): void {
    const [dropped] = this.#segments.splice(i, 1);
    this.#held -= dropped!.count;
    this.#spare = dropped!.records;
  }
}
