// Receipt signing (DESIGN §6): Ed25519 over the RFC 8785 canonical JSON of the receipt
// without its `signature` field. The key pair is created once per data directory and its
// public half is served as a JWK set at /.well-known/tollgate/receipt-keys.
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomUUID, sign, type KeyObject } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, link, mkdir, open, readFile, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Attempt, UnsignedReceipt } from './receipt.js';
import { RECEIPT_FIELDS } from './rows.js';

export const SIGNING_KEY_FILE = 'receipt-signing-key.pem';

export interface ReceiptJwk {
  kty: 'OKP';
  crv: 'Ed25519';
  kid: string;
  x: string;
  use: 'sig';
  alg: 'EdDSA';
}

export interface ReceiptJwks {
  keys: ReceiptJwk[];
}

export class ReceiptSigner {
  readonly keyId: string;
  readonly #privateKey: KeyObject;
  readonly #jwk: ReceiptJwk;

  private constructor(privateKey: KeyObject) {
    if (privateKey.asymmetricKeyType !== 'ed25519') {
      throw new Error(`receipt signing key must be Ed25519, found ${privateKey.asymmetricKeyType ?? privateKey.type}`);
    }
    const { x } = createPublicKey(privateKey).export({ format: 'jwk' });
    if (typeof x !== 'string') throw new Error('cannot export the receipt public key');
    this.#privateKey = privateKey;
    this.keyId = keyIdFor(x);
    this.#jwk = { kty: 'OKP', crv: 'Ed25519', kid: this.keyId, x, use: 'sig', alg: 'EdDSA' };
  }

  /** The signer of this data directory; creates `${dataDir}/receipt-signing-key.pem` (0600) on first use. */
  static async open(dataDir: string): Promise<ReceiptSigner> {
    const file = path.join(dataDir, SIGNING_KEY_FILE);
    let pem: string;
    try {
      pem = await readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      await mkdir(dataDir, { recursive: true });
      pem = await createKeyFile(file);
    }
    // Somebody may have copied the key with a permissive mode; a signing key is a secret.
    await chmod(file, 0o600).catch(() => undefined);
    return new ReceiptSigner(createPrivateKey(pem));
  }

  /** A signer with a fresh key that is not persisted (tests, tools). */
  static ephemeral(): ReceiptSigner {
    return new ReceiptSigner(generateKeyPairSync('ed25519').privateKey);
  }

  jwks(): ReceiptJwks {
    return { keys: [{ ...this.#jwk }] };
  }

  sign(unsigned: UnsignedReceipt): string {
    return this.signCanonical(canonicalReceiptJson(unsigned));
  }

  /** Signature of an already canonical JSON text (the journal's hot path serializes once). */
  signCanonical(canonical: string): string {
    return sign(null, Buffer.from(canonical, 'utf8'), this.#privateKey).toString('base64url');
  }
}

/** Short stable key id: base64url of the first 12 bytes of sha256(raw public key). */
export function keyIdFor(x: string): string {
  return createHash('sha256').update(Buffer.from(x, 'base64url')).digest().subarray(0, 12).toString('base64url');
}

/**
 * Create the key file exactly once, even with a concurrent starter: the PEM is written
 * and synced under a temporary name, then hard-linked into place (link fails if the file
 * exists, so the first writer wins and a torn file is never visible under the real name).
 */
async function createKeyFile(file: string): Promise<string> {
  const pem = generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  const tmp = `${file}.${randomUUID()}.tmp`;
  const handle = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  try {
    await handle.writeFile(pem);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await link(tmp, file);
    return pem;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return readFile(file, 'utf8');
    throw err;
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------
// Canonical JSON of a receipt.
//
// Equal to the `canonicalize` package (RFC 8785) for every normalized receipt, which the
// tests check, but about five times faster: the keys are known, so they are sorted once
// here instead of on every call. Primitives are serialized with JSON.stringify, exactly
// as RFC 8785 (ECMAScript number and string serialization) requires.

// RFC 8785 sorts by UTF-16 code units; the keys are ASCII, so the default sort is that.
// `signature` sorts between `seq` and `started_at`: the keys before it form the head of
// the text, the keys after it the tail, and the signed and the stored text share both.
const SORTED_KEYS = RECEIPT_FIELDS.filter((k) => k !== 'signature').sort();
const HEAD_KEYS = SORTED_KEYS.filter((k) => k < 'signature');
const TAIL_KEYS = SORTED_KEYS.filter((k) => k > 'signature');

function attemptsJson(attempts: Attempt[]): string {
  let out = '[';
  for (let i = 0; i < attempts.length; i++) {
    const a = attempts[i];
    if (i > 0) out += ',';
    out +=
      `{"error":${JSON.stringify(a.error)},"latency_ms":${JSON.stringify(a.latency_ms)},` +
      `"model":${JSON.stringify(a.model)},"provider":${JSON.stringify(a.provider)},"status":${JSON.stringify(a.status)}}`;
  }
  return out + ']';
}

function members(r: UnsignedReceipt, keys: readonly (keyof UnsignedReceipt)[]): string {
  let out = '';
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i];
    if (i > 0) out += ',';
    out += '"' + key + '":' + (key === 'attempts' ? attemptsJson(r.attempts) : JSON.stringify(r[key]));
  }
  return out;
}

/**
 * Canonical JSON of a normalized receipt: `unsigned` is the signed text, `signed(sig)` the
 * text with the signature (the WAL line; its sha256 is the next receipt's prev_hash).
 */
export function canonicalReceiptTexts(r: UnsignedReceipt): { unsigned: string; signed: (signature: string) => string } {
  const head = '{' + members(r, HEAD_KEYS);
  const tail = members(r, TAIL_KEYS) + '}';
  return { unsigned: head + ',' + tail, signed: (signature) => head + ',"signature":' + JSON.stringify(signature) + ',' + tail };
}

/** Canonical JSON of a normalized receipt, with `signature` when it is given. */
export function canonicalReceiptJson(r: UnsignedReceipt, signature?: string): string {
  const texts = canonicalReceiptTexts(r);
  return signature === undefined ? texts.unsigned : texts.signed(signature);
}
