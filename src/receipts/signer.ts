// Receipt signing (DESIGN §6): Ed25519 over the RFC 8785 canonical JSON of the receipt
// without its `signature` field. The key pair is created once per data directory and its
// public half is served as a JWK set at /.well-known/tollgate/receipt-keys.
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject, randomUUID, sign } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, link, mkdir, open, readFile, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Attempt, UnsignedReceipt } from './receipt.js';

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

  /** The signature of a normalized receipt (its `signature` field, if any, is ignored). */
  sign(unsigned: UnsignedReceipt): string {
    return this.signCanonical(canonicalUnsignedJson(unsigned));
  }

  /** Signature of an already canonical JSON text. */
  signCanonical(canonical: string): string {
    return sign(null, Buffer.from(canonical, 'utf8'), this.#privateKey).toString('base64url');
  }

  /**
   * The private key, for the receipts journal's batch worker (a KeyObject can be posted to
   * a worker thread). Not for anything else: the key never leaves the process.
   * @internal
   */
  static privateKeyOf(signer: ReceiptSigner): KeyObject {
    return signer.#privateKey;
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
// tests check, but several times faster: the keys of each receipt version are known, so
// they are sorted once here instead of on every call, and every field is read directly.
// Values are serialized with JSON.stringify, exactly as RFC 8785 (ECMAScript number and
// string serialization) requires; null, booleans and finite numbers included.
//
// RFC 8785 sorts by UTF-16 code units; the keys are ASCII, so that is plain string order.
// `signature` sorts between `seq` and `started_at`: the members before it are the head of
// the text, the members after it the tail, and the unsigned and the signed text share both.

const j = JSON.stringify;

const V1_KEYS = [
  'api_key_id',
  'attempts',
  'cache_similarity',
  'cache_status',
  'cached_tokens',
  'completion_tokens',
  'cost_usd',
  'end_user',
  'endpoint',
  'error_code',
  'feature',
  'finished_at',
  'http_status',
  'instance_id',
  'key_id',
  'latency_ms',
  'model',
  'overhead_ms',
  'prev_hash',
  'price_version',
  'prompt_tokens',
  'provider',
  'receipt_id',
  'request_id',
  'request_sha256',
  'requested_model',
  'response_sha256',
  'route',
  'saved_cost_usd',
  'seq',
  'started_at',
  'status',
  'strategy',
  'stream',
  'task_id',
  'team_id',
  'ttft_ms',
  'upstream_ms',
  'usage_estimated',
] as const;
const V2_KEYS = [
  ...V1_KEYS,
  'receipt_version',
  'task_type',
  'rule',
  'classifier_tier',
  'experiment',
  'variant',
  'accepted',
  'reasoning_tokens',
  'cache_write_tokens',
].sort();
const V1_ATTEMPT_KEYS = ['error', 'latency_ms', 'model', 'provider', 'status'] as const;
const V2_ATTEMPT_KEYS = [...V1_ATTEMPT_KEYS, 'prompt_tokens', 'completion_tokens', 'cost_usd', 'accepted', 'reject_reason'].sort();

interface Layout {
  /** Members before `signature`, each as [key, `"key":` or `,"key":`]. */
  head: Array<[string, string]>;
  tail: Array<[string, string]>;
  attempt: Array<[string, string]>;
}

function layout(keys: readonly string[], attemptKeys: readonly string[]): Layout {
  const prefixed = (list: readonly string[]) => list.map((k, i): [string, string] => [k, `${i === 0 ? '' : ','}${j(k)}:`]);
  return {
    head: prefixed(keys.filter((k) => k < 'signature')),
    tail: prefixed(keys.filter((k) => k > 'signature')),
    attempt: prefixed(attemptKeys),
  };
}

const LAYOUTS = { 1: layout(V1_KEYS, V1_ATTEMPT_KEYS), 2: layout(V2_KEYS, V2_ATTEMPT_KEYS) };

function members(obj: Record<string, unknown>, list: Array<[string, string]>, attempts: Array<[string, string]> | null): string {
  let out = '';
  for (const [key, prefix] of list) {
    out += prefix;
    out += key === 'attempts' && attempts ? attemptsJson(obj.attempts as Attempt[], attempts) : j(obj[key]);
  }
  return out;
}

function attemptsJson(list: Attempt[], keys: Array<[string, string]>): string {
  let out = '[';
  for (let i = 0; i < list.length; i++) out += `${i > 0 ? ',' : ''}{${members(list[i] as unknown as Record<string, unknown>, keys, null)}}`;
  return `${out}]`;
}

function texts(r: UnsignedReceipt): { head: string; tail: string } {
  const l = r.receipt_version === 2 ? LAYOUTS[2] : LAYOUTS[1];
  const obj = r as unknown as Record<string, unknown>;
  return { head: `{${members(obj, l.head, l.attempt)}`, tail: `${members(obj, l.tail, l.attempt)}}` };
}

/**
 * Canonical JSON of a normalized receipt without its signature: the signed text, the WAL
 * line, and (its sha256) the next receipt's prev_hash. Fields other than the receipt's
 * version's (a `signature` among them) are ignored.
 */
export function canonicalUnsignedJson(r: UnsignedReceipt): string {
  const { head, tail } = texts(r);
  return `${head},${tail}`;
}

/**
 * Canonical JSON of a normalized receipt: `unsigned` is the signed text, `signed(sig)` the
 * text of the receipt with that signature.
 */
export function canonicalReceiptTexts(r: UnsignedReceipt): { unsigned: string; signed: (signature: string) => string } {
  const { head, tail } = texts(r);
  return { unsigned: `${head},${tail}`, signed: (signature) => `${head},"signature":${j(signature)},${tail}` };
}

/** Canonical JSON of a normalized receipt, with `signature` when it is given. */
export function canonicalReceiptJson(r: UnsignedReceipt, signature?: string): string {
  return signature === undefined ? canonicalUnsignedJson(r) : canonicalReceiptTexts(r).signed(signature);
}
