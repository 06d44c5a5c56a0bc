// The gateway's HTTP surface (DESIGN §4) on plain node:http: the proxy path is hot, and a
// framework's routing and body plumbing would be most of the gateway's added latency.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Receipt } from '../receipts/receipt.js';
import { isRouteAllowed, type Catalog } from '../routing/catalog.js';
import type { ApiKeyRecord, KeyAuthenticator } from './auth.js';
import { readRequestBody } from './body.js';
import { isConsolePath } from './console.js';
import { GatewayError, badRequest, methodNotAllowed, notFound, serviceUnavailable } from './errors.js';
import type { Pipeline } from './pipeline.js';
import type { Principal, TokenVerifier } from './tokens.js';
import { parseJsonBody } from './validate.js';

export interface HttpDeps {
  pipeline: Pipeline;
  keys: KeyAuthenticator;
  tokens: TokenVerifier;
  catalog: () => Catalog;
  receipts: { find(id: string): Promise<Receipt | null> };
  jwks: () => object;
  metrics: { contentType: string; render(): Promise<string> };
  ready: () => Promise<{ ok: boolean; checks: Record<string, string> }>;
  maxBodyBytes: number;
  /** Creates a key for the CLI when this server owns the data dir. */
  createKey: (input: { team: string; name: string }) => Promise<{ id: string; teamId: string; secret: string }>;
  /** Records a task verdict for the caller's team (POST /v1/tasks/{taskId}/outcome). */
  recordOutcome: (teamId: string, body: unknown) => Promise<object>;
  /** Mounted at /graphql and /console when present. */
  graphql?: (req: IncomingMessage, res: ServerResponse) => void;
  isDraining: () => boolean;
}

const RECEIPT_PATH = /^\/v1\/receipts\/([0-9a-fA-F-]{36})$/;
const OUTCOME_PATH = /^\/v1\/tasks\/([^/]{1,256})\/outcome$/;

export function createRequestHandler(deps: HttpDeps) {
  return function handle(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    route(deps, path, req, res).catch((err) => sendError(res, err));
  };
}

async function route(deps: HttpDeps, path: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const method = req.method ?? 'GET';
  if (path === '/v1/chat/completions' || path === '/v1/embeddings') {
    if (method !== 'POST') throw methodNotAllowed();
    if (deps.isDraining()) res.setHeader('connection', 'close');
    return deps.pipeline.handle(path === '/v1/chat/completions' ? 'chat' : 'embeddings', req, res);
  }
  if (path === '/v1/models') {
    if (method !== 'GET') throw methodNotAllowed();
    const key = await deps.keys.authenticate(req.headers.authorization);
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
    const key = await deps.keys.authenticate(req.headers.authorization);
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
    case '/.well-known/tollgate/receipt-keys':
      res.setHeader('cache-control', 'public, max-age=300');
      return sendJson(res, 200, deps.jwks());
    case '/admin/v1/keys':
      return createKeyForCli(deps, req, res);
    default:
      throw notFound(`Path '${path.slice(0, 200)}'`);
  }
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

/** A gateway key sees its own team's receipts; admin and analyst tokens per their scope. */
async function serveReceipt(deps: HttpDeps, id: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const principal = await deps.tokens.verify(req.headers.authorization);
  let teamId: string | null = null;
  if (principal) teamId = principal.teamId;
  else teamId = (await deps.keys.authenticate(req.headers.authorization)).teamId;
  const receipt = await deps.receipts.find(id);
  // Another team's receipt reads exactly like a missing one.
  if (!receipt || (teamId !== null && receipt.team_id !== teamId)) throw notFound('Receipt');
  return sendJson(res, 200, receipt);
}

async function createKeyForCli(deps: HttpDeps, req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (req.method !== 'POST') throw methodNotAllowed();
  const principal: Principal | null = await deps.tokens.verify(req.headers.authorization);
  if (!principal || principal.role !== 'ADMIN' || principal.teamId) {
    throw new GatewayError(401, 'invalid_request_error', 'invalid_admin_token', 'An admin token is required.');
  }
  const body = parseJsonBody(await readRequestBody(req, 64 * 1024));
  if (typeof body.team !== 'string' || !body.team.trim()) throw badRequest("'team' must be a non-empty string.", 'team');
  const name = typeof body.name === 'string' && body.name.trim() ? body.name.trim() : 'cli';
  return sendJson(res, 201, await deps.createKey({ team: body.team.trim(), name }));
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function sendError(res: ServerResponse, err: unknown): void {
  const error =
    err instanceof GatewayError
      ? err
      : (err as { code?: string })?.code === 'STORE_UNAVAILABLE'
        ? serviceUnavailable('A store Tollgate depends on is unavailable.')
        : new GatewayError(500, 'api_error', 'internal_error', 'Tollgate failed to process the request.');
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(error.status, { 'content-type': 'application/json', ...error.headers });
  res.end(JSON.stringify(error.body()));
}

