// Offline receipt verification, for Tollgate and for its users (DESIGN §6). Depends only
// on node:crypto and the RFC 8785 `canonicalize` package, so it can be copied as is.
//
//   signature   base64url Ed25519 over canonical JSON of the receipt without `signature`,
//               by the key whose `kid` is the receipt's `key_id` in the JWK set served at
//               /.well-known/tollgate/receipt-keys.
//   seq         1, 2, 3, … per gateway instance (`instance_id`).
//   prev_hash   sha256 hex of the canonical JSON of the previous receipt of the same
//               instance WITHOUT its `signature` (the very text that receipt's signature
//               covers); 64 zeros for an instance's first receipt.
//
// Why the chain leaves signatures out: receipt N's signature covers its prev_hash, which
// is H(receipt N-1 without signature), and that content is covered by N-1's own
// signature. Deleting, editing, inserting or reordering a receipt therefore still breaks
// either a signature or a link, exactly as with a chain over signed receipts; but no
// signature depends on another one, so the gateway can chain and log a receipt at once
// and sign it later, off the request path (src/receipts/journal.ts).
import { createHash, createPublicKey, type KeyObject, verify } from 'node:crypto';
import * as canonicalizeModule from 'canonicalize';

// `canonicalize` is CommonJS whose typings declare an ES default export: under NodeNext the
// function is the namespace's `default`, whatever the loader (Node, vitest, a bundler).
type Serialize = (input: unknown) => string | undefined;
export const canonicalize: Serialize = (canonicalizeModule as unknown as { default?: Serialize }).default ?? (canonicalizeModule as unknown as Serialize);

export const GENESIS_PREV_HASH = '0'.repeat(64);

export interface JwkLike {
  kty?: string;
  crv?: string;
  kid?: string;
  x?: string;
}

export interface Verification {
  valid: boolean;
  reason?: string;
}

export interface ChainVerification {
  valid: boolean;
  breaks: Array<{ seq: number; reason: string }>;
}

/** Fields verifyChain reads; a full receipt has them all. */
export interface ChainLink {
  seq: number;
  prev_hash: string;
  instance_id?: string;
}

/** RFC 8785 canonical JSON. */
export function canonicalJson(value: unknown): string {
  const text = canonicalize(value);
  if (text === undefined) throw new TypeError('value has no JSON representation');
  return text;
}

/**
 * The chain hash of a receipt, i.e. the next receipt's prev_hash: sha256 hex of its
 * canonical JSON without `signature` (signed or not, the hash is the same).
 */
export function receiptHash(receipt: object): string {
  const { signature: _signature, ...unsigned } = receipt as Record<string, unknown>;
  return createHash('sha256').update(canonicalJson(unsigned), 'utf8').digest('hex');
}

// Public keys by `x`: importing a JWK costs more than verifying with it.
const keyCache = new Map<string, KeyObject>();

function publicKeyFor(jwk: JwkLike): KeyObject | string {
  if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || typeof jwk.x !== 'string') return 'key is not an Ed25519 JWK';
  let key = keyCache.get(jwk.x);
  if (!key) {
    try {
      key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: jwk.x }, format: 'jwk' });
    } catch {
      return 'key is not a valid Ed25519 public key';
    }
    if (keyCache.size >= 64) keyCache.clear();
    keyCache.set(jwk.x, key);
  }
  return key;
}

/** Checks a receipt's signature against a JWK set; never throws. */
export function verifyReceipt(receipt: object, jwks: { keys: ReadonlyArray<JwkLike> }): Verification {
  if (receipt === null || typeof receipt !== 'object' || Array.isArray(receipt)) return { valid: false, reason: 'receipt is not an object' };
  const { signature, ...unsigned } = receipt as Record<string, unknown>;
  const keyId = unsigned.key_id;
  if (typeof signature !== 'string' || signature.length === 0) return { valid: false, reason: 'missing signature' };
  if (typeof keyId !== 'string') return { valid: false, reason: 'missing key_id' };
  const jwk = jwks?.keys?.find((k) => k.kid === keyId);
  if (!jwk) return { valid: false, reason: `unknown key_id ${keyId}` };
  const key = publicKeyFor(jwk);
  if (typeof key === 'string') return { valid: false, reason: key };
  const sig = Buffer.from(signature, 'base64url');
  // Only the canonical encoding of a 64-byte signature is accepted.
  if (sig.length !== 64 || sig.toString('base64url') !== signature) return { valid: false, reason: 'malformed signature' };
  let message: string;
  try {
    message = canonicalJson(unsigned);
  } catch (err) {
    return { valid: false, reason: `receipt cannot be canonicalized: ${(err as Error).message}` };
  }
  return verify(null, Buffer.from(message, 'utf8'), key, sig) ? { valid: true } : { valid: false, reason: 'signature does not match' };
}

/**
 * Checks the hash chain of one instance's receipts, given sorted by seq: every seq follows
 * the previous one and every prev_hash is receiptHash of the previous receipt (its
 * canonical JSON without signature). A deleted receipt shows as a gap, an edited one as a
 * prev_hash mismatch on its successor (the last receipt is covered by its own signature:
 * verify those with verifyReceipt). A sequence may start anywhere; if it starts at seq 1
 * its prev_hash must be 64 zeros.
 */
export function verifyChain(receipts: ReadonlyArray<ChainLink>): ChainVerification {
  const breaks: ChainVerification['breaks'] = [];
  let previous: ChainLink | undefined;
  for (const r of receipts) {
    if (!Number.isSafeInteger(r.seq) || r.seq < 1) {
      breaks.push({ seq: r.seq, reason: `invalid seq ${String(r.seq)}` });
    } else if (previous === undefined) {
      if (r.seq === 1 && r.prev_hash !== GENESIS_PREV_HASH) breaks.push({ seq: r.seq, reason: 'first receipt must have a zero prev_hash' });
    } else {
      if (r.instance_id !== previous.instance_id) {
        breaks.push({ seq: r.seq, reason: `instance_id changes from ${String(previous.instance_id)} to ${String(r.instance_id)}` });
      }
      if (r.seq !== previous.seq + 1) {
        breaks.push({
          seq: r.seq,
          reason: r.seq <= previous.seq ? `seq ${r.seq} after ${previous.seq}: out of order or repeated` : `gap: seq ${previous.seq + 1}..${r.seq - 1} missing`,
        });
      } else if (r.prev_hash !== receiptHash(previous)) {
        breaks.push({ seq: r.seq, reason: `prev_hash does not match receipt ${previous.seq}` });
      }
    }
    previous = r;
  }
  return { valid: breaks.length === 0, breaks };
}
