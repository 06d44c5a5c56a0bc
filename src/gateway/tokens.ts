// Who is calling a management endpoint (GraphQL, GET /v1/receipts/{id}, the CLI's admin
// endpoint): the admin token, an access token (ADMIN or ANALYST, maybe bound to a team, maybe
// with an expiry and an IP allowlist), a JWT from the configured OIDC identity provider, or
// nobody. Gateway API keys are not management tokens.
//
// Access tokens are looked up by SHA-256 through the auth cache (auth-cache.ts), like API
// keys: a revocation takes effect within TOLLGATE_AUTH_CACHE_MS, or at once on the instance
// that revoked it (`invalidate`). Unknown, revoked and expired tokens are all simply null.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { OidcConfig } from '../config.js';
import type { CidrList } from '../net/ip.js';
import type { Actor } from '../store/admin/audit.js';
import { isWellFormedAccessToken } from '../store/credentials.js';
import { isAllowedFrom } from './allowed-cidrs.js';
import { bearer } from './auth.js';
import { LookupCache } from './auth-cache.js';
import { ipNotAllowed } from './errors.js';
import { looksLikeJwt, OidcVerifier } from './oidc.js';

export interface AccessTokenRecord {
  id: string;
  name: string;
  role: 'ADMIN' | 'ANALYST';
  teamId: string | null;
  /** Client address ranges this token may be used from; empty = anywhere. */
  allowedCidrs: string[];
  expiresAt: Date | null;
  revokedAt: Date | null;
}

export interface Principal {
  kind: 'admin' | 'access_token' | 'oidc';
  role: 'ADMIN' | 'ANALYST';
  /** Set when the token may only see one team. */
  teamId: string | null;
  tokenId: string | null;
  /** Who this is in the audit log: `admin`, `token:<id>` or `oidc:<subject>`. */
  actor: Actor;
}

export interface AccessTokenLookup {
  findAccessTokenBySecretHash(hash: string): Promise<AccessTokenRecord | null>;
  /** For OIDC team claims, which name a team. */
  teamIdByName(name: string): Promise<string | null>;
}

export interface TokenVerifierOptions {
  /** How long a looked-up token (or its absence) is trusted: TOLLGATE_AUTH_CACHE_MS. */
  cacheMs: number;
  trustedProxies: CidrList;
  oidc?: OidcConfig;
  onError: (err: unknown, what: string) => void;
  now?: () => number;
}

const ADMIN: Principal = { kind: 'admin', role: 'ADMIN', teamId: null, tokenId: null, actor: { id: 'admin', name: null } };

export class TokenVerifier {
  private readonly adminDigest: Buffer;
  private readonly accessTokens: LookupCache<AccessTokenRecord>;
  private readonly oidc: OidcVerifier | null;
  private readonly now: () => number;

  constructor(
    adminToken: string,
    private readonly lookup: AccessTokenLookup,
    private readonly options: TokenVerifierOptions,
  ) {
    this.adminDigest = createHash('sha256').update(adminToken).digest();
    this.now = options.now ?? Date.now;
    this.accessTokens = new LookupCache((hash) => lookup.findAccessTokenBySecretHash(hash), options.cacheMs, this.now);
    const teams = new LookupCache((name) => lookup.teamIdByName(name), options.cacheMs, this.now);
    this.oidc = options.oidc ? new OidcVerifier(options.oidc, { teamIdByName: (name) => teams.get(name), onError: options.onError }) : null;
  }

  /**
   * The principal of an Authorization header, or null for none/unknown/revoked/expired.
   * Throws the 403 `ip_not_allowed` GatewayError for a valid access token used from outside
   * its allowlist (`req` is where the request comes from).
   */
  async verify(authorization: string | undefined, req: IncomingMessage | undefined, { fresh = false } = {}): Promise<Principal | null> {
    const secret = bearer(authorization);
    if (!secret) return null;
    const digest = createHash('sha256').update(secret).digest();
    // Compare digests so the comparison is constant-time and length-independent.
    if (timingSafeEqual(digest, this.adminDigest)) return ADMIN;
    // A malformed token (its checksum does not match) is refused without a lookup.
    if (secret.startsWith('tga-')) return isWellFormedAccessToken(secret) ? this.accessToken(digest.toString('hex'), req, fresh) : null;
    if (this.oidc && looksLikeJwt(secret)) {
      const identity = await this.oidc.verify(secret);
      if (!identity) return null;
      const actor = { id: `oidc:${identity.subject}`, name: identity.name };
      return { kind: 'oidc', role: identity.role, teamId: identity.teamId, tokenId: null, actor };
    }
    return null;
  }

  /** Forget cached tokens (after a revocation), so the next request looks again. */
  invalidate(): void {
    this.accessTokens.invalidate();
  }

  /** `fresh`: read now, not from the cache (what mints a credential must not outlive a revocation by a second). */
  private async accessToken(hash: string, req: IncomingMessage | undefined, fresh: boolean): Promise<Principal | null> {
    const token = await (fresh ? this.lookup.findAccessTokenBySecretHash(hash) : this.accessTokens.get(hash));
    if (!token || token.revokedAt || (token.expiresAt && token.expiresAt.getTime() <= this.now())) return null;
    // No request to judge the address of: refused, never waved through.
    if (token.allowedCidrs.length > 0 && !(req && isAllowedFrom(token.allowedCidrs, req, this.options.trustedProxies))) throw ipNotAllowed();
    return { kind: 'access_token', role: token.role, teamId: token.teamId, tokenId: token.id, actor: { id: `token:${token.id}`, name: token.name } };
  }
}
