// What a calling access token may still do when it mints a credential (an access token, an API
// key): be valid now, not only in the authentication cache, and give no more than it has.
import { CidrList } from '../../net/ip.js';
import { invalidInput } from '../builder.js';
import type { GraphQLContext } from '../context.js';
import { forbidden } from './errors.js';

/**
 * The calling access token's row, read now rather than from the authentication cache: a
 * credential minted by a token revoked (or expired) a moment ago would outlive it for good,
 * turning the cache's second of grace into a permanent key. Null for other principals.
 */
export async function assertCallerStillValid(ctx: GraphQLContext): Promise<{ expiresAt: Date | null; allowedCidrs: string[] } | null> {
  const caller = ctx.principal;
  if (caller?.kind !== 'access_token' || !caller.tokenId) return null;
  const own = await ctx.prisma.accessToken.findUnique({
    where: { id: caller.tokenId },
    select: { expiresAt: true, allowedCidrs: true, revokedAt: true },
  });
  if (!own || own.revokedAt || (own.expiresAt && own.expiresAt.getTime() <= Date.now())) {
    throw forbidden('The calling token has been revoked or has expired.');
  }
  return own;
}

/**
 * An access token may not mint a token that outlives it or works from where it does not: the
 * new token's expiry and allowlist must lie within the caller's (else letting the caller
 * expire would not end what it made). Revoking the caller does not revoke what it made.
 */
export async function assertNoWiderThanCaller(ctx: GraphQLContext, expiresAt: Date | null, allowedCidrs: readonly string[] | null): Promise<void> {
  const own = await assertCallerStillValid(ctx);
  if (!own) return;
  if (own.expiresAt && (!expiresAt || expiresAt > own.expiresAt)) {
    throw invalidInput(`expiresAt: may not be later than the calling token's own expiry (${own.expiresAt.toISOString()})`, 'input.expiresAt');
  }
  if (own.allowedCidrs.length > 0) {
    const mine = CidrList.parse(own.allowedCidrs);
    if (!allowedCidrs?.length || !allowedCidrs.every((cidr) => mine.covers(cidr))) {
      throw invalidInput(`allowedCidrs: must lie within the calling token's own (${own.allowedCidrs.join(', ')})`, 'input.allowedCidrs');
    }
  }
}
