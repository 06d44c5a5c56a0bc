// A local OIDC identity provider for tests: a real HTTP server on loopback serving a discovery
// document and a JWK set, and real tokens signed with RS256, ES256 and EdDSA keys (jose).
// A `rogue` key signs tokens too but is never published.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { type CryptoKey, exportJWK, generateKeyPair, type JWK, type JWTPayload, SignJWT } from 'jose';

type KeyName = 'rsa' | 'ec' | 'ed' | 'rogue';
const ALG: Record<KeyName, string> = { rsa: 'RS256', ec: 'ES256', ed: 'EdDSA', rogue: 'RS256' };

export interface TestIdentityProvider {
  issuer: string;
  audience: string;
  /** The published public keys (JWK set). */
  jwks: { keys: JWK[] };
  /** Requests for the JWK set so far. */
  jwksFetches: number;
  /** A token for `claims` (merged over sub/iss/aud/iat/exp defaults; `undefined` removes one). */
  sign(claims: Record<string, unknown>, opts?: { key?: KeyName; kid?: string }): Promise<string>;
  close(): Promise<void>;
}

export async function startIdentityProvider(audience = 'tollgate-test'): Promise<TestIdentityProvider> {
  const keys = {} as Record<KeyName, { privateKey: CryptoKey; publicJwk: JWK }>;
  for (const name of Object.keys(ALG) as KeyName[]) {
    const pair = await generateKeyPair(ALG[name], { crv: name === 'ed' ? 'Ed25519' : undefined });
    keys[name] = { privateKey: pair.privateKey, publicJwk: { ...(await exportJWK(pair.publicKey)), kid: `${name}-1`, alg: ALG[name], use: 'sig' } };
  }
  const jwks = { keys: (['rsa', 'ec', 'ed'] as const).map((k) => keys[k].publicJwk) };
  const state = { jwksFetches: 0 };
  const server = http.createServer((req, res) => {
    const send = (body: unknown) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    if (req.url === '/idp/.well-known/openid-configuration')
      return send({ issuer, jwks_uri: `${issuer}/keys`, id_token_signing_alg_values_supported: ['RS256', 'ES256', 'EdDSA'] });
    if (req.url === '/idp/keys') {
      state.jwksFetches++;
      return send(jwks);
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}/idp`;

  return {
    issuer,
    audience,
    jwks,
    get jwksFetches() {
      return state.jwksFetches;
    },
    async sign(claims, opts = {}) {
      const key = opts.key ?? 'rsa';
      const now = Math.floor(Date.now() / 1000);
      const payload: Record<string, unknown> = { sub: 'user-1', iss: issuer, aud: audience, iat: now, exp: now + 300, ...claims };
      for (const [k, v] of Object.entries(payload)) if (v === undefined) delete payload[k];
      return new SignJWT(payload as JWTPayload)
        .setProtectedHeader({ alg: ALG[key], kid: opts.kid ?? `${key === 'rogue' ? 'rsa' : key}-1`, typ: 'JWT' })
        .sign(keys[key].privateKey);
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** An unsigned token (`alg: none`): must never be accepted. */
export function unsignedToken(claims: Record<string, unknown>): string {
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  return `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`;
}
