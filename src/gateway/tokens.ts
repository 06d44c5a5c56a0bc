// Who is calling a management endpoint: the admin token, an access token (ADMIN or
// ANALYST, maybe bound to a team), or nobody. Gateway API keys are not management tokens.
import { createHash, timingSafeEqual } from 'node:crypto';
import { bearer } from './auth.js';

export interface AccessTokenRecord {
  id: string;
  role: 'ADMIN' | 'ANALYST';
  teamId: string | null;
  revokedAt: Date | null;
}

export interface Principal {
  kind: 'admin' | 'access_token';
  role: 'ADMIN' | 'ANALYST';
  /** Set when the token may only see one team. */
  teamId: string | null;
  tokenId: string | null;
}

export interface AccessTokenLookup {
  findAccessTokenBySecretHash(hash: string): Promise<AccessTokenRecord | null>;
}

export class TokenVerifier {
  private readonly adminDigest: Buffer;

  constructor(
    adminToken: string,
    private readonly lookup: AccessTokenLookup,
  ) {
    this.adminDigest = createHash('sha256').update(adminToken).digest();
  }

  async verify(authorization: string | undefined): Promise<Principal | null> {
    const secret = bearer(authorization);
    if (!secret) return null;
    const digest = createHash('sha256').update(secret).digest();
    // Compare digests so the comparison is constant-time and length-independent.
    if (timingSafeEqual(digest, this.adminDigest)) return { kind: 'admin', role: 'ADMIN', teamId: null, tokenId: null };
    if (!secret.startsWith('tga-')) return null;
    const token = await this.lookup.findAccessTokenBySecretHash(digest.toString('hex'));
    if (!token || token.revokedAt) return null;
    return { kind: 'access_token', role: token.role, teamId: token.teamId, tokenId: token.id };
  }
}
