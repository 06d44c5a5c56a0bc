// OIDC bearer tokens (issue 12 §6) against a local identity provider on loopback: real
// discovery, a real JWK set over HTTP, real signatures. Only the valid tokens get through.
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, type OidcConfig } from '../../src/config.js';
import { httpsOrLoopbackProblem } from '../../src/config-values.js';
import { OidcVerifier } from '../../src/gateway/oidc.js';
import { startIdentityProvider, type TestIdentityProvider, unsignedToken } from '../support/identity-provider.js';

let idp: TestIdentityProvider;
let config: OidcConfig;
const TEAMS = new Map([['team-a', '11111111-1111-4111-8111-111111111111']]);
const errors: string[] = [];

function verifier(over: Partial<OidcConfig> = {}) {
  return new OidcVerifier({ ...config, ...over }, { teamIdByName: async (n) => TEAMS.get(n) ?? null, onError: (err) => errors.push(String(err)) });
}

beforeAll(async () => {
  idp = await startIdentityProvider();
  config = { issuer: idp.issuer, audiences: [idp.audience], roleClaim: 'tollgate_role', teamClaim: 'tollgate_team' };
});
afterAll(() => idp?.close());

const now = () => Math.floor(Date.now() / 1000);

describe('OidcVerifier', () => {
  it('accepts valid ADMIN and ANALYST tokens signed with RS256, ES256 and EdDSA', async () => {
    const v = verifier();
    expect(await v.verify(await idp.sign({ tollgate_role: 'ADMIN', email: 'ada@example.com' }))).toEqual({
      subject: 'user-1',
      name: 'ada@example.com',
      role: 'ADMIN',
      teamId: null,
    });
    expect(await v.verify(await idp.sign({ tollgate_role: 'ANALYST', sub: 'bob' }, { key: 'ec' }))).toMatchObject({ subject: 'bob', role: 'ANALYST' });
    expect(await v.verify(await idp.sign({ tollgate_role: 'ANALYST', sub: 'eve' }, { key: 'ed' }))).toMatchObject({ subject: 'eve', role: 'ANALYST' });
    // A role array (as many providers emit groups): ADMIN wins.
    expect(await v.verify(await idp.sign({ tollgate_role: ['ANALYST', 'ADMIN'] }))).toMatchObject({ role: 'ADMIN' });
  });

  it('binds a token to the team its team claim names; an unknown team is refused, not widened', async () => {
    const v = verifier();
    expect(await v.verify(await idp.sign({ tollgate_role: 'ADMIN', tollgate_team: 'team-a' }))).toMatchObject({ role: 'ADMIN', teamId: TEAMS.get('team-a') });
    expect(await v.verify(await idp.sign({ tollgate_role: 'ADMIN', tollgate_team: 'no-such-team' }))).toBeNull();
    expect(await v.verify(await idp.sign({ tollgate_role: 'ADMIN', tollgate_team: ['team-a'] }))).toBeNull();
  });

  it('uses the configured claim names', async () => {
    const v = verifier({ roleClaim: 'https://tollgate.example/role', teamClaim: 'grp' });
    expect(await v.verify(await idp.sign({ 'https://tollgate.example/role': 'ANALYST', grp: 'team-a' }))).toMatchObject({
      role: 'ANALYST',
      teamId: TEAMS.get('team-a'),
    });
    expect(await v.verify(await idp.sign({ tollgate_role: 'ANALYST' }))).toBeNull();
  });

  it('refuses expired, not-yet-valid, wrong-audience, wrong-issuer, unknown-kid, unsigned, foreign-key, HMAC and role-less tokens', async () => {
    const v = verifier();
    const rsaPublic = new TextEncoder().encode(JSON.stringify(idp.jwks.keys[0]));
    const refused: Record<string, string> = {
      expired: await idp.sign({ tollgate_role: 'ADMIN', exp: now() - 120 }),
      'not yet valid': await idp.sign({ tollgate_role: 'ADMIN', nbf: now() + 300 }),
      'no exp': await idp.sign({ tollgate_role: 'ADMIN', exp: undefined }),
      'no sub': await idp.sign({ tollgate_role: 'ADMIN', sub: undefined }),
      'wrong audience': await idp.sign({ tollgate_role: 'ADMIN', aud: 'another-app' }),
      'wrong issuer': await idp.sign({ tollgate_role: 'ADMIN', iss: 'https://evil.example.com' }),
      'unknown kid': await idp.sign({ tollgate_role: 'ADMIN' }, { kid: 'not-published' }),
      'alg none': unsignedToken({ sub: 'x', iss: idp.issuer, aud: idp.audience, exp: now() + 300, tollgate_role: 'ADMIN' }),
      'another key, a published kid': await idp.sign({ tollgate_role: 'ADMIN' }, { key: 'rogue' }),
      'HS256 keyed with the public key': await new SignJWT({ sub: 'x', tollgate_role: 'ADMIN' })
        .setProtectedHeader({ alg: 'HS256', kid: 'rsa-1' })
        .setIssuer(idp.issuer)
        .setAudience(idp.audience)
        .setExpirationTime('5m')
        .sign(rsaPublic),
      'missing role claim': await idp.sign({}),
      'unknown role': await idp.sign({ tollgate_role: 'SUPERUSER' }),
      'lower-case role': await idp.sign({ tollgate_role: 'admin' }),
      'not a JWT': 'tga-not-a-jwt',
    };
    for (const [what, token] of Object.entries(refused)) expect(await v.verify(token), what).toBeNull();
    // Control: each refused token differs from this valid one in one respect only.
    expect(await v.verify(await idp.sign({ tollgate_role: 'ADMIN' }))).not.toBeNull();
  });

  it('tolerates a small clock skew only', async () => {
    const v = verifier();
    expect(await v.verify(await idp.sign({ tollgate_role: 'ADMIN', exp: now() - 10 }))).not.toBeNull();
    expect(await v.verify(await idp.sign({ tollgate_role: 'ADMIN', nbf: now() + 10 }))).not.toBeNull();
    expect(await v.verify(await idp.sign({ tollgate_role: 'ADMIN', exp: now() - 60 }))).toBeNull();
  });

  it('fetches the key set once, and unknown kids do not make it refetch on every token', async () => {
    const v = verifier();
    const before = idp.jwksFetches;
    for (let i = 0; i < 3; i++) expect(await v.verify(await idp.sign({ tollgate_role: 'ADMIN' }))).not.toBeNull();
    expect(idp.jwksFetches - before).toBe(1);
    for (let i = 0; i < 10; i++) expect(await v.verify(await idp.sign({ tollgate_role: 'ADMIN' }, { kid: `forged-${i}` }))).toBeNull();
    // One refetch for the first unknown kid at most, then the cooldown holds.
    expect(idp.jwksFetches - before).toBeLessThanOrEqual(2);
  });

  it('an unreachable provider or a discovery document for another issuer: every token refused, reported once', async () => {
    errors.length = 0;
    const down = verifier({ issuer: 'http://127.0.0.1:9/idp' });
    for (let i = 0; i < 3; i++) expect(await down.verify(await idp.sign({ tollgate_role: 'ADMIN' }))).toBeNull();
    expect(errors).toHaveLength(1);
    const mismatched = new OidcVerifier(
      { ...config, issuer: `${idp.issuer}/` },
      { teamIdByName: async () => null, onError: (err) => errors.push(String(err)) },
    );
    expect(await mismatched.verify(await idp.sign({ tollgate_role: 'ADMIN', iss: `${idp.issuer}/` }))).toBeNull();
    expect(errors.at(-1)).toMatch(/names issuer/);
  });
});

describe('OIDC settings', () => {
  it('issuer: https, or http on loopback only; an audience is required', () => {
    expect(httpsOrLoopbackProblem('https://idp.example.com/realms/x')).toBeNull();
    expect(httpsOrLoopbackProblem('http://127.0.0.1:8080/idp')).toBeNull();
    expect(httpsOrLoopbackProblem('http://[::1]:8080')).toBeNull();
    expect(httpsOrLoopbackProblem('http://idp.example.com')).toMatch(/https/);
    expect(() => loadConfig({ TOLLGATE_OIDC_ISSUER: 'http://idp.example.com', TOLLGATE_OIDC_AUDIENCE: 'x' })).toThrow(/TOLLGATE_OIDC_ISSUER/);
    expect(() => loadConfig({ TOLLGATE_OIDC_ISSUER: 'https://idp.example.com' })).toThrow(ConfigError);
    const c = loadConfig({ TOLLGATE_OIDC_ISSUER: 'https://idp.example.com', TOLLGATE_OIDC_AUDIENCE: 'a, b' });
    expect(c.oidc).toEqual({ issuer: 'https://idp.example.com', audiences: ['a', 'b'], roleClaim: 'tollgate_role', teamClaim: 'tollgate_team' });
    expect(loadConfig({}).oidc).toBeUndefined();
  });
});
