// OIDC/JWT bearer tokens from an identity provider, accepted on GraphQL and on
// GET /v1/receipts/{id} beside Tollgate's own tokens (issue 12 §6), verified with `jose`:
//
//   - the provider's keys come from its discovery document
//     (`${issuer}/.well-known/openid-configuration` → `jwks_uri`), fetched on the first token
//     and cached by jose's remote JWK set (refetched when a token names an unknown `kid`, at
//     most once per cooldown, so a stream of forged kids cannot make us hammer the provider);
//   - a token must be signed with RS256, ES256 or EdDSA by one of those keys (never `none`,
//     never an HMAC: a public key is not a shared secret), name the configured issuer and one
//     of the configured audiences, carry `sub` and `exp`, and be within exp/nbf give or take
//     CLOCK_TOLERANCE;
//   - the role claim must say ADMIN or ANALYST; the team claim, when present, names a team
//     that must exist (a token that names an unknown team is refused, never widened to all
//     teams).
// Every refusal looks the same to the caller (null), like an unknown Tollgate token.
import { createRemoteJWKSet, type JWTPayload, jwtVerify } from 'jose';
import type { OidcConfig } from '../config.js';
import { httpsOrLoopbackProblem } from '../config-values.js';

const ALGORITHMS = ['RS256', 'ES256', 'EdDSA'];
const CLOCK_TOLERANCE_SECONDS = 30;
const FETCH_TIMEOUT_MS = 5_000;
/** Unknown `kid`: refetch the key set at most this often. */
const JWKS_COOLDOWN_MS = 30_000;
/** Keys are refetched after this long anyway (rotation). */
const JWKS_MAX_AGE_MS = 10 * 60_000;
/** A failed discovery is retried after this long; tokens are refused meanwhile. */
const DISCOVERY_RETRY_MS = 30_000;
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

export interface OidcIdentity {
  subject: string;
  /** e-mail, preferred_username or name, for the audit log. */
  name: string | null;
  role: 'ADMIN' | 'ANALYST';
  teamId: string | null;
}

export interface OidcDeps {
  /** The id of the team with this name, or null. */
  teamIdByName: (name: string) => Promise<string | null>;
  onError: (err: unknown, what: string) => void;
  fetch?: typeof fetch;
}

export function looksLikeJwt(token: string): boolean {
  return JWT_SHAPE.test(token);
}

type KeySet = ReturnType<typeof createRemoteJWKSet>;

export class OidcVerifier {
  private keySet: KeySet | null = null;
  private discovering: Promise<KeySet> | null = null;
  private discoveryFailedAt = -Infinity;

  constructor(
    private readonly config: OidcConfig,
    private readonly deps: OidcDeps,
  ) {}

  /** The identity a valid token proves, or null for any token that is not one. */
  async verify(token: string): Promise<OidcIdentity | null> {
    if (!looksLikeJwt(token)) return null;
    const keys = await this.keys();
    if (!keys) return null;
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, keys, {
        issuer: this.config.issuer,
        audience: this.config.audiences,
        algorithms: ALGORITHMS,
        clockTolerance: CLOCK_TOLERANCE_SECONDS,
        requiredClaims: ['sub', 'exp'],
      }));
    } catch {
      // Expired, wrong audience/issuer, bad signature, unknown kid, unsupported alg …: all alike.
      return null;
    }
    const role = roleOf(payload[this.config.roleClaim]);
    if (!role) return null;
    const team = payload[this.config.teamClaim];
    let teamId: string | null = null;
    if (team !== undefined) {
      if (typeof team !== 'string' || team === '') return null;
      teamId = await this.deps.teamIdByName(team);
      if (teamId === null) return null;
    }
    return { subject: payload.sub!, name: nameOf(payload), role, teamId };
  }

  /** The provider's key set, discovered once; null while discovery is failing. */
  private async keys(): Promise<KeySet | null> {
    if (this.keySet) return this.keySet;
    if (performance.now() - this.discoveryFailedAt < DISCOVERY_RETRY_MS) return null;
    this.discovering ??= this.discover().finally(() => (this.discovering = null));
    try {
      return (this.keySet = await this.discovering);
    } catch (err) {
      if (performance.now() - this.discoveryFailedAt >= DISCOVERY_RETRY_MS) {
        this.discoveryFailedAt = performance.now();
        this.deps.onError(err, 'OIDC discovery');
      }
      return null;
    }
  }

  private async discover(): Promise<KeySet> {
    const doFetch = this.deps.fetch ?? fetch;
    const url = `${this.config.issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
    const res = await doFetch(url, { redirect: 'error', signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
    if (!res.ok) throw new Error(`${url} answered ${res.status}`);
    const doc = (await res.json()) as { issuer?: unknown; jwks_uri?: unknown };
    // OpenID Connect Discovery §4.3: the document must name exactly the issuer asked for.
    if (doc.issuer !== this.config.issuer) throw new Error(`${url} names issuer ${JSON.stringify(doc.issuer)}, not ${this.config.issuer}`);
    if (typeof doc.jwks_uri !== 'string') throw new Error(`${url} has no jwks_uri`);
    const problem = httpsOrLoopbackProblem(doc.jwks_uri);
    if (problem) throw new Error(`jwks_uri ${doc.jwks_uri} ${problem}`);
    return createRemoteJWKSet(new URL(doc.jwks_uri), {
      timeoutDuration: FETCH_TIMEOUT_MS,
      cooldownDuration: JWKS_COOLDOWN_MS,
      cacheMaxAge: JWKS_MAX_AGE_MS,
    });
  }
}

/** ADMIN or ANALYST from a string claim, or from an array of roles (ADMIN wins). */
function roleOf(claim: unknown): 'ADMIN' | 'ANALYST' | null {
  const roles = typeof claim === 'string' ? [claim] : Array.isArray(claim) ? claim : [];
  if (roles.includes('ADMIN')) return 'ADMIN';
  if (roles.includes('ANALYST')) return 'ANALYST';
  return null;
}

function nameOf(payload: JWTPayload): string | null {
  for (const claim of ['email', 'preferred_username', 'name']) {
    const v = payload[claim];
    if (typeof v === 'string' && v !== '') return v.slice(0, 200);
  }
  return null;
}
