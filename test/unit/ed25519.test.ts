import { generateKeyPairSync, randomBytes, sign, verify } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ed25519Implementation, ed25519Signer } from '../../src/receipts/ed25519.js';

describe('Ed25519 receipt signing', () => {
  it('uses libsodium on the platforms sodium-native ships a prebuilt addon for', () => {
    // A broken install would otherwise only show as a slower receipts worker.
    if (['linux', 'darwin', 'win32'].includes(process.platform) && ['x64', 'arm64'].includes(process.arch)) {
      expect(ed25519Implementation()).toBe('libsodium');
    } else {
      expect(['libsodium', 'openssl']).toContain(ed25519Implementation());
    }
  });

  // Where libsodium does not load, OpenSSL signs and there is nothing to compare (the test above
  // asserts that it loads on every platform sodium-native ships for).
  it.skipIf(ed25519Implementation() === 'openssl')('gives the same signature bytes as OpenSSL (node:crypto), for any key and message', () => {
    const messages = [Buffer.alloc(0), Buffer.from('x'), Buffer.from('{"receipt_id":"é ✓ 😀"}'), randomBytes(1_400), randomBytes(70_000)];
    for (let k = 0; k < 5; k++) {
      const { privateKey, publicKey } = generateKeyPairSync('ed25519');
      const bySodium = ed25519Signer(privateKey, 'libsodium');
      const byOpenssl = ed25519Signer(privateKey, 'openssl');
      for (const m of messages) {
        const s = bySodium(m);
        expect(s.length).toBe(64);
        expect(s.equals(byOpenssl(m))).toBe(true);
        expect(s.equals(sign(null, m, privateKey))).toBe(true);
        expect(verify(null, m, publicKey, s)).toBe(true);
      }
      // A view into a larger buffer signs only its own bytes (the worker signs WAL lines in place).
      const wal = Buffer.concat([Buffer.from('prefix'), messages[3]!, Buffer.from('suffix')]);
      expect(bySodium(wal.subarray(6, 6 + 1_400)).equals(byOpenssl(messages[3]!))).toBe(true);
    }
  });
});
