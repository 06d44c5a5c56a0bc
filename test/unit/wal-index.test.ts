// The WAL index: receipt id → (segment, offset), held as fixed-size records outside V8's heap.
// Growth past a buffer's first capacity, whole segments dropped at the limit and on landing,
// a reused buffer that must not answer for the segment it held before, ids it refuses.
import { v7 as uuidv7 } from 'uuid';
import { describe, expect, it } from 'vitest';
import { WalIndex } from '../../src/receipts/wal-index.js';

describe('WalIndex', () => {
  it('finds every position it holds, across segments and past a buffer’s first capacity', () => {
    const index = new WalIndex(100_000);
    const ids = Array.from({ length: 3000 }, () => uuidv7());
    for (const [i, id] of ids.entries()) index.add(i < 2000 ? 1 : 2, id, i * 1500);
    expect(index.size).toBe(3000);
    for (const [i, id] of ids.entries()) expect(index.find(id)).toEqual({ segment: i < 2000 ? 1 : 2, offset: i * 1500 });
    expect(index.find(uuidv7())).toBeUndefined();
  });

  it('drops whole segments, oldest first, past its limit (never the one being written), and on landing', () => {
    const index = new WalIndex(10);
    const ids: string[] = [];
    for (let i = 0; i < 30; i++) {
      ids.push(uuidv7());
      index.add(Math.floor(i / 4), ids[i]!, i);
    }
    expect(index.size).toBeGreaterThanOrEqual(10);
    expect(index.size).toBeLessThanOrEqual(13);
    expect(index.find(ids[0]!)).toBeUndefined();
    expect(index.find(ids[29]!)).toEqual({ segment: 7, offset: 29 });
    index.landed(7);
    expect(index.find(ids[29]!)).toBeUndefined();
    expect(index.find(ids[27]!)).toEqual({ segment: 6, offset: 27 });
    // However the segments fall, the newest `limit` are held: 3 + 4 + 1 + 4 over a limit of 10.
    const uneven = new WalIndex(10);
    const sizes = [3, 4, 1, 4];
    const added: string[] = [];
    sizes.forEach((size, segment) => {
      for (let i = 0; i < size; i++) {
        added.push(uuidv7());
        uneven.add(segment, added.at(-1)!, i);
      }
    });
    expect(uneven.size).toBeGreaterThanOrEqual(10);
    expect(added.slice(-10).every((id) => uneven.find(id))).toBe(true);
    // One segment over the limit stays whole: it is the one being written.
    const big = new WalIndex(3);
    const many = Array.from({ length: 5 }, () => uuidv7());
    for (const [i, id] of many.entries()) big.add(1, id, i);
    expect(many.every((id) => big.find(id))).toBe(true);
  });

  it('a buffer taken over from a dropped segment answers only for its new positions', () => {
    const index = new WalIndex(100_000);
    const old = Array.from({ length: 5 }, () => uuidv7());
    for (const [i, id] of old.entries()) index.add(1, id, i);
    index.landed(1);
    const fresh = uuidv7();
    index.add(2, fresh, 42);
    for (const id of old) expect(index.find(id)).toBeUndefined();
    expect(index.find(fresh)).toEqual({ segment: 2, offset: 42 });
  });

  it('ignores what is not a receipt id, and a lookup by one finds nothing', () => {
    const index = new WalIndex();
    const id = uuidv7();
    index.add(1, 'short', 1);
    index.add(1, id, 2 ** 33);
    expect(index.size).toBe(0);
    index.add(1, id, 7);
    expect(index.find(id.slice(1))).toBeUndefined();
    expect(index.find(`${id}x`)).toBeUndefined();
    expect(index.find(id)).toEqual({ segment: 1, offset: 7 });
  });

  it('reads a leftover segment file line by line, each buffer sized to its lines', () => {
    const index = new WalIndex(100_000);
    const line = (id: string) => `{"attempts":[],"receipt_id":"${id}","seq":1}\n`;
    const ids: string[] = [];
    const before = process.memoryUsage().arrayBuffers;
    // After a long outage at low traffic: many segments of one receipt each.
    for (let segment = 1; segment <= 2000; segment++) {
      const id = uuidv7();
      ids.push(id);
      index.addLines(segment, Buffer.from(`${line(id)}{"damaged":`));
    }
    // 40 bytes a position; FIRST_CAPACITY records each would be 2000 × 20 KB = 40 MB.
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(4 * 1024 * 1024);
    expect(index.size).toBe(2000);
    for (const [i, id] of ids.entries()) expect(index.find(id)).toEqual({ segment: i + 1, offset: 0 });
    // Several lines: each at its own offset.
    const [a, b] = [uuidv7(), uuidv7()];
    index.addLines(5000, Buffer.from(line(a) + line(b)));
    expect(index.find(b)).toEqual({ segment: 5000, offset: Buffer.byteLength(line(a)) });
  });
});
