// GraphQL over HTTP (GET, POST, SSE subscriptions) with graphql-yoga, and over websockets
// with graphql-ws. The websocket server runs yoga's envelop (`getEnveloped`), so context,
// auth and every limit below apply to websocket operations exactly as to HTTP ones.
// Websocket subscriptions go through the fan-out (src/live/fanout.ts): identical ones share
// one execution per event and each socket's frames are written in batches.
// Bounded per client: request bodies (TOLLGATE_MAX_BODY_BYTES, 413), operations open on one
// socket (TOLLGATE_WS_MAX_SUBSCRIPTIONS), a socket's unsent bytes (TOLLGATE_WS_MAX_BUFFER_BYTES,
// then 1008 "slow consumer"), and failed token checks per address (429, like the proxy).
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { costLimitPlugin } from '@escape.tech/graphql-armor-cost-limit';
import { maxAliasesPlugin } from '@escape.tech/graphql-armor-max-aliases';
import { maxDepthPlugin } from '@escape.tech/graphql-armor-max-depth';
import { maxTokensPlugin } from '@escape.tech/graphql-armor-max-tokens';
import { useDisableIntrospection } from '@graphql-yoga/plugin-disable-introspection';
import { usePersistedOperations } from '@graphql-yoga/plugin-persisted-operations';
import { type ExecutionArgs, GraphQLError, getOperationAST, type execute as graphqlExecute } from 'graphql';
import { CloseCode, type SubscribePayload } from 'graphql-ws';
import { useServer } from 'graphql-ws/use/ws';
import { createYoga, maskError, type Plugin } from 'graphql-yoga';
import { type WebSocket, WebSocketServer } from 'ws';
import { DEFAULT_PAGE as RECEIPTS_DEFAULT_PAGE } from '../analytics/receipts.js';
import type { AuthThrottle } from '../gateway/auth-throttle.js';
import { readRequestBody } from '../gateway/body.js';
import { createConsoleHandler, GRAPHIQL_DEFAULT_QUERY, GRAPHIQL_PAGE_HEADERS, isConsolePath, renderGraphiQLPage } from '../gateway/console.js';
import { GatewayError } from '../gateway/errors.js';
import { type SubscribeFn, WsFanout } from '../live/fanout.js';
import { AUDIT_DEFAULT_PAGE } from '../store/admin/audit-log.js';
import { createContext, type GraphQLContext, type GraphQLServices } from './context.js';
import { costLimitWithVariables } from './cost.js';
import { HttpSubscriptions } from './http-subscriptions.js';
import { compiledQueries } from './jit.js';
import { noRepeatedListRelations } from './relation-cycles.js';
import { ANALYTICS_QUERY_FIELDS } from './schema/analytics.js';
import { buildSchema } from './schema/index.js';
import { type Arrival, OperationArrivals } from './ws-operation-ids.js';

export interface GraphQLOptions {
  production: boolean;
  /** When set, only these operations (hash → query) may run: persisted-operations mode. */
  persistedOperations?: Record<string, string>;
  limits?: Partial<typeof DEFAULT_LIMITS>;
  /** Counts refused tokens per client address and refuses addresses over the limit. */
  authThrottle?: AuthThrottle;
  /** Called when a websocket is closed for falling behind (for /metrics). */
  onSlowConsumer?: () => void;
}

export const DEFAULT_LIMITS = {
  depth: 10,
  aliases: 15,
  /**
   * graphql-armor's cost: an object 2, a scalar 1, ×1.5 a level, × a list's `first` (literal or
   * variable): the largest page of receipts (500) with every field is ~81,000; aliases or
   * several lists multiplying it are refused.
   */
  cost: 100_000,
  tokens: 2000,
  batch: 10,
  /** graphql-ws: close with 4408 when connection_init has not come within this. */
  connectionInitMs: 3000,
  /** Request body bytes (413 beyond). */
  bodyBytes: 4 * 1024 * 1024,
  /** graphql-ws: operations open at once on one socket; the next one gets an error. */
  wsSubscriptions: 100,
  /** graphql-ws: bytes not yet sent to one socket before it is closed as a slow consumer. */
  wsBufferBytes: 4 * 1024 * 1024,
  /** graphql-ws: every open socket's token is verified again this often (revoked, expired: 4403). */
  wsReverifyMs: 5000,
  /** Subscriptions over HTTP (SSE): a client that has not read the next event within this is cut. */
  sseStallMs: 30_000,
};

/** graphql-ws close code for a connection refused by the failed-authentication throttle. */
const TOO_MANY_FAILED_AUTHENTICATIONS = 4429;
/** How long a closing websocket may take to finish its close handshake before it is cut. */
const WS_CLOSE_TIMEOUT_MS = 5000;

/** A refusal before yoga runs, in GraphQL's response shape (`extensions.code` upper-cased). */
function refuse(res: ServerResponse, err: unknown): void {
  if (!(err instanceof GatewayError) || res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify({ errors: [{ message: err.message, extensions: { code: (err.code ?? err.type).toUpperCase() } }] });
  // The rest of an oversized or late body is not worth reading.
  const close = err.status === 413 || err.status === 408 ? { connection: 'close' } : {};
  res.writeHead(err.status, { 'content-type': 'application/json', ...err.headers, ...close });
  res.end(body);
}

interface WsContextExtra {
  wsAuthorization?: string;
}

/** What graphql-ws's execute/subscribe hooks need beyond the execution arguments. */
interface WsOperation {
  execute: typeof graphqlExecute;
  subscribe: SubscribeFn;
  socket: WebSocket;
  id: string;
  /** Subscriptions with the same key share one execution (see fanoutKey). */
  key: string;
  arrival: Arrival;
}

/**
 * Everything a subscription's results depend on: the operation text, its name and variables,
 * and the principal's role and team. Auth scopes (src/graphql/builder.ts) and the forced team
 * filter (schema/live.ts) read nothing else of the principal, so subscriptions with the same
 * key get the same events and the same bytes, whichever token each came with (each token is
 * still verified at connection_init and at every subscribe). If scopes ever read more of the
 * principal, add it here.
 */
function fanoutKey(payload: SubscribePayload, ctx: GraphQLContext): string {
  const p = ctx.principal;
  return JSON.stringify([payload.query, payload.operationName ?? null, payload.variables ?? null, p?.kind ?? null, p?.role ?? null, p?.teamId ?? null]);
}

const SUGGESTION = /\s*Did you mean [\s\S]*\?$/;

/**
 * Without graphql-js's "Did you mean …?" (fields, arguments, types, enum values): in production,
 * where introspection is off, suggestions would give the schema away name by name. Validation
 * errors (HTTP and websockets) lose them in blockSuggestions, errors from variables (execution)
 * in yoga's error masking. Not graphql-armor's block-field-suggestions: it misses enum values
 * ("Did you mean the enum value …?") and variables.
 */
function withoutSuggestions<E extends Error>(error: E): E {
  const message = error.message.replace(SUGGESTION, '');
  if (message !== error.message) error.message = message;
  return error;
}

function blockSuggestions(): Plugin {
  return {
    onValidate:
      () =>
      ({ result, setResult }) => {
        if (result.length > 0) setResult(result.map(withoutSuggestions));
      },
  };
}

/**
 * The query a websocket operation names in persisted-operations mode (as yoga's plugin reads
 * it over HTTP: `extensions.persistedQuery.sha256Hash`), or the error yoga's plugin gives.
 */
function persistedQuery(payload: SubscribePayload, store: Record<string, string>): string | GraphQLError {
  if (payload.query) return new GraphQLError('PersistedQueryOnly', { extensions: { code: 'CANNOT_SEND_PQ_ID_AND_BODY' } });
  const named = (payload.extensions?.persistedQuery ?? null) as { version?: unknown; sha256Hash?: unknown } | null;
  const id = named?.version === 1 && typeof named.sha256Hash === 'string' ? named.sha256Hash : null;
  if (id === null) return new GraphQLError('PersistedQueryKeyNotFound', { extensions: { code: 'PERSISTED_QUERY_ID_REQUIRED' } });
  return Object.hasOwn(store, id) ? store[id] : new GraphQLError('PersistedQueryNotFound', { extensions: { code: 'PERSISTED_QUERY_NOT_IN_LIST' } });
}

export function createGraphQL(services: GraphQLServices, options: GraphQLOptions) {
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  const plugins: Plugin[] = [
    maxDepthPlugin({ n: limits.depth, exposeLimits: true }),
    maxAliasesPlugin({ n: limits.aliases, exposeLimits: true }),
    costLimitPlugin({ maxCost: limits.cost, exposeLimits: true }),
    costLimitWithVariables(limits.cost, { receipts: RECEIPTS_DEFAULT_PAGE, auditLog: AUDIT_DEFAULT_PAGE }),
    noRepeatedListRelations(),
    maxTokensPlugin({ n: limits.tokens }),
    compiledQueries({ fields: ANALYTICS_QUERY_FIELDS, mayCompile: (context) => (context as GraphQLContext).principal !== null }),
  ];
  // Subscriptions over HTTP: their token checked again as a websocket's is, and ended at shutdown.
  const httpSubscriptions = new HttpSubscriptions((authorization, req) => services.tokens.verify(authorization, req), limits.wsReverifyMs, limits.sseStallMs);
  plugins.push(httpSubscriptions.plugin());
  if (options.production) plugins.push(useDisableIntrospection(), blockSuggestions());
  const persisted = options.persistedOperations;
  if (persisted) {
    plugins.push(
      usePersistedOperations({ getPersistedOperation: (hash) => (Object.hasOwn(persisted, hash) ? persisted[hash] : null), allowArbitraryOperations: false }),
    );
  }

  const yoga = createYoga<{ req?: IncomingMessage } & WsContextExtra>({
    schema: buildSchema(),
    graphqlEndpoint: '/graphql',
    // Served offline: its bundle comes from this process (src/gateway/console.ts), never a CDN.
    graphiql: options.production ? false : { defaultQuery: GRAPHIQL_DEFAULT_QUERY },
    renderGraphiQL: renderGraphiQLPage,
    landingPage: false,
    // CORS is one policy for every endpoint (src/gateway/cors.ts); yoga's default reflects
    // any origin with credentials.
    cors: false,
    batching: { limit: limits.batch },
    // handle() reads the body within limits.bodyBytes before yoga sees it; yoga's own limit
    // would pipe every body through a TransformStream again (~25 µs a request, more cold).
    maxRequestBodySize: false,
    maskedErrors: options.production ? { maskError: (error, message, isDev) => withoutSuggestions(maskError(error, message, isDev)) } : true,
    plugins,
    context: async (initial) => {
      const authorization = initial.wsAuthorization ?? initial.request?.headers.get('authorization') ?? undefined;
      const context = await createContext(services, authorization, initial.req);
      // A token sent over HTTP and refused counts against its address (websockets count at connection_init).
      if (authorization && !context.principal && !initial.wsAuthorization && initial.req) options.authThrottle?.fail(initial.req);
      return context;
    },
  });

  // The console and GraphiQL's assets travel with /graphql (same origin, same port).
  const serveConsole = createConsoleHandler({ graphiql: !options.production });

  /**
   * /graphql, and the console's paths (isConsolePath). GraphQL bodies are read within the
   * size limit before yoga (which would take 25 MB).
   */
  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0]!;
    if (isConsolePath(path)) {
      await serveConsole(req, res, path).catch(() => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
        res.end();
      });
      return;
    }
    try {
      options.authThrottle?.check(req);
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        // whatwg-node takes a body already read from `req.body`.
        (req as IncomingMessage & { body?: Buffer }).body = await readRequestBody(req, limits.bodyBytes);
      }
    } catch (err) {
      return refuse(res, err);
    }
    // A browser's GET is GraphiQL's page (yoga renders it): sent with the console's protections.
    if (!options.production && req.method === 'GET' && req.headers.accept?.includes('text/html')) {
      for (const [name, value] of Object.entries(GRAPHIQL_PAGE_HEADERS)) res.setHeader(name, value);
    }
    await yoga(req, res);
  }

  /** graphql-ws on the same server and path, subprotocol graphql-transport-ws. */
  function attachWebSocket(server: Server) {
    // A peer that stopped reading never completes a close handshake: what ws still holds for it
    // (its close frame behind everything unsent) goes after closeTimeout, not ws's default 30 s.
    // (ws ≥ 8.19 takes closeTimeout; @types/ws does not list it yet.)
    const wsOptions = { noServer: true, maxPayload: 1024 * 1024, closeTimeout: WS_CLOSE_TIMEOUT_MS };
    const wss = new WebSocketServer(wsOptions);
    server.on('upgrade', (req, socket, head) => {
      const path = (req.url ?? '').split('?')[0];
      if (path !== '/graphql') {
        socket.destroy();
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
    });
    const fanout = new WsFanout(services.bus, { maxBufferedBytes: limits.wsBufferBytes, onSlowConsumer: options.onSlowConsumer ?? (() => undefined) });
    // graphql-ws answers a ping with a pong repeating its payload (up to maxPayload), before
    // connection_init too, and ws answers control pings: a client that sends them and reads
    // nothing would have the server hold every answer. Each message it sends checks the limit.
    wss.on('connection', (socket: WebSocket) => {
      const check = () => fanout.checkBuffer(socket);
      socket.on('message', check);
      socket.on('ping', check);
    });
    const operations = new WeakMap<ExecutionArgs, WsOperation>();
    const arrivals = new OperationArrivals();
    const authorizationOf = (params: Record<string, unknown> | undefined) => (typeof params?.authorization === 'string' ? params.authorization : undefined);
    const principalOf = (params: Record<string, unknown> | undefined, req: IncomingMessage) =>
      services.tokens.verify(authorizationOf(params), req).catch((err: unknown) => {
        if (err instanceof GatewayError && err.code === 'ip_not_allowed') return null;
        throw err;
      });

    // Sockets past connection_init, with what their token is verified from. A token revoked
    // or expired since closes its socket within wsReverifyMs, live subscriptions included.
    const open = new Map<WebSocket, { params: Record<string, unknown> | undefined; req: IncomingMessage }>();
    const reverify = setInterval(() => {
      for (const [socket, { params, req }] of open) {
        void principalOf(params, req).then(
          (principal) => principal === null && socket.close(CloseCode.Forbidden, 'Token no longer valid'),
          (err: unknown) => err instanceof GatewayError && socket.close(CloseCode.Forbidden, 'Token no longer valid'),
        );
      }
    }, limits.wsReverifyMs);
    reverify.unref();

    const disposable = useServer(
      {
        connectionInitWaitTimeout: limits.connectionInitMs,
        // A bad or missing token, or one used from outside its allowlist: close 4403 (Forbidden)
        // right at connection_init; from an address over the failed-authentication limit: 4429,
        // whatever the token.
        onConnect: async (ctx) => {
          const throttle = options.authThrottle;
          try {
            throttle?.check(ctx.extra.request);
          } catch (err) {
            ctx.extra.socket.close(TOO_MANY_FAILED_AUTHENTICATIONS, err instanceof Error ? err.message : 'Too many failed authentications');
            return false;
          }
          const principal = await principalOf(ctx.connectionParams, ctx.extra.request);
          const { socket } = ctx.extra;
          if (!principal) throttle?.fail(ctx.extra.request);
          else if (socket.readyState === socket.OPEN) {
            // (A socket that closed while its token was checked has had its 'close' already.)
            open.set(socket, { params: ctx.connectionParams, req: ctx.extra.request });
            socket.once('close', () => open.delete(socket));
          }
          return principal !== null;
        },
        onSubscribe: async (ctx, id, payload: SubscribePayload) => {
          const arrival = arrivals.arrive(ctx.extra.socket, id);
          const refuse = (errors: readonly GraphQLError[]) => {
            arrivals.settle(arrival);
            return errors;
          };
          // graphql-ws has already entered this one in ctx.subscriptions.
          if (Object.keys(ctx.subscriptions).length > limits.wsSubscriptions) {
            return refuse([
              new GraphQLError(`Too many operations on this connection (at most ${limits.wsSubscriptions}); complete one first.`, {
                extensions: { code: 'TOO_MANY_SUBSCRIPTIONS' },
              }),
            ]);
          }
          const authorization = authorizationOf(ctx.connectionParams);
          // The token is checked again on every subscribe: a revoked token stops here.
          if ((await principalOf(ctx.connectionParams, ctx.extra.request)) === null) {
            ctx.extra.socket.close(CloseCode.Forbidden, 'Forbidden');
            return refuse([new GraphQLError('Token no longer valid.', { extensions: { code: 'UNAUTHENTICATED' } })]);
          }
          // Persisted-operations mode holds here too (yoga's plugin sees only HTTP requests).
          if (persisted) {
            const query = persistedQuery(payload, persisted);
            if (query instanceof GraphQLError) return refuse([query]);
            payload = { ...payload, query };
          }
          const { schema, execute, subscribe, contextFactory, parse, validate } = yoga.getEnveloped({
            ...ctx,
            req: ctx.extra.request,
            socket: ctx.extra.socket,
            params: payload,
            wsAuthorization: authorization,
          });
          let document: ReturnType<typeof parse>;
          try {
            document = parse(payload.query);
          } catch (err) {
            return refuse([err instanceof GraphQLError ? err : new GraphQLError('Invalid query.')]);
          }
          const errors = validate(schema, document);
          if (errors.length > 0) return refuse(errors);
          if (!getOperationAST(document, payload.operationName)) return refuse([new GraphQLError('Unable to identify operation.')]);
          // yoga's `context` option above (createContext) makes it a GraphQLContext; envelop's type does not know.
          const contextValue = (await contextFactory()) as unknown as GraphQLContext;
          const args: ExecutionArgs = { schema, document, operationName: payload.operationName, variableValues: payload.variables, contextValue };
          operations.set(args, { execute, subscribe: subscribe as SubscribeFn, socket: ctx.extra.socket, id, key: fanoutKey(payload, contextValue), arrival });
          return args;
        },
        // What graphql-ws writes itself (query results, subscriptions that run on their own)
        // counts against the socket's byte limit too: checked before each result.
        onNext: (ctx) => void fanout.checkBuffer(ctx.extra.socket),
        execute: (args: ExecutionArgs) => {
          const op = operations.get(args)!;
          arrivals.settle(op.arrival);
          return op.execute(args);
        },
        subscribe: async (args: ExecutionArgs) => {
          const op = operations.get(args)!;
          let result: Awaited<ReturnType<SubscribeFn>>;
          try {
            result = await fanout.subscribe({ key: op.key, args, subscribe: op.subscribe, socket: op.socket, id: op.id });
          } finally {
            if (!arrivals.settle(op.arrival)) op.socket.close(CloseCode.SubscriberAlreadyExists, `Subscriber for ${op.id} already exists`);
          }
          if (op.socket.readyState === op.socket.OPEN) return result;
          // Superseded by a newer subscribe with its id (ws-operation-ids.ts), or its socket is
          // gone: graphql-ws would keep it in the newer one's place, so it ends here.
          if (Symbol.asyncIterator in result) void result[Symbol.asyncIterator]().return?.();
          return { errors: [new GraphQLError(`Subscriber for ${op.id} already exists.`)] };
        },
      },
      wss,
    );
    return {
      wss,
      /** Bytes waiting to be sent to websocket subscribers (for /metrics). */
      bufferedBytes: () => fanout.bufferedBytes,
      close: async () => {
        clearInterval(reverify);
        for (const client of wss.clients) client.terminate();
        await disposable.dispose();
      },
    };
  }

  return { yoga, handle, attachWebSocket, httpSubscriptions };
}

export type GraphQLServer = ReturnType<typeof createGraphQL>;
