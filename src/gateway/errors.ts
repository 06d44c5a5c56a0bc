// OpenAI-shaped errors (DESIGN §4). Every error the gateway answers is a GatewayError, so the
// status, type and code of each contract row live here and nowhere else.

export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

export class GatewayError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    readonly code: string | null,
    message: string,
    readonly param: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  body(): OpenAIErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

// One message for every authentication failure, so a caller cannot tell a revoked key from
// an unknown one.
export const invalidApiKey = () =>
  new GatewayError(401, 'invalid_request_error', 'invalid_api_key', 'Incorrect API key provided. Check the key you are sending to Tollgate.');

export const badRequest = (message: string, param: string | null, code: string | null = null) =>
  new GatewayError(400, 'invalid_request_error', code, message, param);

export const bodyTooLarge = (limit: number) => new GatewayError(413, 'invalid_request_error', 'request_too_large', `Request body exceeds ${limit} bytes.`);

export const modelNotFound = (model: string) =>
  new GatewayError(
    404,
    'invalid_request_error',
    'model_not_found',
    `The model '${truncate(model, 200)}' does not exist or you do not have access to it.`,
    'model',
  );

export const routeForbidden = (route: string) =>
  new GatewayError(403, 'permission_error', 'route_not_allowed', `This API key may not use '${route}'.`, 'model');

export const ipNotAllowed = () => new GatewayError(403, 'permission_error', 'ip_not_allowed', 'This key or token may not be used from your address.');

export const rateLimited = (message: string, retryAfterSeconds: number, headers: Record<string, string> = {}) =>
  new GatewayError(429, 'rate_limit_error', 'rate_limit_exceeded', message, null, {
    ...headers,
    'retry-after': String(Math.max(1, Math.ceil(retryAfterSeconds))),
  });

export const authRateLimited = (retryAfterSeconds: number) =>
  new GatewayError(429, 'rate_limit_error', 'auth_rate_limited', 'Too many failed authentications from this address; try again later.', null, {
    'retry-after': String(Math.max(1, Math.ceil(retryAfterSeconds))),
  });

/** The request carries this deployment's own x-tollgate-hop marker: a provider points back at Tollgate. */
export const loopDetected = () =>
  new GatewayError(
    508,
    'api_error',
    'loop_detected',
    "This request came from this Tollgate itself: a provider's base URL points back at Tollgate. Check the providers' base URLs.",
  );

/** The server cut a request whose headers or body did not arrive in time. */
export const requestTimeout = () => new GatewayError(408, 'invalid_request_error', 'request_timeout', 'The request was not received in time.');

export const budgetExceeded = (message: string) => new GatewayError(429, 'insufficient_quota', 'budget_exceeded', message);

export const budgetStoreUnavailable = () =>
  new GatewayError(
    503,
    'api_error',
    'budget_store_unavailable',
    'Budgets cannot be checked right now (their counter store is unreachable); try again shortly.',
    null,
    {
      'retry-after': '1',
    },
  );

export const notFound = (what: string) => new GatewayError(404, 'invalid_request_error', 'not_found', `${what} not found.`);

export const methodNotAllowed = () => new GatewayError(405, 'invalid_request_error', 'method_not_allowed', 'Method not allowed for this path.');

export const upstreamFailed = (message: string, timeout: boolean) => new GatewayError(timeout ? 504 : 502, 'api_error', 'upstream_error', message);

export const serviceUnavailable = (message: string) => new GatewayError(503, 'api_error', 'service_unavailable', message);

/**
 * An upstream 4xx (other than 429) is the caller's problem, so it goes back with the same
 * status and the upstream's type/code, but the message is sanitized: upstream messages can
 * echo credentials ("Incorrect API key provided: sk-…") or internal URLs.
 */
export function fromUpstreamClientError(status: number, upstreamBody: unknown): GatewayError {
  const err = (upstreamBody as { error?: Record<string, unknown> } | null)?.error;
  // Identifiers only: they become the receipt's error_code and a metric label, where any
  // string an upstream invents would be a new series.
  const type = isIdentifier(err?.type) ? err.type : 'invalid_request_error';
  const code = isIdentifier(err?.code) ? err.code : null;
  const param = typeof err?.param === 'string' ? truncate(err.param, 128) : null;
  const message = typeof err?.message === 'string' ? sanitizeUpstreamMessage(err.message) : `Upstream rejected the request (${status}).`;
  return new GatewayError(status, type, code, message, param);
}

const isIdentifier = (v: unknown): v is string => typeof v === 'string' && /^[A-Za-z0-9_.:-]{1,64}$/.test(v);

const SECRET_PATTERNS = [
  /\b(sk|tg|tga|pk|rk)-[A-Za-z0-9_\-*.]{6,}/g, // OpenAI-style and our own keys
  /\bBearer\s+[A-Za-z0-9_\-.=]+/gi,
  // Long opaque tokens (ARK keys are UUID-like, hex blobs, …), with a dotted secret after one
  // (Zhipu's keys are `<id>.<secret>`).
  /\b[A-Za-z0-9_-]{32,}(\.[A-Za-z0-9_-]+)?\b/g,
  /https?:\/\/[^\s'"]+/g, // upstream URLs may carry credentials or internal hosts
];

export function sanitizeUpstreamMessage(message: string): string {
  // Redact before truncating: a cut through a key would leave a prefix no pattern matches.
  let out = message;
  for (const pattern of SECRET_PATTERNS) out = out.replace(pattern, '[redacted]');
  return `Upstream error: ${truncate(out, 500)}`;
}

/**
 * What an upstream's error event in a stream said, sanitized, for the gateway's own error
 * event (the upstream's is not relayed: its message may carry what a 4xx body's may).
 */
export function upstreamStreamError(error: unknown): string {
  const message = (error as { message?: unknown } | null)?.message;
  return typeof message === 'string' && message ? sanitizeUpstreamMessage(message) : 'the upstream sent an error event';
}

function truncate(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

/**
 * Policy when the WAL cannot be appended (disk full, quota, I/O error): the request is
 * refused, never answered without its receipt and never dropped silently. The pipeline
 * answers a GatewayError as is, so this becomes an OpenAI-shaped 503 with Retry-After instead
 * of a generic 500 (a full disk is an outage of this instance, not a bug; a load balancer
 * should retry elsewhere). Found by test/faults/wal-full.test.ts.
 */
export function receiptsUnavailable(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  const code = (err as NodeJS.ErrnoException | null)?.code;
  const reason = code === 'ENOSPC' || code === 'EDQUOT' ? 'its disk is full' : 'it cannot be written';
  const refused = new GatewayError(
    503,
    'api_error',
    'receipts_unavailable',
    `Tollgate cannot record receipts right now (${reason}); try again shortly.`,
    null,
    {
      'retry-after': '5',
    },
  );
  return Object.assign(refused, { cause: err });
}
