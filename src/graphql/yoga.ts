// GraphQL over HTTP (GET, POST, SSE subscriptions) with graphql-yoga, and over websockets
// with graphql-ws. The websocket server runs yoga's envelop (`getEnveloped`), so context,
// auth and every limit below apply to websocket operations exactly as to HTTP ones.
// Websocket subscriptions go through the fan-out (src/live/fanout.ts): identical ones share
// one execution per event and each socket's frames are written in batches.
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { costLimitPlugin } from '@escape.tech/graphql-armor-cost-limit';
import { maxAliasesPlugin } from '@escape.tech/graphql-armor-max-aliases';
import { maxDepthPlugin } from '@escape.tech/graphql-armor-max-depth';
import { maxTokensPlugin } from '@escape.tech/graphql-armor-max-tokens';
import { useDisableIntrospection } from '@graphql-yoga/plugin-disable-introspection';
import { usePersistedOperations } from '@graphql-yoga/plugin-persisted-operations';
import { GraphQLError, type ExecutionArgs, type execute as graphqlExecute } from 'graphql';
import { CloseCode, type SubscribePayload } from 'graphql-ws';
import { useServer } from 'graphql-ws/use/ws';
import { createYoga, type Plugin } from 'graphql-yoga';
import { WebSocketServer, type WebSocket } from 'ws';
import { createConsoleHandler, GRAPHIQL_DEFAULT_QUERY, isConsolePath, renderGraphiQLPage } from '../gateway/console.js';
import { WsFanout, type SubscribeFn } from '../live/fanout.js';
import { createContext, type GraphQLContext, type GraphQLServices } from './context.js';
import { buildSchema } from './schema/index.js';

export interface GraphQLOptions {
  production: boolean;
  /** When set, only these operations (hash → query) may run: persisted-operations mode. */
  persistedOperations?: Record<string, string>;
  limits?: Partial<typeof DEFAULT_LIMITS>;
}

export const DEFAULT_LIMITS = {
  depth: 10,
  aliases: 15,
  cost: 5000,
  tokens: 2000,
  batch: 10,
  /** graphql-ws: close with 4408 when connection_init has not come within this. */
  connectionInitMs: 3000,
};

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

export function createGraphQL(services: GraphQLServices, options: GraphQLOptions) {
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  const plugins: Plugin[] = [
    maxDepthPlugin({ n: limits.depth, exposeLimits: true }),
    maxAliasesPlugin({ n: limits.aliases, exposeLimits: true }),
    costLimitPlugin({ maxCost: limits.cost, exposeLimits: true }),
    maxTokensPlugin({ n: limits.tokens }),
  ];
  if (options.production) plugins.push(useDisableIntrospection());
  if (options.persistedOperations) {
    const store = options.persistedOperations;
    plugins.push(usePersistedOperations({ getPersistedOperation: (hash) => store[hash] ?? null, allowArbitraryOperations: false }));
  }

  const yoga = createYoga<{ req?: IncomingMessage } & WsContextExtra>({
    schema: buildSchema(),
    graphqlEndpoint: '/graphql',
    // Served offline: its bundle comes from this process (src/gateway/console.ts), never a CDN.
    graphiql: options.production ? false : { defaultQuery: GRAPHIQL_DEFAULT_QUERY },
    renderGraphiQL: renderGraphiQLPage,
    landingPage: false,
    batching: { limit: limits.batch },
    maskedErrors: true,
    plugins,
    context: async (initial) => {
      const authorization = initial.wsAuthorization ?? initial.request?.headers.get('authorization') ?? undefined;
      return createContext(services, authorization);
    },
  });

  // The console and GraphiQL's assets travel with /graphql (same origin, same port).
  const serveConsole = createConsoleHandler({ graphiql: !options.production });

  /** /graphql, and the console's paths (isConsolePath). */
  function handle(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0]!;
    if (isConsolePath(path)) {
      serveConsole(req, res, path).catch(() => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
        res.end();
      });
      return;
    }
    void yoga(req, res);
  }

  /** graphql-ws on the same server and path, subprotocol graphql-transport-ws. */
  function attachWebSocket(server: Server) {
    const wss = new WebSocketServer({ noServer: true, maxPayload: 1024 * 1024 });
    server.on('upgrade', (req, socket, head) => {
      const path = (req.url ?? '').split('?')[0];
      if (path !== '/graphql') {
        socket.destroy();
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
    });
    const fanout = new WsFanout(services.bus);
    const operations = new WeakMap<ExecutionArgs, WsOperation>();
    const authorizationOf = (params: Record<string, unknown> | undefined) =>
      typeof params?.authorization === 'string' ? params.authorization : undefined;

    const disposable = useServer(
      {
        connectionInitWaitTimeout: limits.connectionInitMs,
        // A bad or missing token: close 4403 (Forbidden) right at connection_init.
        onConnect: async (ctx) => (await services.tokens.verify(authorizationOf(ctx.connectionParams))) !== null,
        onSubscribe: async (ctx, id, payload: SubscribePayload) => {
          const authorization = authorizationOf(ctx.connectionParams);
          // The token is checked again on every subscribe: a revoked token stops here.
          if ((await services.tokens.verify(authorization)) === null) {
            ctx.extra.socket.close(CloseCode.Forbidden, 'Forbidden');
            return [new GraphQLError('Token no longer valid.', { extensions: { code: 'UNAUTHENTICATED' } })];
          }
          const { schema, execute, subscribe, contextFactory, parse, validate } = yoga.getEnveloped({
            ...ctx,
            req: ctx.extra.request,
            socket: ctx.extra.socket,
            params: payload,
            wsAuthorization: authorization,
          });
          let document;
          try {
            document = parse(payload.query);
          } catch (err) {
            return [err instanceof GraphQLError ? err : new GraphQLError('Invalid query.')];
          }
          const errors = validate(schema, document);
          if (errors.length > 0) return errors;
          // yoga's `context` option above (createContext) makes it a GraphQLContext; envelop's type does not know.
          const contextValue = (await contextFactory()) as unknown as GraphQLContext;
          const args: ExecutionArgs = { schema, document, operationName: payload.operationName, variableValues: payload.variables, contextValue };
          operations.set(args, { execute, subscribe: subscribe as SubscribeFn, socket: ctx.extra.socket, id, key: fanoutKey(payload, contextValue) });
          return args;
        },
        execute: (args: ExecutionArgs) => operations.get(args)!.execute(args),
        subscribe: (args: ExecutionArgs) => {
          const op = operations.get(args)!;
          return fanout.subscribe({ key: op.key, args, subscribe: op.subscribe, socket: op.socket, id: op.id });
        },
      },
      wss,
    );
    return {
      wss,
      close: async () => {
        for (const client of wss.clients) client.terminate();
        await disposable.dispose();
      },
    };
  }

  return { yoga, handle, attachWebSocket };
}

export type GraphQLServer = ReturnType<typeof createGraphQL>;
