// Access tokens (expiry, revocation through the auth cache, IP allowlists) and the allowlist
// rules themselves (issue 12 §4, §6), with an injected clock and request addresses.
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { isAllowedFrom, normalizeCidr } from '../../src/gateway/allowed-cidrs.js';
import { GatewayError } from '../../src/gateway/errors.js';
import { type AccessTokenRecord, TokenVerifier } from '../../src/gateway/tokens.js';
import { CidrList } from '../../src/net/ip.js';
import { generateAccessTokenSecret } from '../../src/store/credentials.js';

const sha = (s: string) => createHash('sha256').update(s).digest('hex');
const ADMIN_TOKEN = 'admin-token-for-tests-0123456789';
const TOKEN = generateAccessTokenSecret();
const NONE = CidrList.parse([]);

/** What the allowlist reads of a request: the socket's peer and X-Forwarded-For. */
function from(remoteAddress: string, forwardedFor?: string): IncomingMessage {
  return { socket: { remoteAddress }, headers: forwardedFor ? { 'x-forwarded-for': forwardedFor } : {} } as unknown as IncomingMessage;
}

function setup(record: Partial<AccessTokenRecord> = {}, trustedProxies = NONE) {
  const clock = { t: 1_000_000 };
  const token: AccessTokenRecord = { id: 'tok-1', name: 'ci', role: 'ANALYST', teamId: null, allowedCidrs: [], expiresAt: null, revokedAt: null, ...record };
  const store = { tokens: new Map([[sha(TOKEN), token]]), lookups: 0 };
  const verifier = new TokenVerifier(
    ADMIN_TOKEN,
    {
      findAccessTokenBySecretHash: async (hash) => {
        store.lookups++;
        const t = store.tokens.get(hash);
        return t ? { ...t } : null;
      },
      teamIdByName: async () => null,
    },
    { cacheMs: 1_000, trustedProxies, onError: () => undefined, now: () => clock.t },
  );
  return { clock, token, store, verifier };
}

const bearerOf = (s: string) => `Bearer ${s}`;

describe('TokenVerifier', () => {
  it('names the actor of the admin token and of an access token', async () => {
    const { verifier } = setup();
    expect((await verifier.verify(bearerOf(ADMIN_TOKEN), from('127.0.0.1')))?.actor).toEqual({ id: 'admin', name: null });
    expect(await verifier.verify(bearerOf(TOKEN), from('127.0.0.1'))).toMatchObject({
      kind: 'access_token',
      tokenId: 'tok-1',
      actor: { id: 'token:tok-1', name: 'ci' },
    });
  });

  it('an expired token is refused exactly like an unknown one', async () => {
    const { verifier, clock, store } = setup();
    store.tokens.get(sha(TOKEN))!.expiresAt = new Date(clock.t + 500);
    expect(await verifier.verify(bearerOf(TOKEN), from('127.0.0.1'))).not.toBeNull();
    clock.t += 500;
    expect(await verifier.verify(bearerOf(TOKEN), from('127.0.0.1'))).toBeNull();
    expect(await verifier.verify(bearerOf(generateAccessTokenSecret()), from('127.0.0.1'))).toBeNull();
  });

  it('a revoked token stops working within the cache window, or at once after invalidate()', async () => {
    const { verifier, clock, store } = setup();
    expect(await verifier.verify(bearerOf(TOKEN), from('127.0.0.1'))).not.toBeNull();
    store.tokens.get(sha(TOKEN))!.revokedAt = new Date(clock.t);
    clock.t += 999;
    expect(await verifier.verify(bearerOf(TOKEN), from('127.0.0.1'))).not.toBeNull(); // cached
    clock.t += 1;
    expect(await verifier.verify(bearerOf(TOKEN), from('127.0.0.1'))).toBeNull();

    const b = setup();
    expect(await b.verifier.verify(bearerOf(TOKEN), from('127.0.0.1'))).not.toBeNull();
    b.store.tokens.get(sha(TOKEN))!.revokedAt = new Date(b.clock.t);
    b.verifier.invalidate();
    expect(await b.verifier.verify(bearerOf(TOKEN), from('127.0.0.1'))).toBeNull();
    expect(b.store.lookups).toBe(2);
  });

  it('a token with allowedCidrs works from inside them and is 403 ip_not_allowed from elsewhere', async () => {
    const { verifier } = setup({ allowedCidrs: ['10.0.0.0/8', '2001:db8::/32'] });
    expect(await verifier.verify(bearerOf(TOKEN), from('10.1.2.3'))).not.toBeNull();
    expect(await verifier.verify(bearerOf(TOKEN), from('::ffff:10.9.9.9'))).not.toBeNull();
    expect(await verifier.verify(bearerOf(TOKEN), from('2001:db8::7'))).not.toBeNull();
    for (const req of [from('192.168.1.1'), from('2001:db9::1'), undefined]) {
      const err = await verifier.verify(bearerOf(TOKEN), req).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(GatewayError);
      expect(err).toMatchObject({ status: 403, type: 'permission_error', code: 'ip_not_allowed' });
    }
  });
});

describe('allowedCidrs', () => {
  it('normalizes IPv4 and IPv6 ranges and single addresses; refuses the rest', () => {
    expect(normalizeCidr('10.1.2.3/8')).toBe('10.0.0.0/8');
    expect(normalizeCidr(' 192.168.0.7 ')).toBe('192.168.0.7/32');
    expect(normalizeCidr('2001:DB8:0:0::1/32')).toBe('2001:db8::/32');
    expect(normalizeCidr('::1')).toBe('::1/128');
    for (const bad of ['', '10.0.0.0/33', '::/129', '10.0.0/8', '127.1', 'example.com', '10.0.0.0/-1', '1.2.3.4/8/8'])
      expect(normalizeCidr(bad), bad).toBeNull();
  });

  it('X-Forwarded-For counts only when the peer is a trusted proxy', () => {
    const cidrs = ['203.0.113.0/24'];
    // Not trusted: the header is the client's own claim and proves nothing.
    expect(isAllowedFrom(cidrs, from('127.0.0.1', '203.0.113.9'), NONE)).toBe(false);
    const trusted = CidrList.parse(['127.0.0.1/32', '10.0.0.0/8']);
    expect(isAllowedFrom(cidrs, from('127.0.0.1', '203.0.113.9'), trusted)).toBe(true);
    // Through two trusted hops: the right-most untrusted entry is the client.
    expect(isAllowedFrom(cidrs, from('127.0.0.1', '203.0.113.9, 10.2.3.4'), trusted)).toBe(true);
    // A forged entry left of the real client is ignored.
    expect(isAllowedFrom(cidrs, from('127.0.0.1', '203.0.113.9, 198.51.100.1'), trusted)).toBe(false);
    expect(isAllowedFrom([], from('198.51.100.1'), NONE)).toBe(true);
  });
});
