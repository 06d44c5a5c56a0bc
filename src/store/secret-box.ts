// Encryption at rest for provider credentials (upstream API keys): AES-256-GCM.
//
// Sealed format (all parts base64url, no padding):
//     v1.<iv: 12 bytes>.<tag: 16 bytes>.<ciphertext>
// The version prefix lets a later format (or key rotation with key ids) coexist.
// An optional `aad` (additional authenticated data, e.g. "provider:openrouter") binds a
// ciphertext to the row it belongs to: the same ciphertext copied to another row fails to
// open. Any change to iv, tag, ciphertext or aad, or a wrong key, makes open() throw.
//
// The key, in order of preference:
//   1. `secretKey` (TOLLGATE_SECRET_KEY), either
//        - exactly 32 bytes encoded as hex (64 chars) or base64 / base64url (43-44 chars), or
//        - any other string of at least 16 characters, taken as a passphrase and stretched
//          with scrypt (N=2^15, r=8, p=1) under a fixed, application-specific salt. The salt
//          is fixed so that every gateway instance given the same passphrase derives the
//          same key without sharing state; use a long random passphrase (or a raw key).
//   2. `${dataDir}/secret.key`: 32 random bytes, base64url, created on first use with mode
//      0600. Created atomically (written to a temporary file, then hard-linked into place,
//      which fails if the file exists), so it is never overwritten, even by two processes
//      starting at once. Losing this file makes stored provider keys unreadable: back it up
//      with the data dir, or set TOLLGATE_SECRET_KEY.
import { createCipheriv, createDecipheriv, randomBytes, type ScryptOptions, scrypt as scryptCb } from 'node:crypto';
import { linkSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const VERSION = 'v1';
const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEY_BYTES = 32;
const PASSPHRASE_SALT = 'tollgate/secret-box/v1';
const MIN_PASSPHRASE_CHARS = 16;

export class SecretBoxError extends Error {}

export interface SecretBoxOptions {
  dataDir: string;
  /** TOLLGATE_SECRET_KEY: a 32-byte key (hex/base64/base64url) or a passphrase (>= 16 chars). */
  secretKey?: string;
}

export class SecretBox {
  /** Where the key came from (for the startup banner; never the key itself). */
  readonly keySource: 'configured-key' | 'configured-passphrase' | 'key-file';

  private constructor(
    private readonly key: Buffer,
    keySource: SecretBox['keySource'],
  ) {
    this.keySource = keySource;
  }

  static async open(opts: SecretBoxOptions): Promise<SecretBox> {
    if (opts.secretKey !== undefined && opts.secretKey.trim() !== '') {
      const configured = opts.secretKey.trim();
      const raw = decodeRawKey(configured);
      if (raw) return new SecretBox(raw, 'configured-key');
      if (configured.length < MIN_PASSPHRASE_CHARS) {
        throw new SecretBoxError(`the secret key must be 32 bytes as hex or base64, or a passphrase of at least ${MIN_PASSPHRASE_CHARS} characters`);
      }
      return new SecretBox(await deriveFromPassphrase(configured), 'configured-passphrase');
    }
    return new SecretBox(loadOrCreateKeyFile(path.join(opts.dataDir, 'secret.key')), 'key-file');
  }

  /** Builds a box from raw key bytes (tests, tools). */
  static fromKey(key: Uint8Array): SecretBox {
    if (key.length !== KEY_BYTES) throw new SecretBoxError(`a key must be ${KEY_BYTES} bytes`);
    return new SecretBox(Buffer.from(key), 'configured-key');
  }

  seal(plain: string, aad?: string): string {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv, { authTagLength: TAG_BYTES });
    if (aad !== undefined) cipher.setAAD(Buffer.from(aad, 'utf8'));
    const ct = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
    const tag = cipher.getAuthTag();
    return [VERSION, b64u(iv), b64u(tag), b64u(ct)].join('.');
  }

  open(sealed: string, aad?: string): string {
    const parts = sealed.split('.');
    if (parts.length !== 4 || parts[0] !== VERSION) throw new SecretBoxError('not a sealed secret (unknown format)');
    const iv = fromB64u(parts[1]);
    const tag = fromB64u(parts[2]);
    const ct = fromB64u(parts[3]);
    if (iv.length !== IV_BYTES || tag.length !== TAG_BYTES) throw new SecretBoxError('not a sealed secret (bad lengths)');
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.key, iv, { authTagLength: TAG_BYTES });
      if (aad !== undefined) decipher.setAAD(Buffer.from(aad, 'utf8'));
      decipher.setAuthTag(tag);
      return Buffer.concat([decipher.update(ct), decipher.final()]).toString('utf8');
    } catch {
      // Node says "Unsupported state or unable to authenticate data"; say what it means.
      throw new SecretBoxError('sealed secret failed authentication: wrong key, or the value was altered');
    }
  }
}

function b64u(buf: Buffer): string {
  return buf.toString('base64url');
}

function fromB64u(s: string): Buffer {
  if (!/^[A-Za-z0-9_-]*$/.test(s)) throw new SecretBoxError('not a sealed secret (bad encoding)');
  return Buffer.from(s, 'base64url');
}

/** 32 bytes as hex, base64 or base64url; null when the string is none of these. */
function decodeRawKey(s: string): Buffer | null {
  if (/^[0-9a-fA-F]{64}$/.test(s)) return Buffer.from(s, 'hex');
  if (/^[A-Za-z0-9+/]{43}=?$/.test(s) || /^[A-Za-z0-9_-]{43}$/.test(s)) {
    const buf = Buffer.from(s.replace(/=$/, ''), s.includes('+') || s.includes('/') ? 'base64' : 'base64url');
    if (buf.length === KEY_BYTES) return buf;
  }
  return null;
}

function deriveFromPassphrase(passphrase: string): Promise<Buffer> {
  const options: ScryptOptions = { N: 2 ** 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024 };
  return new Promise((resolve, reject) =>
    scryptCb(passphrase.normalize('NFKC'), PASSPHRASE_SALT, KEY_BYTES, options, (err, key) => (err ? reject(err) : resolve(key))),
  );
}

function loadOrCreateKeyFile(file: string): Buffer {
  const existing = readKeyFile(file);
  if (existing) return existing;
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  writeFileSync(tmp, `${randomBytes(KEY_BYTES).toString('base64url')}\n`, { mode: 0o600, flag: 'wx' });
  try {
    linkSync(tmp, file);
  } catch (err) {
    // EEXIST: another process created it first; use theirs (read below).
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    rmSync(tmp, { force: true });
  }
  const key = readKeyFile(file);
  if (!key) throw new SecretBoxError(`${file} is not a valid key file`);
  return key;
}

function readKeyFile(file: string): Buffer | null {
  let text: string;
  try {
    text = readFileSync(file, 'utf8').trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  const key = decodeRawKey(text);
  // Refuse to guess on a damaged key file: replacing it would orphan every stored secret.
  if (!key) throw new SecretBoxError(`${file} does not hold a 32-byte key; restore it from a backup`);
  return key;
}
