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

/** Which implementation `ed25519Signer` uses here. */
export function ed25519Implementation(): 'libsodium' | 'openssl' {
  return loadSodium() ? 'libsodium' : 'openssl';
}

/**
 * A signing function for `privateKey` (an Ed25519 KeyObject). `implementation` forces one
 * (tests, the bench); by default libsodium when it loads.
 */
export function ed25519Signer(privateKey: KeyObject, implementation: 'libsodium' | 'openssl' = ed25519Implementation()): Ed25519Sign {
  const lib = implementation === 'libsodium' ? loadSodium() : null;
  if (implementation === 'libsodium' && !lib) throw new Error('libsodium (sodium-native) is not available on this platform');
  if (!lib) return (message) => sign(null, message, privateKey);
  const { d } = privateKey.export({ format: 'jwk' });
  if (typeof d !== 'string') throw new Error('cannot read the Ed25519 private key');
  // libsodium's secret key is seed || public key; sodium_malloc keeps it in locked memory
  // with guard pages (never swapped out, not next to other heap data).
  const secretKey = lib.sodium_malloc(lib.crypto_sign_SECRETKEYBYTES);
  const seed = Buffer.from(d, 'base64url');
  lib.crypto_sign_seed_keypair(Buffer.alloc(lib.crypto_sign_PUBLICKEYBYTES), secretKey, seed);
  seed.fill(0);
  return (message) => {
    const signature = Buffer.allocUnsafe(lib.crypto_sign_BYTES);
    lib.crypto_sign_detached(signature, message, secretKey);
    return signature;
  };
}
