// ClickHouse's RowBinary encodings, byte for byte (the engine reading them back:
// test/integration/journal.test.ts, receipt-insert-http.test.ts).
import { describe, expect, it } from 'vitest';
import { RowBinaryWriter } from '../../src/store/row-binary.js';

const hex = (write: (w: RowBinaryWriter) => void, buffer?: Buffer) => {
  const w = new RowBinaryWriter(buffer);
  write(w);
  return w.bytes().toString('hex');
};

describe('RowBinaryWriter', () => {
  it("writes integers little-endian, 64-bit ones in two's complement", () => {
    expect(hex((w) => w.uint8(255))).toBe('ff');
    expect(hex((w) => w.uint16(0x1234))).toBe('3412');
    expect(hex((w) => w.uint32(4_294_967_295))).toBe('ffffffff');
    expect(hex((w) => w.int64(1))).toBe('0100000000000000');
    expect(hex((w) => w.int64(2 ** 32 + 2))).toBe('0200000001000000');
    expect(hex((w) => w.int64(Number.MAX_SAFE_INTEGER))).toBe('ffffffffffff1f00');
    expect(hex((w) => w.int64(-1))).toBe('ffffffffffffffff');
    expect(hex((w) => w.int64(-(2 ** 32) - 1))).toBe('fffffffffeffffff');
    expect(hex((w) => w.float64(1.5))).toBe('000000000000f83f');
    expect(hex((w) => w.bool(true))).toBe('01');
  });

  it('writes lengths as LEB128 and strings as their UTF-8 bytes', () => {
    expect(hex((w) => w.varUInt(0))).toBe('00');
    expect(hex((w) => w.varUInt(127))).toBe('7f');
    expect(hex((w) => w.varUInt(300))).toBe('ac02');
    expect(hex((w) => w.varUInt(2 ** 21))).toBe('80808001');
    expect(hex((w) => w.string(''))).toBe('00');
    expect(hex((w) => w.string('ab'))).toBe('026162');
    expect(hex((w) => w.string('é✨'))).toBe('05c3a9e29ca8');
    expect(hex((w) => w.string('x'.repeat(127)))).toBe(`7f${'78'.repeat(127)}`);
    expect(hex((w) => w.string('x'.repeat(128)))).toBe(`8001${'78'.repeat(128)}`);
    // 100 characters, 200 bytes: the length takes two bytes, found after the bytes are written.
    expect(hex((w) => w.string('é'.repeat(100)))).toBe(`c801${'c3a9'.repeat(100)}`);
    expect(hex((w) => w.string('要'.repeat(20_000)))).toBe(`e0d403${'e8a681'.repeat(20_000)}`);
  });

  it('writes a UUID as two little-endian halves, from either case', () => {
    const bytes = '77665544332211 00ffeeddccbbaa9988'.replace(' ', '');
    expect(hex((w) => w.uuid('00112233-4455-6677-8899-aabbccddeeff'))).toBe(bytes);
    expect(hex((w) => w.uuid('00112233-4455-6677-8899-AABBCCDDEEFF'))).toBe(bytes);
  });

  it('writes DateTime64(3) as milliseconds, and Nullable markers', () => {
    expect(hex((w) => w.dateTime64ms('1970-01-01T00:00:01.234Z'))).toBe('d204000000000000');
    const w = new RowBinaryWriter();
    expect(w.isNull(null)).toBe(true);
    expect(w.isNull(undefined)).toBe(true);
    expect(w.isNull(0)).toBe(false);
    expect(w.bytes().toString('hex')).toBe('010100');
  });

  it('writes the header: column count, the names, then the types', () => {
    expect(
      hex((w) =>
        w.header([
          ['n', 'UInt8'],
          ['s', 'String'],
        ]),
      ),
    ).toBe(`02016e0173${Buffer.from('\x05UInt8\x06String').toString('hex')}`);
  });

  it('grows its buffer, keeping what was written', () => {
    const small = Buffer.alloc(3);
    const w = new RowBinaryWriter(small);
    w.uint16(0xbeef);
    w.string('hello, world');
    w.int64(7);
    expect(w.bytes().toString('hex')).toBe(`efbe0c${Buffer.from('hello, world').toString('hex')}0700000000000000`);
    expect(w.bytes().buffer).not.toBe(small.buffer);
  });
});
