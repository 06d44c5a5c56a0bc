// Receipt signing (DESIGN §6): Ed25519 over the RFC 8785 canonical JSON of the receipt
// without its `signature` field. The key pair is created once per data directory and its
// public half is served as a JWK set at /.well-known/tollgate/receipt-keys.
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject, randomUUID } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, link, mkdir, open, readFile, unlink } from 'node:fs/promises';
import path from 'node:path';
import { type Ed25519Sign, ed25519Signer } from './ed25519.js';
import type { Attempt, UnsignedReceipt } from './receipt.js';
import { RECEIPT_V1_FIELDS } from './rows.js';

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
  readonly #sign: Ed25519Sign;
  readonly #jwk: ReceiptJwk;

  private constructor(privateKey: KeyObject) {
    if (privateKey.asymmetricKeyType !== 'ed25519') {
      throw new Error(`receipt signing key must be Ed25519, found ${privateKey.asymmetricKeyType ?? privateKey.type}`);
    }
    const { x } = createPublicKey(privateKey).export({ format: 'jwk' });
    if (typeof x !== 'string') throw new Error('cannot export the receipt public key');
    this.#privateKey = privateKey;
    this.#sign = ed25519Signer(privateKey);
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
    return this.#sign(Buffer.from(canonical, 'utf8')).toString('base64url');
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
// tests check, but several times faster and with a fraction of the garbage: the keys of each
// receipt version are known, so the members are copied into an object literal whose keys
// are already in RFC 8785 order, and ONE JSON.stringify writes it. RFC 8785 serializes
// numbers and strings exactly as JSON.stringify does; it sorts keys by UTF-16 code units,
// and these keys are ASCII, so plain string order. (Building the text member by member made
// ~100 intermediate strings, 7.4 KB of the proxy's ~64 KB allocated per request.)
//
// A normalized receipt (normalize.ts: unsignedReceipt) has every member of its version, none
// undefined. `signature` is a member like the others: undefined, it is left out.

// `satisfies`: a member added to a receipt type and forgotten here is a compile error, not a
// member silently left out of the signed text.
type V1AttemptKeys = 'error' | 'latency_ms' | 'model' | 'provider' | 'status';

function canonicalAttemptV1(a: Attempt) {
  return { error: a.error, latency_ms: a.latency_ms, model: a.model, provider: a.provider, status: a.status } satisfies Record<V1AttemptKeys, unknown>;
}

function canonicalAttemptV2(a: Attempt) {
  return {
    accepted: a.accepted,
    completion_tokens: a.completion_tokens,
    cost_usd: a.cost_usd,
    error: a.error,
    latency_ms: a.latency_ms,
    model: a.model,
    prompt_tokens: a.prompt_tokens,
    provider: a.provider,
    reject_reason: a.reject_reason,
    status: a.status,
  } satisfies Record<keyof Required<Attempt>, unknown>;
}

/** RFC 8785 order of version 1's members (`signature` among them). */
const V1_KEYS: readonly string[] = [...RECEIPT_V1_FIELDS].sort();

/**
 * Version 1 receipts only come from WALs and tables written before version 2: off the hot
 * path, so built from the key list (the same key order as a literal would have).
 */
function canonicalV1(r: UnsignedReceipt, signature: string | undefined): Record<string, unknown> {
  const members: Record<string, unknown> = {};
  const fields = r as unknown as Record<string, unknown>;
  for (const key of V1_KEYS) {
    members[key] = key === 'signature' ? signature : key === 'attempts' ? r.attempts.map(canonicalAttemptV1) : fields[key];
  }
  return members;
}

function canonicalV2(r: UnsignedReceipt, signature: string | undefined) {
  return {
    accepted: r.accepted,
    api_key_id: r.api_key_id,
    attempts: r.attempts.map(canonicalAttemptV2),
    cache_similarity: r.cache_similarity,
    cache_status: r.cache_status,
    cache_write_tokens: r.cache_write_tokens,
    cached_tokens: r.cached_tokens,
    classifier_tier: r.classifier_tier,
    completion_tokens: r.completion_tokens,
    cost_usd: r.cost_usd,
    end_user: r.end_user,
    endpoint: r.endpoint,
    error_code: r.error_code,
    experiment: r.experiment,
    feature: r.feature,
    finished_at: r.finished_at,
    http_status: r.http_status,
    instance_id: r.instance_id,
    key_id: r.key_id,
    latency_ms: r.latency_ms,
    model: r.model,
    overhead_ms: r.overhead_ms,
    prev_hash: r.prev_hash,
    price_version: r.price_version,
    prompt_tokens: r.prompt_tokens,
    provider: r.provider,
    reasoning_tokens: r.reasoning_tokens,
    receipt_id: r.receipt_id,
    receipt_version: r.receipt_version,
    request_id: r.request_id,
    request_sha256: r.request_sha256,
    requested_model: r.requested_model,
    response_sha256: r.response_sha256,
    route: r.route,
    rule: r.rule,
    saved_cost_usd: r.saved_cost_usd,
    seq: r.seq,
    signature: signature,
    started_at: r.started_at,
    status: r.status,
    strategy: r.strategy,
    stream: r.stream,
    task_id: r.task_id,
    task_type: r.task_type,
    team_id: r.team_id,
    ttft_ms: r.ttft_ms,
    upstream_ms: r.upstream_ms,
    usage_estimated: r.usage_estimated,
    variant: r.variant,
  } satisfies Record<keyof Required<UnsignedReceipt> | 'signature', unknown>;
}

/**
 * Canonical JSON of a normalized receipt without its signature: the signed text, the WAL
 * line, and (its sha256) the next receipt's prev_hash. Members other than the receipt's
 * version's (a `signature` among them) are ignored.
 */
export function canonicalUnsignedJson(r: UnsignedReceipt): string {
  return canonicalReceiptJson(r);
}

/** Canonical JSON of a normalized receipt, with `signature` when it is given. */
export function canonicalReceiptJson(r: UnsignedReceipt, signature?: string): string {
  return JSON.stringify(r.receipt_version === 2 ? canonicalV2(r, signature) : canonicalV1(r, signature));
}
