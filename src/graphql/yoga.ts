// GraphQL over HTTP (GET, POST, SSE subscriptions) with graphql-yoga, and over websockets
// with graphql-ws. The websocket server runs yoga's envelop (`getEnveloped`), so context,
// auth and every limit below apply to websocket operations exactly as to HTTP ones.
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { costLimitPlugin } from '@escape.tech/graphql-armor-cost-limit';
import { maxAliasesPlugin } from '@escape.tech/graphql-armor-max-aliases';
import { maxDepthPlugin } from '@escape.tech/graphql-armor-max-depth';
import { maxTokensPlugin } from '@escape.tech/graphql-armor-max-tokens';
import { useDisableIntrospection } from '@graphql-yoga/plugin-disable-introspection';
import { usePersistedOperations } from '@graphql-yoga/plugin-persisted-operations';
import { GraphQLError, type ExecutionArgs } from 'graphql';
import { CloseCode, type SubscribePayload } from 'graphql-ws';
import { useServer } from 'graphql-ws/use/ws';
import { createYoga, type Plugin } from 'graphql-yoga';
import { WebSocketServer } from 'ws';
import { createContext, type GraphQLServices } from './context.js';
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
    graphiql: !options.production,
    landingPage: false,
    batching: { limit: limits.batch },
    maskedErrors: true,
    plugins,
    context: async (initial) => {
      const authorization = initial.wsAuthorization ?? initial.request?.headers.get('authorization') ?? undefined;
      return createContext(services, authorization);
    },
  });

  function handle(req: IncomingMessage, res: ServerResponse): void {
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
    const authorizationOf = (params: Record<string, unknown> | undefined) =>
      typeof params?.authorization === 'string' ? params.authorization : undefined;

    const disposable = useServer(
      {
        connectionInitWaitTimeout: limits.connectionInitMs,
        // A bad or missing token: close 4403 (Forbidden) right at connection_init.
        onConnect: async (ctx) => (await services.tokens.verify(authorizationOf(ctx.connectionParams))) !== null,
        onSubscribe: async (ctx, _id, payload: SubscribePayload) => {
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
          const args: ExecutionArgs = {
            schema,
            document,
            operationName: payload.operationName,
            variableValues: payload.variables,
            contextValue: await contextFactory(),
            rootValue: { execute, subscribe },
          };
          return args;
        },
        execute: (args: ExecutionArgs) => (args.rootValue as { execute: typeof import('graphql').execute }).execute(args),
        subscribe: (args: ExecutionArgs) => (args.rootValue as { subscribe: typeof import('graphql').subscribe }).subscribe(args),
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
