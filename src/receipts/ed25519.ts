// Ed25519 signing of receipts (DESIGN §6), by libsodium (sodium-native's prebuilt addon) when
// it loads, else by node:crypto (OpenSSL). Ed25519 signatures are deterministic (RFC 8032), so
// both give the same bytes for the same key and message (test/unit/ed25519.test.ts checks it):
// which one signed is invisible in a receipt. libsodium because the signature is the largest
// single cost of a receipt and it signs in 21.5 µs where OpenSSL takes 37.2 µs (1,400-byte
// message, this machine's AMD EPYC, 20k signatures each); the receipts worker signs every
// receipt, and on a 2-core machine that thread competes with the request path.

import { type KeyObject, sign } from 'node:crypto';
import { createRequire } from 'node:module';

/** Signs a message with one fixed key: the 64-byte signature. */
export type Ed25519Sign = (message: Uint8Array) => Buffer;

/** The part of sodium-native used here. */
interface Sodium {
  crypto_sign_SECRETKEYBYTES: number;
  crypto_sign_PUBLICKEYBYTES: number;
  crypto_sign_BYTES: number;
  sodium_malloc(size: number): Buffer;
  crypto_sign_seed_keypair(publicKey: Buffer, secretKey: Buffer, seed: Buffer): void;
  crypto_sign_detached(signature: Buffer, message: Uint8Array, secretKey: Buffer): void;
}

let sodium: Sodium | null | undefined;

/** sodium-native, loaded on first use; null where its addon does not load (then OpenSSL signs). */
function loadSodium(): Sodium | null {
  if (sodium === undefined) {
    try {
      sodium = createRequire(import.meta.url)('sodium-native') as Sodium;
    } catch {
      sodium = null;
    }
  }
  return sodium;
}

/** Which implementation `ed25519Signer` uses here (by default). */
export function ed25519Implementation(): 'libsodium' | 'openssl' {
  return loadSodium() ? 'libsodium' : 'openssl';
}

/** PKCS #8 DER of an Ed25519 private key: these 16 bytes, then the 32-byte seed (RFC 8410). */
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

/**
 * A signing function for `privateKey` (an Ed25519 KeyObject). `implementation` forces one
 * (tests, the bench); by default libsodium, or OpenSSL where libsodium does not load or cannot
 * take the key.
 */
export function ed25519Signer(privateKey: KeyObject, implementation?: 'libsodium' | 'openssl'): Ed25519Sign {
  const openssl: Ed25519Sign = (message) => sign(null, message, privateKey);
  if (implementation === 'openssl') return openssl;
  const lib = loadSodium();
  if (!lib) {
    if (implementation === 'libsodium') throw new Error('libsodium (sodium-native) is not available on this platform');
    return openssl;
  }
  try {
    return sodiumSigner(lib, privateKey);
  } catch (err) {
    if (implementation === 'libsodium') throw err;
    return openssl;
  }
}

function sodiumSigner(lib: Sodium, privateKey: KeyObject): Ed25519Sign {
  // The seed from the key's DER (a Buffer, wiped after use; a JWK would leave it in a string).
  // The KeyObject keeps its own copy: this is one more copy, in memory that is locked and
  // guarded (sodium_malloc), not the only one.
  const der = privateKey.export({ format: 'der', type: 'pkcs8' });
  try {
    if (der.length !== PKCS8_ED25519_PREFIX.length + 32 || !der.subarray(0, PKCS8_ED25519_PREFIX.length).equals(PKCS8_ED25519_PREFIX)) {
      throw new Error('not an Ed25519 private key in PKCS #8');
    }
    // libsodium's secret key is seed || public key.
    const secretKey = lib.sodium_malloc(lib.crypto_sign_SECRETKEYBYTES);
    lib.crypto_sign_seed_keypair(Buffer.alloc(lib.crypto_sign_PUBLICKEYBYTES), secretKey, der.subarray(PKCS8_ED25519_PREFIX.length));
    return (message) => {
      const signature = Buffer.allocUnsafe(lib.crypto_sign_BYTES);
      lib.crypto_sign_detached(signature, message, secretKey);
      return signature;
    };
  } finally {
    der.fill(0);
  }
}
