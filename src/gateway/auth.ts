// API key authentication with a short in-memory cache of hashed keys (auth-cache.ts). Only
// SHA-256 hashes are held or looked up; the secret itself is never stored or logged.
// Revocation reaches the proxy within the cache TTL (1 s by default), or at once through
// `invalidate`.
import { hash } from 'node:crypto';
import { isWellFormedApiKey } from '../store/credentials.js';
import { LookupCache } from './auth-cache.js';
import { badRequest, invalidApiKey } from './errors.js';

export interface ApiKeyRecord {
  id: string;
  teamId: string;
  name: string;
  rpmLimit: number | null;
  tpmLimit: number | null;
  allowedRoutes: string[];
  /** Client address ranges this key may be used from; empty = anywhere. */
  allowedCidrs: string[];
  expiresAt: Date | null;
  revokedAt: Date | null;
}

export interface KeyLookup {
  findApiKeyBySecretHash(hash: string): Promise<ApiKeyRecord | null>;
  /** Records when a key was last used (ApiKey.lastUsedAt, for admins looking for unused keys). */
  touchApiKey?(id: string, at: Date): Promise<void>;
}

/** lastUsedAt is kept to the minute: one write per key and minute, not one per request. */
const TOUCH_EVERY_MS = 60_000;

export class KeyAuthenticator {
  private readonly cache: LookupCache<ApiKeyRecord>;
  private readonly lastTouched = new Map<string, number>();

  constructor(
    private readonly lookup: KeyLookup,
    ttlMs: number,
    /** Whether a secret could be a key at all (its checksum): refused without a lookup when not. */
    private readonly isWellFormed: (secret: string) => boolean = isWellFormedApiKey,
    private readonly now: () => number = Date.now,
  ) {
    this.cache = new LookupCache((hash) => lookup.findApiKeyBySecretHash(hash), ttlMs, now);
  }

  /** Resolves the key for an Authorization header or throws the one 401 every failure shares. */
  async authenticate(authorization: string | undefined): Promise<ApiKeyRecord> {
    const secret = bearer(authorization);
    if (!secret || !this.isWellFormed(secret)) throw invalidApiKey();
    const secretHash = hash('sha256', secret);
    const key = await this.cache.get(secretHash);
    const now = this.now();
    if (!key || key.revokedAt || (key.expiresAt && key.expiresAt.getTime() <= now)) throw invalidApiKey();
    this.touch(key.id, now);
    return key;
  }

  private touch(id: string, now: number): void {
    const last = this.lastTouched.get(id);
    if (!this.lookup.touchApiKey || (last !== undefined && now - last < TOUCH_EVERY_MS)) return;
    // In the order they were touched: those touched over a minute ago are forgotten from the
    // front, so the map holds the keys of the last minute, not every key ever used.
    this.lastTouched.delete(id);
    this.lastTouched.set(id, now);
    for (const [oldId, at] of this.lastTouched) {
      if (now - at < TOUCH_EVERY_MS) break;
      this.lastTouched.delete(oldId);
    }
    // Advisory: a store that cannot take it now (down) gets the next minute's.
    this.lookup.touchApiKey(id, new Date(now)).catch(() => undefined);
  }

  invalidate(hash?: string): void {
    this.cache.invalidate(hash);
  }
}

export function bearer(authorization: string | undefined): string | null {
  if (!authorization) return null;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
  return match ? match[1]! : null;
}

/** Headers that carry credentials: each may come at most once. */
const CREDENTIAL_HEADERS = ['authorization', 'x-api-key'];
const CREDENTIAL_HEADER_LENGTHS = new Set(CREDENTIAL_HEADERS.map((h) => h.length));

/**
 * Refuses a request that repeats a credential header (400, param: the header). Node keeps the
 * first `authorization` and drops the others, and joins repeated `x-api-key`s with ", ", while
 * a proxy in front may go by the last one: the two would disagree about who is calling. Only
 * the raw headers still show every copy.
 */
export function assertCredentialsOnce(rawHeaders: readonly string[]): void {
  const seen: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    // Hot path (every request): most names are ruled out by length, without lower-casing.
    if (!CREDENTIAL_HEADER_LENGTHS.has(rawHeaders[i]!.length)) continue;
    const name = rawHeaders[i]!.toLowerCase();
    if (!CREDENTIAL_HEADERS.includes(name)) continue;
    if (seen.includes(name)) throw badRequest(`The '${name}' header may be sent only once.`, name);
    seen.push(name);
  }
}
