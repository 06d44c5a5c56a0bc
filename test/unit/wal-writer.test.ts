// The WAL's segment files on a real directory: lines split across segments at maxRows, a
// segment handed on only when sealed (and, held, only on release), the seal timer, and a
// failed write that reports how many whole lines it left on disk; where each line starts, read
// back by readLineAt.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { SealedSegment } from '../../src/receipts/batcher.js';
import { readLineAt, segmentFileName } from '../../src/receipts/wal.js';
import { WalWriteError, WalWriter } from '../../src/receipts/wal-writer.js';

let dir: string;
let sealed: SealedSegment[];
const writer = (maxRows: number, maxMs = 60_000) =>
  new WalWriter({ dir, firstSegment: 5, maxRows, maxMs, log: () => undefined, onSealed: (s) => sealed.push(s) });
const linesOf = (n: number) => readFileSync(path.join(dir, segmentFileName(n)), 'utf8');

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'tollgate-wal-writer-'));
  sealed = [];
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('WalWriter', () => {
  it('fills segments up to maxRows, hands on each full one, and keeps the last one open', () => {
    const wal = writer(3);
    const touched = wal.write(['a', 'b', 'c', 'd', 'e', 'f', 'g']);
    expect(touched.map((s) => s.number)).toEqual([5, 6, 7]);
    expect(sealed).toEqual([
      { number: 5, records: 3 },
      { number: 6, records: 3 },
    ]);
    expect(linesOf(5)).toBe('a\nb\nc\n');
    expect(linesOf(7)).toBe('g\n');
    expect(wal.pending()).toEqual({ oldestSegment: 7, records: 1, segments: 1 });
    wal.write(['h']);
    expect(linesOf(7)).toBe('g\nh\n');
    wal.close();
    expect(sealed.at(-1)).toEqual({ number: 7, records: 2 });
    expect(wal.lastSegment).toBe(7);
    expect(wal.pending().records).toBe(0);
  });

  it('tells where each written line starts (segment, byte offset), multi-byte text included', async () => {
    const wal = writer(3);
    const lines = ['{"a":"résumé ✨"}', '{"b":"要約"}', '{"c":1}', '{"d":"🙂"}'];
    const placed: Array<[number, number, number]> = [];
    wal.write(lines.slice(0, 1), (segment, offset, line) => placed.push([segment, offset, line]));
    wal.write(lines.slice(1), (segment, offset, line) => placed.push([segment, offset, line + 1]));
    expect(placed.map(([segment, , line]) => [segment, line])).toEqual([
      [5, 0],
      [5, 1],
      [5, 2],
      [6, 3],
    ]);
    for (const [segment, offset, line] of placed) expect(await readLineAt(path.join(dir, segmentFileName(segment)), offset)).toBe(lines[line]);
    // A deleted segment reads as null, and so does an offset past its last line.
    expect(await readLineAt(path.join(dir, segmentFileName(6)), 100)).toBeNull();
    expect(await readLineAt(path.join(dir, segmentFileName(99)), 0)).toBeNull();
    wal.close();
  });

  it('writes a group larger than its encoding buffer whole, and a small one after it without leftovers', async () => {
    const wal = writer(100);
    // ~300 KB of 3- and 4-byte characters: past the 64 KB the writer starts with.
    const big = Array.from({ length: 6 }, (_, i) => JSON.stringify({ i, text: `要約✨🙂${i}`.repeat(4000) }));
    const placed: number[] = [];
    wal.write(big, (_segment, offset) => placed.push(offset));
    wal.write(['{"small":1}'], (_segment, offset) => placed.push(offset));
    const lines = [...big, '{"small":1}'];
    expect(linesOf(5)).toBe(`${lines.join('\n')}\n`);
    for (const [i, offset] of placed.entries()) expect(await readLineAt(path.join(dir, segmentFileName(5)), offset)).toBe(lines[i]);
    wal.close();
  });

  it('while held, keeps sealed segments back until release', async () => {
    const wal = writer(2);
    wal.hold();
    const touched = wal.write(['a', 'b', 'c']);
    expect(sealed).toEqual([]);
    expect(wal.pending()).toEqual({ oldestSegment: 5, records: 3, segments: 2 });
    await wal.sync(touched);
    expect(touched.every((s) => !s.fresh)).toBe(true);
    wal.release();
    expect(sealed).toEqual([{ number: 5, records: 2 }]);
    // Closed while a sync still holds segments: they wait for the commit's release.
    wal.hold();
    wal.write(['d']);
    wal.close();
    expect(sealed).toEqual([{ number: 5, records: 2 }]);
    wal.release();
    expect(sealed).toEqual([
      { number: 5, records: 2 },
      { number: 6, records: 2 },
    ]);
  });

  it('seals a segment maxMs after its first line', async () => {
    const wal = writer(100, 30);
    wal.write(['a']);
    await new Promise((r) => setTimeout(r, 80));
    expect(sealed).toEqual([{ number: 5, records: 1 }]);
    wal.write(['b']);
    expect(wal.lastSegment).toBe(6);
    wal.close();
  });

  it('reports the whole lines written before a failure, and none after them', () => {
    const wal = writer(2);
    wal.write(['a']);
    // The open segment takes one more line; the next segment's file cannot be created.
    writeFileSync(path.join(dir, segmentFileName(6)), 'somebody else\n');
    let error: unknown;
    try {
      wal.write(['b', 'c', 'd']);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(WalWriteError);
    expect((error as WalWriteError).written).toBe(1);
    expect((error as WalWriteError).cause).toMatchObject({ code: 'EEXIST' });
    expect(linesOf(5)).toBe('a\nb\n');
    expect(linesOf(6)).toBe('somebody else\n');
    expect(sealed).toEqual([{ number: 5, records: 2 }]);
    // The number is not reused: the next line goes into a new segment.
    wal.write(['c']);
    expect(linesOf(7)).toBe('c\n');
    wal.close();
  });
});
