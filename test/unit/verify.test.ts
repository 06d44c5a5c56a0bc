// Receipt signing and verification without ClickHouse: the signer's key file, the
// canonical form, verifyReceipt against single-field edits and wrong keys, the hash chain
// (its definition; deletion, edit, reorder), the draft normalization, the receipt ⇄ row
// mapping and the insert body made of a WAL segment.
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import type { ClickHouseClient } from '@clickhouse/client';
import * as canonicalizeModule from 'canonicalize';
import { v7 as uuidv7 } from 'uuid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ed25519Signer } from '../../src/receipts/ed25519.js';
import { RECEIPT_BODY_COLUMNS } from '../../src/receipts/insert-body.js';
import { ReceiptJournal } from '../../src/receipts/journal.js';
import { InvalidReceiptError, unsignedReceipt } from '../../src/receipts/normalize.js';
import type { Receipt, ReceiptDraft } from '../../src/receipts/receipt.js';
import { receiptToRow, rowToReceipt, usdToDecimal } from '../../src/receipts/rows.js';
import { prepareSegment, SegmentScratch } from '../../src/receipts/segment-prep.js';
import { canonicalReceiptJson, canonicalUnsignedJson, ReceiptSigner, SIGNING_KEY_FILE } from '../../src/receipts/signer.js';
import { GENESIS_PREV_HASH, receiptHash, verifyChain, verifyReceipt } from '../../src/receipts/verify.js';
import { execRowsInserter } from '../../src/store/clickhouse.js';
import { RowBinaryWriter } from '../../src/store/row-binary.js';

const canonicalize = ((canonicalizeModule as unknown as { default?: (v: unknown) => string }).default ?? canonicalizeModule) as unknown as (
  v: unknown,
) => string;

const tmp = mkdtempSync(path.join(os.tmpdir(), 'tollgate-verify-test-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A draft with the awkward values that must survive canonicalization and storage. */
function draft(overrides: Partial<ReceiptDraft> = {}): ReceiptDraft {
  return {
    receipt_id: uuidv7(),
    request_id: 'req_01',
    started_at: '2026-11-21T22:00:00.123Z',
    finished_at: '2026-11-21T22:00:01.5Z',
    team_id: 'team_a',
    api_key_id: null,
    feature: 'résumé ✨ 要約 "quoted" \\ back\nslash',
    task_id: 'task-1',
    end_user: null,
    endpoint: '/v1/chat/completions',
    requested_model: 'chat-default',
    route: 'chat-default',
    strategy: 'PRIORITY',
    provider: 'openrouter',
    model: 'openai/gpt-4o-mini',
    attempts: [
      { provider: 'ark', model: 'doubao-seed-1-6-250615', status: 0, error: 'timeout_first_byte', latency_ms: 30000.0004 },
      { provider: 'openrouter', model: 'openai/gpt-4o-mini', status: 200, error: null, latency_ms: 812.125 },
    ],
    status: 'ok',
    http_status: 200,
    error_code: null,
    stream: true,
    ttft_ms: 230.1256,
    latency_ms: 1333.5,
    upstream_ms: null,
    overhead_ms: 0.001,
    prompt_tokens: 1200,
    completion_tokens: 0,
    cached_tokens: 0,
    usage_estimated: true,
    cost_usd: 1.5e-7,
    price_version: null,
    cache_status: 'miss',
    cache_similarity: null,
    saved_cost_usd: 0,
    request_sha256: 'a'.repeat(64),
    response_sha256: null,
    ...overrides,
  };
}

function signed(signer: ReceiptSigner, d: ReceiptDraft = draft(), seq = 1, prev = GENESIS_PREV_HASH): Receipt {
  const unsigned = unsignedReceipt(d, { instance_id: 'instance-1', seq, prev_hash: prev, key_id: signer.keyId });
  return { ...unsigned, signature: signer.sign(unsigned) };
}

describe('ReceiptSigner', () => {
  it('creates the key file once (0600) and keeps the same key id', async () => {
    const dir = path.join(tmp, 'signer');
    const a = await ReceiptSigner.open(dir);
    const b = await ReceiptSigner.open(dir);
    expect(b.keyId).toBe(a.keyId);
    expect(a.keyId).toMatch(/^[A-Za-z0-9_-]{16}$/);
    expect(statSync(path.join(dir, SIGNING_KEY_FILE)).mode & 0o777).toBe(0o600);
    const { keys } = a.jwks();
    expect(keys).toEqual([{ kty: 'OKP', crv: 'Ed25519', kid: a.keyId, x: expect.any(String), use: 'sig', alg: 'EdDSA' }]);
    expect(Buffer.from(keys[0].x, 'base64url')).toHaveLength(32);
    // A receipt signed by the reopened signer verifies with the first one's keys.
    expect(verifyReceipt(signed(b), a.jwks())).toEqual({ valid: true });
  });

  it('opens concurrently without two keys', async () => {
    const dir = path.join(tmp, 'signer-race');
    const signers = await Promise.all(Array.from({ length: 8 }, () => ReceiptSigner.open(dir)));
    expect(new Set(signers.map((s) => s.keyId)).size).toBe(1);
  });
});

describe('canonical JSON', () => {
  it('the fast receipt serializer equals RFC 8785 canonicalize, with and without signature', () => {
    const signer = ReceiptSigner.ephemeral();
    const variants: Array<Partial<ReceiptDraft>> = [
      {},
      { cost_usd: null, saved_cost_usd: null, attempts: [], feature: null, team_id: null, ttft_ms: null },
      { cost_usd: 123456.123456789, latency_ms: 1e-7, cache_similarity: 0.987654321, price_version: 4294967295 },
      { feature: '\u0000\u001f\u2028\u2029 😀 \ud800 lone', end_user: '</script>', error_code: 'upstream_error' },
      { attempts: [{ provider: 'p', model: 'm', status: 65535, error: '', latency_ms: -0 }] },
      // Version 2: its own members, and its attempts' usage.
      { receipt_version: 2, task_type: 'code', rule: 'r\u00e9gle', accepted: false, reasoning_tokens: 7, variant: null },
      {
        receipt_version: 2,
        attempts: [
          {
            provider: 'a',
            model: 'small',
            status: 200,
            error: null,
            latency_ms: 12.5,
            prompt_tokens: 3,
            completion_tokens: 4,
            cost_usd: 1e-9,
            accepted: false,
            reject_reason: 'too short',
          },
          {
            provider: 'b',
            model: 'big',
            status: 200,
            error: null,
            latency_ms: 80,
            prompt_tokens: null,
            completion_tokens: null,
            cost_usd: null,
            accepted: null,
            reject_reason: null,
          },
        ],
      },
    ];
    for (const v of variants) {
      const r = signed(signer, draft(v));
      const { signature, ...unsigned } = r;
      expect(canonicalReceiptJson(unsigned)).toBe(canonicalize(unsigned));
      expect(canonicalReceiptJson(unsigned, signature)).toBe(canonicalize(r));
      expect(JSON.parse(canonicalReceiptJson(unsigned, signature))).toEqual(r);
    }
  });
});

describe('verifyReceipt', () => {
  const signer = ReceiptSigner.ephemeral();
  const receipt = signed(signer);

  it('accepts an untouched receipt', () => {
    expect(verifyReceipt(receipt, signer.jwks())).toEqual({ valid: true });
    // Key order of the object does not matter: the signature is over the canonical form.
    const reversed = Object.fromEntries(Object.entries(receipt).reverse());
    expect(verifyReceipt(reversed, signer.jwks()).valid).toBe(true);
  });

  it('rejects a change to any single field', () => {
    const changed = (value: unknown): unknown => {
      if (value === null) return 'x';
      if (typeof value === 'string') return `${value}x`;
      if (typeof value === 'number') return value + 1;
      if (typeof value === 'boolean') return !value;
      if (Array.isArray(value)) return value.slice(1);
      throw new Error('unexpected field type');
    };
    const fields = Object.keys(receipt).filter((k) => k !== 'signature' && k !== 'key_id');
    expect(fields.length).toBeGreaterThan(35);
    for (const field of fields) {
      const edited = { ...receipt, [field]: changed(receipt[field as keyof Receipt]) };
      const result = verifyReceipt(edited, signer.jwks());
      expect(result, field).toEqual({ valid: false, reason: 'signature does not match' });
    }
    // An added field or a nested edit is a change too.
    expect(verifyReceipt({ ...receipt, extra: 1 }, signer.jwks()).valid).toBe(false);
    const attempts = receipt.attempts.map((a, i) => (i === 0 ? { ...a, error: null } : a));
    expect(verifyReceipt({ ...receipt, attempts }, signer.jwks()).valid).toBe(false);
    // A money change below a cent still counts.
    expect(verifyReceipt({ ...receipt, cost_usd: 1.6e-7 }, signer.jwks()).valid).toBe(false);
  });

  it('rejects a wrong key, an unknown key id, and a damaged signature', () => {
    const other = ReceiptSigner.ephemeral();
    expect(verifyReceipt(receipt, other.jwks())).toEqual({ valid: false, reason: `unknown key_id ${receipt.key_id}` });
    // Another key published under this receipt's key id.
    const impostor = { keys: [{ ...other.jwks().keys[0], kid: receipt.key_id }] };
    expect(verifyReceipt(receipt, impostor)).toEqual({ valid: false, reason: 'signature does not match' });
    // Signed by another key that claims this key id.
    const forged = { ...receipt, signature: other.sign(unsignedOf(receipt)) };
    expect(verifyReceipt(forged, signer.jwks()).valid).toBe(false);
    const flipped = receipt.signature.slice(0, 10) + (receipt.signature[10] === 'A' ? 'B' : 'A') + receipt.signature.slice(11);
    expect(verifyReceipt({ ...receipt, signature: flipped }, signer.jwks()).valid).toBe(false);
    expect(verifyReceipt({ ...receipt, signature: '' }, signer.jwks())).toEqual({ valid: false, reason: 'missing signature' });
    expect(verifyReceipt({ ...receipt, signature: 'abc' }, signer.jwks())).toEqual({ valid: false, reason: 'malformed signature' });
    expect(verifyReceipt({ ...receipt, key_id: undefined }, signer.jwks())).toEqual({ valid: false, reason: 'missing key_id' });
    expect(verifyReceipt(receipt, { keys: [{ kty: 'RSA', kid: receipt.key_id }] }).valid).toBe(false);
  });
});

function unsignedOf(r: Receipt) {
  const { signature: _signature, ...unsigned } = r;
  return unsigned;
}

describe('verifyChain', () => {
  let chain: Receipt[];
  let signer: ReceiptSigner;
  /** The WAL lines the journal wrote, read before its segments were "inserted". */
  const walLines: string[] = [];

  beforeAll(async () => {
    // The real journal builds the chain; its batcher talks to a client that accepts all.
    const dataDir = path.join(tmp, 'chain');
    signer = await ReceiptSigner.open(dataDir);
    const walDir = path.join(dataDir, 'wal');
    const client = {
      exec: async () => {
        for (const f of readdirSync(walDir)
          .filter((n) => n.endsWith('.jsonl'))
          .sort()) {
          for (const line of readFileSync(path.join(walDir, f), 'utf8').split('\n').filter(Boolean)) if (!walLines.includes(line)) walLines.push(line);
        }
        return { stream: Readable.from([]) };
      },
    } as unknown as ClickHouseClient;
    const journal = await ReceiptJournal.open({ dataDir, signer, insertRows: execRowsInserter(client), sync: 'write', batchMaxRows: 3, batchMaxMs: 1000 });
    chain = [];
    for (let i = 0; i < 4; i++) chain.push(journal.sign(await journal.append(draft({ request_id: `req_${i}` }))));
    const burst = await Promise.all([5, 6, 7].map((i) => journal.append(draft({ request_id: `req_${i}`, cost_usd: null }))));
    chain.push(...burst.map((r) => journal.sign(r)));
    await journal.close();
  });

  it('accepts a complete chain that starts at the genesis hash', () => {
    expect(chain.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(chain[0].prev_hash).toBe(GENESIS_PREV_HASH);
    expect(chain[1].prev_hash).toBe(receiptHash(chain[0]));
    expect(verifyChain(chain)).toEqual({ valid: true, breaks: [] });
    for (const r of chain) expect(verifyReceipt(r, signer.jwks()).valid).toBe(true);
    // A window of the chain is fine too.
    expect(verifyChain(chain.slice(2)).valid).toBe(true);
  });

  it('defines prev_hash as sha256 of the previous receipt without its signature', () => {
    const sha256 = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');
    for (let i = 1; i < chain.length; i++) {
      const previous = unsignedOf(chain[i - 1]);
      // The RFC 8785 text of the unsigned receipt: exactly what its signature covers.
      expect(chain[i].prev_hash).toBe(sha256(canonicalize(previous)));
      expect(chain[i].prev_hash).not.toBe(sha256(canonicalize(chain[i - 1])));
    }
    // receiptHash is the same for the signed and the unsigned receipt.
    expect(receiptHash(chain[2])).toBe(receiptHash(unsignedOf(chain[2])));
    // The WAL holds that very text, one line per receipt, so sha256(line) chains the WAL too.
    expect(walLines).toEqual(chain.map((r) => canonicalUnsignedJson(r)));
    for (let i = 1; i < chain.length; i++) expect(chain[i].prev_hash).toBe(sha256(walLines[i - 1]));
  });

  it('keeps the chain independent of signatures, which verifyReceipt checks', () => {
    // A replaced signature does not touch any link, but the receipt no longer verifies.
    const other = ReceiptSigner.ephemeral();
    const resigned = chain.map((r) => (r.seq === 3 ? { ...r, signature: other.sign(unsignedOf(r)) } : r));
    expect(verifyChain(resigned).valid).toBe(true);
    expect(verifyReceipt(resigned[2], signer.jwks())).toEqual({ valid: false, reason: 'signature does not match' });
    // Editing a receipt and relinking its successor breaks both their signatures (and the
    // link to the successor's successor).
    const edited = chain.map((r) => (r.seq === 3 ? { ...r, cost_usd: 0.5 } : r));
    const relinked = edited.map((r) => (r.seq === 4 ? { ...r, prev_hash: receiptHash(edited[2]) } : r));
    expect(verifyChain(relinked.slice(0, 4)).valid).toBe(true);
    expect(verifyChain(relinked).breaks).toEqual([{ seq: 5, reason: 'prev_hash does not match receipt 4' }]);
    expect(verifyReceipt(relinked[2], signer.jwks()).valid).toBe(false);
    expect(verifyReceipt(relinked[3], signer.jwks()).valid).toBe(false);
  });

  it('detects a deleted receipt', () => {
    const result = verifyChain(chain.filter((r) => r.seq !== 4));
    expect(result.valid).toBe(false);
    expect(result.breaks).toEqual([{ seq: 5, reason: 'gap: seq 4..4 missing' }]);
  });

  it('detects an edited receipt on its successor', () => {
    const edited = chain.map((r) => (r.seq === 3 ? { ...r, cost_usd: 0.5 } : r));
    expect(verifyChain(edited).breaks).toEqual([{ seq: 4, reason: 'prev_hash does not match receipt 3' }]);
    // Re-signing with another key does not help: the successor still points at the original.
    const other = ReceiptSigner.ephemeral();
    const resigned = chain.map((r) => (r.seq === 3 ? { ...r, cost_usd: 0.5, signature: other.sign({ ...unsignedOf(r), cost_usd: 0.5 }) } : r));
    expect(verifyChain(resigned).valid).toBe(false);
  });

  it('detects reordered and repeated receipts', () => {
    const swapped = [chain[0], chain[2], chain[1], ...chain.slice(3)];
    const result = verifyChain(swapped);
    expect(result.valid).toBe(false);
    expect(result.breaks.map((b) => b.seq)).toContain(3);
    expect(verifyChain([...chain.slice(0, 3), chain[2], ...chain.slice(3)]).valid).toBe(false);
    // Renumbering to hide a deletion breaks the hash link instead.
    const renumbered = [chain[0], chain[1], { ...chain[3], seq: 3 }];
    expect(verifyChain(renumbered).breaks).toEqual([{ seq: 3, reason: 'prev_hash does not match receipt 2' }]);
  });

  it('requires the genesis hash on seq 1 and one instance', () => {
    expect(verifyChain([{ ...chain[0], prev_hash: 'f'.repeat(64) }]).valid).toBe(false);
    expect(verifyChain([chain[0], { ...chain[1], instance_id: 'another' }]).valid).toBe(false);
  });
});

describe('draft normalization and row mapping', () => {
  const chainFields = { instance_id: 'i', seq: 9, prev_hash: GENESIS_PREV_HASH, key_id: 'k' };

  it('stores absent attribution as null, rounds money and durations, normalizes times', () => {
    const u = unsignedReceipt(
      draft({ feature: '', team_id: undefined as unknown as null, cost_usd: 0.1234567891234, ttft_ms: 1.23456, started_at: '2026-11-21T23:00:00+01:00' }),
      chainFields,
    );
    expect(u.feature).toBeNull();
    expect(u.team_id).toBeNull();
    expect(u.cost_usd).toBe(0.123456789);
    expect(u.ttft_ms).toBe(1.235);
    expect(u.started_at).toBe('2026-11-21T22:00:00.000Z');
    expect(u.finished_at).toBe('2026-11-21T22:00:01.500Z');
    expect(Object.keys(u)).not.toContain('extra');
    expect(Object.keys(unsignedReceipt({ ...draft(), extra: 1 } as ReceiptDraft, chainFields))).not.toContain('extra');
  });

  it('keeps a time already in stored form and normalizes any other, exactly as Date does', () => {
    const [min, max] = [Date.UTC(1970, 0, 1), Date.UTC(2299, 11, 31)];
    const viaDate = (v: string) => {
      const ms = Date.parse(v);
      return ms >= min && ms <= max ? new Date(ms).toISOString() : 'invalid';
    };
    const normalized = (v: string) => {
      try {
        return unsignedReceipt(draft({ started_at: v }), chainFields).started_at;
      } catch (err) {
        if (err instanceof InvalidReceiptError) return 'invalid';
        throw err;
      }
    };
    const samples = [
      '2024-02-29T12:00:00.000Z',
      '2026-02-29T12:00:00.000Z',
      '2000-02-29T00:00:00.000Z',
      '2100-02-29T00:00:00.000Z',
      '2026-04-31T00:00:00.000Z',
      '2026-01-01T24:00:00.000Z',
      '2026-12-31T23:59:60.000Z',
      '2026-12-31T23:60:00.000Z',
      '2026-00-10T00:00:00.000Z',
      '2026-13-10T00:00:00.000Z',
      '2026-01-00T00:00:00.000Z',
      '2026-1x-01T00:00:00.000Z',
      '1969-12-31T23:59:59.999Z',
      '1970-01-01T00:00:00.000Z',
      '2298-12-31T23:59:59.999Z',
      '2299-06-01T00:00:00.000Z',
      '2299-12-31T00:00:00.001Z',
      '+002026-11-21T22:00:00.000Z',
      '2026-11-21T22:00:00.123+00:00',
      '2026-11-21T22:00:00Z',
      '2026-11-21 22:00:00.123Z',
      '2026-11-21T22:00:00.1234',
      '2026-11-21T22:00:00.-12Z',
    ];
    for (let i = 0; i < 5000; i++) samples.push(new Date(Date.UTC(1965, 0, 1) + Math.random() * (Date.UTC(2305, 0, 1) - Date.UTC(1965, 0, 1))).toISOString());
    for (const v of samples) expect(normalized(v), v).toBe(viaDate(v));
  });

  it('refuses values that no column can hold', () => {
    const bad: Array<Partial<ReceiptDraft>> = [
      { receipt_id: 'not-a-uuid' },
      { started_at: 'yesterday' },
      { latency_ms: Number.NaN },
      { prompt_tokens: -1 },
      { prompt_tokens: 1.5 },
      { http_status: 70000 },
      { cost_usd: Number.POSITIVE_INFINITY },
      { status: 'weird' as 'ok' },
      { cache_status: 'HIT' as 'miss' },
    ];
    for (const b of bad) expect(() => unsignedReceipt(draft(b), chainFields), JSON.stringify(b)).toThrow(InvalidReceiptError);
  });

  it('maps a receipt to a row and back unchanged', () => {
    const signer = ReceiptSigner.ephemeral();
    for (const v of [{}, { cost_usd: null, saved_cost_usd: 12.000000001, team_id: null, response_sha256: 'b'.repeat(64) }]) {
      const r = signed(signer, draft(v));
      const row = receiptToRow(r);
      expect(row.feature).toBe(r.feature ?? '');
      expect(row.api_key_id).toBe('');
      expect(row.started_at).toBe('2026-11-21 22:00:00.123');
      const back = rowToReceipt(JSON.parse(JSON.stringify(row)));
      expect(back).toEqual(r);
      expect(row.attempts[0]).toEqual([r.attempts[0]!.provider, r.attempts[0]!.model, r.attempts[0]!.status, r.attempts[0]!.error, r.attempts[0]!.latency_ms]);
      expect(verifyReceipt(back, signer.jwks()).valid).toBe(true);
    }
    expect(usdToDecimal(1.5e-7)).toBe('0.000000150');
    expect(usdToDecimal(-2.5)).toBe('-2.500000000');
    expect(usdToDecimal(999999.999999999)).toBe('999999.999999999');
    // Every amount a receipt can hold comes back from its decimal text as the same number.
    for (let i = 0; i < 10000; i++) {
      const usd = unsignedReceipt(draft({ cost_usd: (Math.random() - 0.1) * 10 ** (Math.random() * 12 - 6) }), chainFields).cost_usd!;
      expect(Number(usdToDecimal(usd))).toBe(usd);
    }
    expect(() => unsignedReceipt(draft({ cost_usd: 1e6 }), chainFields)).toThrow(InvalidReceiptError);
  });
});

describe('prepareSegment (a sealed WAL segment → its insert body)', () => {
  it('signs every whole line, skips a torn tail, and writes the header and a row for each receipt', async () => {
    const signer = ReceiptSigner.ephemeral();
    // Non-ASCII text (up to 3 bytes a character), and a version 2 receipt of many attempts:
    // its per-attempt usage makes its row larger than its line, so the body outgrows the
    // segment's size, its first guess.
    const attempt = {
      provider: 'ark',
      model: 'doubao',
      status: 429,
      error: 'rate_limited',
      latency_ms: 1,
      prompt_tokens: 1,
      completion_tokens: 0,
      cost_usd: 0,
      accepted: null,
      reject_reason: null,
    };
    const drafts = [
      draft({ receipt_version: 2, attempts: Array.from({ length: 400 }, () => attempt) }),
      draft({ team_id: null, cost_usd: null, end_user: 'é'.repeat(9000) }),
      draft({ feature: '要約✨'.repeat(4000) }),
    ];
    let prev = GENESIS_PREV_HASH;
    const lines = drafts.map((d, i) => {
      const unsigned = unsignedReceipt(d, { instance_id: 'instance-1', seq: i + 1, prev_hash: prev, key_id: signer.keyId });
      const line = canonicalUnsignedJson(unsigned);
      prev = createHash('sha256').update(line).digest('hex');
      return line;
    });
    const file = path.join(tmp, 'segment.ndjson');
    writeFileSync(file, `${lines.join('\n')}\n{"torn":`);

    const prepared = await prepareSegment(file, ed25519Signer(ReceiptSigner.privateKeyOf(signer)), signer.keyId);
    expect(prepared).toMatchObject({ records: drafts.length, invalidLines: 1, lastSeq: drafts.length, chainHash: prev });
    // An ArrayBuffer of its own that starts with the body: transferred by the worker, held until
    // inserted, then handed back for the next body.
    expect(prepared.body.byteOffset).toBe(0);
    expect(prepared.body.buffer.byteLength).toBeGreaterThanOrEqual(prepared.body.byteLength);
    // The header, then the rows (read back by the engine: test/integration/journal.test.ts).
    const header = new RowBinaryWriter();
    header.header(RECEIPT_BODY_COLUMNS);
    expect(Buffer.from(prepared.body).subarray(0, header.bytes().length).equals(header.bytes())).toBe(true);
    expect(prepared.body.length).toBeGreaterThan(header.bytes().length + 400 * 20 + 9000 * 2 + 4000 * 10);
  });

  it('skips lines damaged into other JSON or into a receipt it cannot write, as it skips torn ones: they held back every later segment', async () => {
    const signer = ReceiptSigner.ephemeral();
    const sign = ed25519Signer(ReceiptSigner.privateKeyOf(signer));
    const line = (seq: number, prev: string) =>
      canonicalUnsignedJson(unsignedReceipt(draft({}), { instance_id: 'instance-1', seq, prev_hash: prev, key_id: signer.keyId }));
    const first = line(1, GENESIS_PREV_HASH);
    const second = line(2, createHash('sha256').update(first).digest('hex'));
    const { endpoint: _, ...unwritable } = JSON.parse(second);
    const file = path.join(tmp, 'damaged.ndjson');
    writeFileSync(file, [first, '{}', '[1,2]', 'null', JSON.stringify({ ...unwritable, seq: 3 }), second, ''].join('\n'));
    const prepared = await prepareSegment(file, sign, signer.keyId);
    expect(prepared).toMatchObject({ records: 2, invalidLines: 4, lastSeq: 2, chainHash: createHash('sha256').update(second).digest('hex') });
    // The body is the two good rows and nothing of the one rolled back.
    writeFileSync(file, [first, second, ''].join('\n'));
    expect(Buffer.from(prepared.body).equals(Buffer.from((await prepareSegment(file, sign, signer.keyId)).body))).toBe(true);
  });

  it('gives the same body with a scratch that prepared a larger segment before, and with a body buffer handed back (nothing of them shows through)', async () => {
    const signer = ReceiptSigner.ephemeral();
    const sign = ed25519Signer(ReceiptSigner.privateKeyOf(signer));
    const segment = (name: string, feature: string, count: number) => {
      let prev = GENESIS_PREV_HASH;
      const lines = Array.from({ length: count }, (_, i) => {
        const line = canonicalUnsignedJson(
          unsignedReceipt(draft({ feature }), { instance_id: 'instance-1', seq: i + 1, prev_hash: prev, key_id: signer.keyId }),
        );
        prev = createHash('sha256').update(line).digest('hex');
        return line;
      });
      const file = path.join(tmp, name);
      writeFileSync(file, `${lines.join('\n')}\n`);
      return file;
    };
    const large = segment('large.ndjson', 'x'.repeat(5000), 40);
    const small = segment('small.ndjson', 'short', 3);
    const scratch = new SegmentScratch();
    const first = await prepareSegment(large, sign, signer.keyId, scratch);
    const second = await prepareSegment(small, sign, signer.keyId, scratch);
    expect(scratch.file.length).toBeGreaterThan(statSync(small).size);
    expect(second).toEqual(await prepareSegment(small, sign, signer.keyId));
    expect(second.records).toBe(3);
    // A body leaves with its buffer: preparing again into the same scratch did not touch it…
    expect(second.body.buffer).not.toBe(first.body.buffer);
    expect(first).toEqual(await prepareSegment(large, sign, signer.keyId));
    // …until it is handed back: then the next body is written in it.
    scratch.recycle(first.body);
    const third = await prepareSegment(small, sign, signer.keyId, scratch);
    expect(third.body.buffer).toBe(first.body.buffer);
    expect(third).toEqual(second);
  });
});
