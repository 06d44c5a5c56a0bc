// Bearer secrets: gateway API keys, GraphQL access tokens and the admin bootstrap token.
//
// Format (like GitHub's tokens):   <prefix><body><check>
//   prefix  `tg-` for API keys, `tga-` for access tokens (and the admin token), so a
//           leaked secret is recognizable by scanners and the two kinds cannot be confused;
//   body    256 random bits in base62: exactly 43 characters [0-9A-Za-z];
//   check   CRC32 of prefix+body in base62, 6 characters.
// The checksum lets the gateway reject typos, truncations and garbage without a database
// lookup (and without touching the auth cache). It is not a security feature: anyone can
// compute it; the secret's strength is its 256 random bits.
//
// Only SHA-256(secret) is stored. A plain, unsalted hash is right here: the secrets are
// 256-bit random values, so there is nothing to brute-force, and a deterministic hash is
// what makes the lookup a single indexed query.
import { createHash, randomBytes } from 'node:crypto';
import { linkSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { crc32 } from 'node:zlib';

export const API_KEY_PREFIX = 'tg-';
export const ACCESS_TOKEN_PREFIX = 'tga-';

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const BODY_CHARS = 43; // ceil(256 / log2(62))
const CHECK_CHARS = 6; // ceil(32 / log2(62))
/** How many leading characters of a secret are kept in clear for humans (`displayPrefix`). */
export const DISPLAY_PREFIX_CHARS = 12;

function base62(value: bigint, width: number): string {
  let out = '';
  let v = value;
  while (v > 0n) {
    out = ALPHABET[Number(v % 62n)] + out;
    v /= 62n;
  }
  return out.padStart(width, '0');
}

/** base62 of the CRC32, in plain numbers (a CRC32 is exact in a double): it is checked on every request. */
function checksum(prefixAndBody: string): string {
  let v = crc32(prefixAndBody);
  let out = '';
  for (let i = 0; i < CHECK_CHARS; i++) {
    out = ALPHABET[v % 62] + out;
    v = Math.floor(v / 62);
  }
  return out;
}

function generate(prefix: string): string {
  const body = base62(BigInt(`0x${randomBytes(32).toString('hex')}`), BODY_CHARS);
  return prefix + body + checksum(prefix + body);
}

const SHAPE = /^[0-9A-Za-z]+$/;

function isWellFormed(prefix: string, s: unknown): boolean {
  if (typeof s !== 'string' || s.length !== prefix.length + BODY_CHARS + CHECK_CHARS) return false;
  if (!s.startsWith(prefix)) return false;
  const rest = s.slice(prefix.length);
  if (!SHAPE.test(rest)) return false;
  const body = rest.slice(0, BODY_CHARS);
  return rest.slice(BODY_CHARS) === checksum(prefix + body);
}

export function generateApiKeySecret(): string {
  return generate(API_KEY_PREFIX);
}

export function isWellFormedApiKey(s: string): boolean {
  return isWellFormed(API_KEY_PREFIX, s);
}

export function generateAccessTokenSecret(): string {
  return generate(ACCESS_TOKEN_PREFIX);
}

export function isWellFormedAccessToken(s: string): boolean {
  return isWellFormed(ACCESS_TOKEN_PREFIX, s);
}

/** SHA-256 hex: the only form in which secrets are stored. */
export function hashSecret(s: string): string {
  return createHash('sha256').update(s, 'utf8').digest('hex');
}

/** The part of a secret shown to humans to tell keys apart (`tg-AbC123xyZ`). */
export function displayPrefixOf(secret: string): string {
  return secret.slice(0, DISPLAY_PREFIX_CHARS);
}

/**
 * The admin bootstrap token: `configured` (TOLLGATE_ADMIN_TOKEN) when given; otherwise the
 * one in `${dataDir}/admin-token`; otherwise a new one, written there with mode 0600
 * (atomically, never overwriting one written concurrently). `created` says whether it is
 * new, so the caller prints it only once.
 */
export async function ensureAdminToken(opts: { dataDir: string; configured?: string }): Promise<{ token: string; created: boolean }> {
  const configured = opts.configured?.trim();
  if (configured) return { token: configured, created: false };

  const file = path.join(opts.dataDir, 'admin-token');
  const existing = readTokenFile(file);
  if (existing) return { token: existing, created: false };

  mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
  const token = generateAccessTokenSecret();
  const tmp = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  writeFileSync(tmp, `${token}\n`, { mode: 0o600, flag: 'wx' });
  try {
    linkSync(tmp, file);
    return { token, created: true };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    // Another process won the race (or left an empty file): use what is there.
    const theirs = readTokenFile(file);
    if (!theirs) throw new Error(`${file} exists but is empty; delete it to generate a new admin token`);
    return { token: theirs, created: false };
  } finally {
    rmSync(tmp, { force: true });
  }
}

function readTokenFile(file: string): string | null {
  try {
    const token = readFileSync(file, 'utf8').trim();
    return token === '' ? null : token;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}
