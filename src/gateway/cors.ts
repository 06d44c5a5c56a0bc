// Cross-origin access from browsers (CORS), one policy for every endpoint, /graphql included
// (yoga's own CORS, which reflects any origin with credentials, is off). Only the origins in
// TOLLGATE_CORS_ORIGINS, and never with credentials: Tollgate authenticates with keys and
// tokens in headers, never with cookies, so a page never needs to send credentials, and a
// response no page may read with them cannot leak to one. Without the setting, no CORS
// headers at all: browsers keep other sites' pages from reading any answer.
//
// Written here rather than taken from the `cors` package: that is Connect middleware (a
// preflight ends the response without calling back), and this policy is a dozen lines.
import type { IncomingMessage, ServerResponse } from 'node:http';

export type CorsPolicy = (req: IncomingMessage, res: ServerResponse) => boolean;

const PREFLIGHT_MAX_AGE_SECONDS = '600';

/**
 * The policy for these origins (`*`: any page). It sets the headers an allowed origin's
 * request gets, and answers its preflight itself: then it returns true and the request is done.
 */
export function corsPolicy(origins: readonly string[]): CorsPolicy {
  const anyOrigin = origins.includes('*');
  const allowed = new Set(origins);
  return (req, res) => {
    const origin = req.headers.origin;
    if (origin === undefined || !(anyOrigin || allowed.has(origin))) return false;
    if (anyOrigin) {
      res.setHeader('access-control-allow-origin', '*');
    } else {
      res.setHeader('access-control-allow-origin', origin);
      res.setHeader('vary', 'Origin');
    }
    if (req.method === 'OPTIONS' && req.headers['access-control-request-method'] !== undefined) {
      res.writeHead(204, {
        'access-control-allow-methods': 'GET, POST, DELETE',
        // Whatever the page asks for (SDKs send their own x-… headers); `*` would not cover
        // Authorization.
        ...(req.headers['access-control-request-headers'] ? { 'access-control-allow-headers': req.headers['access-control-request-headers'] } : {}),
        'access-control-max-age': PREFLIGHT_MAX_AGE_SECONDS,
      });
      res.end();
      return true;
    }
    // Lets the page read x-tollgate-receipt-id, retry-after and the rest (`*` is honoured
    // because no credentials are ever allowed).
    res.setHeader('access-control-expose-headers', '*');
    return false;
  };
}
