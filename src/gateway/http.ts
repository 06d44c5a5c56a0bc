// The gateway's HTTP surface (DESIGN §4) on plain node:http: the proxy path is hot, and a
// framework's routing and body plumbing would be most of the gateway's added latency.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CidrList } from '../net/ip.js';
import { COUNT_TOKENS_PATH, serveCountTokens } from '../protocols/messages/protocol.js';
import type { ClientProtocol } from '../protocols/protocol.js';
import { deleteStoredResponse, storedResponse } from '../protocols/responses/protocol.js';
import type { Receipt } from '../receipts/receipt.js';
import { type Catalog, isRouteAllowed } from '../routing/catalog.js';
import type { Actor } from '../store/admin/audit.js';
import type { ResponseStore } from '../store/responses.js';
import { assertAllowedFrom } from './allowed-cidrs.js';
import { type ApiKeyRecord, assertCredentialsOnce, type KeyAuthenticator } from './auth.js';
import type { AuthThrottle } from './auth-throttle.js';
import { readRequestBody } from './body.js';
import { isConsolePath } from './console.js';
import type { CorsPolicy } from './cors.js';
import { badRequest, GatewayError, methodNotAllowed, notFound, serviceUnavailable } from './errors.js';
import type { RateLimiter } from './limits.js';
import type { Pipeline } from './pipeline.js';
import type { Principal, TokenVerifier } from './tokens.js';
import { parseJsonBody } from './validate.js';

export interface HttpDeps {
  pipeline: Pipeline;
  /** The proxied paths (POST), each with the client protocol spoken there. */
  protocols: ReadonlyMap<string, ClientProtocol>;
  /** Stored Responses API answers (GET/DELETE /v1/responses/{id}). */
  responses: ResponseStore | null;
  keys: KeyAuthenticator;
  tokens: TokenVerifier;
  /** Every credential check here goes through it: refused ones count per client address. */
  authThrottle: AuthThrottle;
  catalog: () => Catalog;
  receipts: { find(id: string): Promise<Receipt | null> };
  jwks: () => object;
  metrics: { contentType: string; render(): Promise<string> };
  ready: () => Promise<{ ok: boolean; checks: Record<string, string> }>;
  maxBodyBytes: number;
  /** The keys' rate limits (the pipeline's): count_tokens is held to the key's RPM too. */
  limiter: RateLimiter;
  /** Peers whose X-Forwarded-For names the client address (for key and token allowlists). */
  trustedProxies: CidrList;
  /** Creates a key for the CLI when this server owns the data dir; `actor` for the audit log. */
  createKey: (input: { team: string; name: string }, actor: Actor) => Promise<{ id: string; teamId: string; secret: string }>;
  /** Records a task verdict for the caller's team (POST /v1/tasks/{taskId}/outcome). */
  recordOutcome: (teamId: string, body: unknown) => Promise<object>;
  /** Mounted at /graphql and /console when present. */
  graphql?: (req: IncomingMessage, res: ServerResponse) => Promise<void>;
  isDraining: () => boolean;
  cors: CorsPolicy;
}

const RECEIPT_PATH = /^\/v1\/receipts\/([0-9a-fA-F-]{36})$/;
const RESPONSE_PATH = /^\/v1\/responses\/([A-Za-z0-9_-]{1,128})$/;
const OUTCOME_PATH = /^\/v1\/tasks\/([^/]{1,256})\/outcome$/;

export function createRequestHandler(deps: HttpDeps) {
  /** Resolves when the request is handled (receipt included): shutdown waits for it. */
  return function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (deps.cors(req, res)) return Promise.resolve(); // a preflight, answered
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    return route(deps, path, req, res).catch((err) => sendError(res, err));
  };
}

async function route(deps: HttpDeps, path: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const method = req.method ?? 'GET';
  const protocol = deps.protocols.get(path);
  if (protocol) {
    if (method !== 'POST') return sendJson(res, 405, protocol.errorBody(methodNotAllowed()));
    if (deps.isDraining()) res.setHeader('connection', 'close');
    // The pipeline checks the credential headers itself: a refusal there leaves a receipt.
    return deps.pipeline.handle(protocol, req, res);
  }
  // Anthropic's token counter: not a model call (no receipt), errors in Anthropic's shape.
  if (path === COUNT_TOKENS_PATH) {
    assertCredentialsOnce(req.rawHeaders);
    const authenticate = (r: IncomingMessage, authorization: string | undefined) => authenticateKey(deps, r, authorization);
    // A window of its own at the key's RPM (Anthropic limits it apart from messages): counting
    // is CPU (up to 4 MB of text a call) and was not limited at all.
    const admit = async (key: ApiKeyRecord) => void (await deps.limiter.admit(`${key.id}:count_tokens`, key.rpmLimit, null));
    return serveCountTokens({ authenticate, admit, catalog: deps.catalog, maxBodyBytes: deps.maxBodyBytes }, req, res);
  }
  // Two credentials a proxy in front and Node may read differently: refused everywhere below.
  assertCredentialsOnce(req.rawHeaders);
  const responseMatch = RESPONSE_PATH.exec(path);
  if (responseMatch) {
    // Reads and deletes of stored responses are not model calls: no receipt (DESIGN §6).
    if (method !== 'GET' && method !== 'DELETE') throw methodNotAllowed();
    const key = await authenticateKey(deps, req);
    const id = responseMatch[1]!;
    const body = method === 'GET' ? await storedResponse(deps.responses, key.teamId, id) : await deleteStoredResponse(deps.responses, key.teamId, id);
    return sendJson(res, 200, body);
  }
  if (path === '/v1/models') {
    if (method !== 'GET') throw methodNotAllowed();
    const key = await authenticateKey(deps, req);
    return sendJson(res, 200, listModels(deps.catalog(), key));
  }
  const receiptMatch = RECEIPT_PATH.exec(path);
  if (receiptMatch || path.startsWith('/v1/receipts/')) {
    if (method !== 'GET') throw methodNotAllowed();
    if (!receiptMatch) throw notFound('Receipt');
    return serveReceipt(deps, receiptMatch[1]!.toLowerCase(), req, res);
  }
  const outcomeMatch = OUTCOME_PATH.exec(path);
  if (outcomeMatch) {
    if (method !== 'POST') throw methodNotAllowed();
    const key = await authenticateKey(deps, req);
    let taskId: string;
    try {
      taskId = decodeURIComponent(outcomeMatch[1]!);
    } catch {
      throw badRequest('Task id is not valid URL encoding.', 'taskId');
    }
    const body = parseJsonBody(await readRequestBody(req, 64 * 1024));
    return sendJson(res, 200, await deps.recordOutcome(key.teamId, { ...body, taskId }));
  }
  // The console (and GraphiQL's assets) go with /graphql: same origin, same port.
  if ((path === '/graphql' || isConsolePath(path)) && deps.graphql) return deps.graphql(req, res);
  switch (path) {
    case '/healthz':
      return sendJson(res, 200, { status: 'ok' });
    case '/readyz': {
      if (deps.isDraining()) return sendJson(res, 503, { status: 'draining' });
      const r = await deps.ready();
      return sendJson(res, r.ok ? 200 : 503, { status: r.ok ? 'ready' : 'not_ready', checks: r.checks });
    }
    case '/metrics': {
      const text = await deps.metrics.render();
      res.writeHead(200, { 'content-type': deps.metrics.contentType });
      res.end(text);
      return;
    }
    case RECEIPT_KEYS_PATH:
      return sendReceiptKeys(deps, res);
    case '/admin/v1/keys':
      return createKeyForCli(deps, req, res);
    default:
      throw notFound(`Path '${path.slice(0, 200)}'`);
  }
}

const RECEIPT_KEYS_PATH = '/.well-known/tollgate/receipt-keys';

function sendReceiptKeys(deps: Pick<HttpDeps, 'jwks'>, res: ServerResponse): void {
  res.setHeader('cache-control', 'public, max-age=300');
  sendJson(res, 200, deps.jwks());
}

/**
 * The admin port (TOLLGATE_ADMIN_PORT): /graphql and /console, under the same CORS and header
 * rules, and the receipt keys, which the console served from this port verifies receipts with.
 */
export function createAdminRequestHandler(deps: Pick<HttpDeps, 'cors' | 'jwks'> & { graphql: (req: IncomingMessage, res: ServerResponse) => Promise<void> }) {
  return async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (deps.cors(req, res)) return;
    try {
      assertCredentialsOnce(req.rawHeaders);
      const path = (req.url ?? '').split('?')[0]!;
      if (path === RECEIPT_KEYS_PATH && (req.method === 'GET' || req.method === 'HEAD')) return sendReceiptKeys(deps, res);
      if (path !== '/graphql' && !isConsolePath(path))
        throw new GatewayError(404, 'invalid_request_error', 'not_found', 'Only /graphql, /console and the receipt keys are served on the admin port.');
      await deps.graphql(req, res);
    } catch (err) {
      sendError(res, err);
    }
  };
}

/**
 * The gateway key of a REST request (401 when none is valid, through the failed-authentication
 * throttle), used from an address its allowlist admits (else 403).
 */
async function authenticateKey(deps: HttpDeps, req: IncomingMessage, authorization = req.headers.authorization): Promise<ApiKeyRecord> {
  const key = await guarded(deps, req, () => deps.keys.authenticate(authorization));
  assertAllowedFrom(key.allowedCidrs, req, deps.trustedProxies);
  return key;
}

/**
 * A credential checked under the failed-authentication throttle. A store that cannot answer
 * the lookup (the config database is down) is a 503, as on the proxy path, not a 500.
 */
function guarded<T>(deps: HttpDeps, req: IncomingMessage, authenticate: () => Promise<T>): Promise<T> {
  return deps.authThrottle.guard(req, authenticate).catch((err: unknown) => {
    throw err instanceof GatewayError ? err : serviceUnavailable('Tollgate cannot verify credentials right now; try again shortly.');
  });
}

function listModels(catalog: Catalog, key: ApiKeyRecord) {
  const data: Array<{ id: string; object: 'model'; created: number; owned_by: string }> = [];
  for (const route of catalog.routes.values()) {
    if (route.targets.length > 0 && isRouteAllowed(key.allowedRoutes, route)) {
      data.push({ id: route.name, object: 'model', created: 0, owned_by: 'tollgate' });
    }
  }
  for (const pin of catalog.knownPins()) {
    const route = catalog.resolve(pin);
    if (route && isRouteAllowed(key.allowedRoutes, route)) {
      data.push({ id: pin, object: 'model', created: 0, owned_by: pin.slice(0, pin.indexOf('/')) });
    }
  }
  return { object: 'list', data };
}

/**
 * A gateway key sees its own team's receipts; admin, analyst and OIDC tokens per their scope.
 * A key or token used from outside its allowlist: 403.
 */
async function serveReceipt(deps: HttpDeps, id: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  // One failed authentication at most per request: the key is tried inside the same guard.
  const teamId = await guarded(deps, req, async () => {
    const principal = await deps.tokens.verify(req.headers.authorization, req);
    if (principal) return principal.teamId;
    const key = await deps.keys.authenticate(req.headers.authorization);
    assertAllowedFrom(key.allowedCidrs, req, deps.trustedProxies);
    return key.teamId;
  });
  const receipt = await deps.receipts.find(id);
  // Another team's receipt reads exactly like a missing one.
  if (!receipt || (teamId !== null && receipt.team_id !== teamId)) throw notFound('Receipt');
  return sendJson(res, 200, receipt);
}

async function createKeyForCli(deps: HttpDeps, req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (req.method !== 'POST') throw methodNotAllowed();
  const principal = await guarded(deps, req, async () => {
    // Read fresh: a key minted by a token revoked a moment ago (on another instance) would outlive it.
    const found: Principal | null = await deps.tokens.verify(req.headers.authorization, req, { fresh: true });
    if (found?.role !== 'ADMIN' || found.teamId) {
      throw new GatewayError(401, 'invalid_request_error', 'invalid_admin_token', 'An admin token is required.');
    }
    return found;
  });
  const body = parseJsonBody(await readRequestBody(req, 64 * 1024));
  if (typeof body.team !== 'string' || !body.team.trim()) throw badRequest("'team' must be a non-empty string.", 'team');
  const name = typeof body.name === 'string' && body.name.trim() ? body.name.trim() : 'cli';
  return sendJson(res, 201, await deps.createKey({ team: body.team.trim(), name }, principal.actor));
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function sendError(res: ServerResponse, err: unknown): void {
  const error = err instanceof GatewayError ? err : new GatewayError(500, 'api_error', 'internal_error', 'Tollgate failed to process the request.');
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(error.status, { 'content-type': 'application/json', ...error.headers });
  res.end(JSON.stringify(error.body()));
}
