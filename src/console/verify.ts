// Receipt signatures checked in the browser, the way src/receipts/verify.ts does on the
// server: Ed25519 (WebCrypto) over the RFC 8785 canonical JSON of the signed object, made
// by the same `canonicalize` package, with the key named by key_id in the JWK set that
// Tollgate publishes.
import * as canonicalizeModule from 'canonicalize';

// `canonicalize` is CommonJS whose typings declare an ES default export: the function is the
// namespace's `default` for the bundler and for Node (the unit tests) alike.
type Serialize = (input: unknown) => string | undefined;
export const canonicalize: Serialize = (canonicalizeModule as unknown as { default?: Serialize }).default ?? (canonicalizeModule as unknown as Serialize);

export interface Jwk {
  kty?: string;
  crv?: string;
  kid?: string;
  x?: string;
}

export type BrowserVerification =
  | { status: 'valid'; keyId: string }
  | { status: 'invalid'; reason: string }
  /** This browser cannot check (no WebCrypto Ed25519, or not a secure context). */
  | { status: 'unavailable'; reason: string };

function base64urlBytes(s: string): Uint8Array<ArrayBuffer> | null {
  if (!/^[A-Za-z0-9_-]*$/.test(s)) return null;
  const b64 = s.replaceAll('-', '+').replaceAll('_', '/') + '='.repeat((4 - (s.length % 4)) % 4);
  try {
    return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  } catch {
    return null;
  }
}

/**
 * `jwks` null: the published key set could not be read (an error page, the network), which
 * says nothing about the receipt, so the answer is "unavailable", never "invalid".
 */
export async function verifyInBrowser(signed: Record<string, unknown>, signature: string, jwks: { keys?: unknown } | null): Promise<BrowserVerification> {
  if (!globalThis.crypto?.subtle) {
    return { status: 'unavailable', reason: 'WebCrypto is only available on HTTPS or localhost pages.' };
  }
  if (!Array.isArray(jwks?.keys)) return { status: 'unavailable', reason: 'the published key set could not be read' };
  const keyId = signed.key_id;
  if (typeof keyId !== 'string') return { status: 'invalid', reason: 'the receipt names no key_id' };
  const jwk = (jwks.keys as Jwk[]).find((k) => k?.kid === keyId);
  if (!jwk) return { status: 'invalid', reason: `key ${keyId} is not in the published key set` };
  if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || typeof jwk.x !== 'string' || base64urlBytes(jwk.x)?.length !== 32) {
    return { status: 'invalid', reason: `key ${keyId} is not an Ed25519 key` };
  }
  const sig = base64urlBytes(signature);
  if (sig?.length !== 64) return { status: 'invalid', reason: 'the signature is not 64 bytes of base64url' };
  const text = canonicalize(signed);
  if (text === undefined) return { status: 'invalid', reason: 'the receipt cannot be canonicalized' };
  try {
    const key = await crypto.subtle.importKey('jwk', { kty: 'OKP', crv: 'Ed25519', x: jwk.x }, { name: 'Ed25519' }, false, ['verify']);
    const ok = await crypto.subtle.verify({ name: 'Ed25519' }, key, sig, new TextEncoder().encode(text));
    return ok ? { status: 'valid', keyId } : { status: 'invalid', reason: 'the signature does not match the receipt' };
  } catch {
    // The key is well-formed (checked above): what failed is this browser's WebCrypto.
    return { status: 'unavailable', reason: 'this browser has no Ed25519 in WebCrypto' };
  }
}
