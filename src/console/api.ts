// The console's only way to Tollgate: the public GraphQL API, over HTTP for queries and
// graphql-ws for the live stream, on the origin that served the console. The token travels
// in the Authorization header (HTTP) and the connection_init payload (websocket): never in a
// URL, never in a log.
import { type Client, createClient } from 'graphql-ws';

/** The token was refused (wrong, revoked or expired): the console goes back to sign-in. */
export class AuthError extends Error {}

export interface Viewer {
  kind: string;
  role: 'ADMIN' | 'ANALYST';
  teamId: string | null;
}

interface GraphQLError {
  message: string;
  extensions?: { code?: string };
}

export type GraphQLErrorLike = Partial<GraphQLError>;

/**
 * What the server says when it will not serve a subscription as asked (retrying changes
 * nothing). Not TOO_MANY_SUBSCRIPTIONS: the instance's limit frees up; it is retried.
 */
const REFUSALS = new Set(['BAD_USER_INPUT', 'GRAPHQL_VALIDATION_FAILED', 'FORBIDDEN', 'PERSISTED_QUERY_NOT_IN_LIST']);

export const isRefusal = (errors: GraphQLErrorLike[]) => errors.some((e) => REFUSALS.has(e.extensions?.code ?? ''));

/** Past the server's own analytics bound (TOLLGATE_ANALYTICS_TIMEOUT_MS, 10 s by default). */
const REQUEST_TIMEOUT_MS = 60_000;

export async function graphql<T>(token: string, query: string, variables: Record<string, unknown> = {}): Promise<T> {
  let res: Response;
  try {
    res = await fetch('/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json, application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ query, variables }),
      // A request that never ends would hold its view in "loading" for good (auto-refresh included).
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
  } catch (err) {
    if ((err as Error)?.name === 'TimeoutError') throw new Error(`Tollgate did not answer within ${REQUEST_TIMEOUT_MS / 1000} s.`);
    throw new Error('Tollgate is unreachable: is the server running?');
  }
  const body = (await res.json().catch(() => null)) as { data?: T; errors?: GraphQLError[] } | null;
  const errors = body?.errors ?? [];
  if (res.status === 401 || errors.some((e) => e.extensions?.code === 'UNAUTHENTICATED')) {
    throw new AuthError('The token was not accepted.');
  }
  if (errors.length > 0) throw new Error(errors.map((e) => e.message).join('; '));
  if (!body?.data) throw new Error(`GraphQL answered HTTP ${res.status} without data.`);
  return body.data;
}

export const fetchViewer = (token: string) => graphql<{ viewer: Viewer }>(token, 'query Viewer { viewer { kind role teamId } }').then((d) => d.viewer);

export type LiveState = { state: 'connecting' } | { state: 'live' } | { state: 'lost' } | { state: 'reconnecting'; attempt: number; inMs: number };

const FORBIDDEN = 4403;
/**
 * How long a ping may wait for its pong before the socket counts as dead (laptop asleep, a proxy
 * that dropped it): generous, since the pong queues behind the events the server is still sending.
 */
const PONG_TIMEOUT_MS = 15_000;
const isClose = (e: unknown): e is CloseEvent => typeof e === 'object' && e !== null && 'code' in e && 'reason' in e;

/** Reconnect delays: 1 s, 2 s, 4 s … up to 30 s, each with jitter so a wall of screens does not reconnect in step. */
export function backoffMs(retries: number): number {
  const base = Math.min(30_000, 1000 * 2 ** retries);
  return Math.round(base * (0.5 + Math.random() / 2));
}

/**
 * A graphql-ws client that retries forever with backoff (reporting each step through
 * onState), except when the server refuses the token (close 4403): then onAuthRejected.
 */
export function liveClient(token: string, onState: (s: LiveState) => void, onAuthRejected: () => void): Client {
  // graphql-ws sends the pings but waits for their pongs forever: a ping unanswered within
  // PONG_TIMEOUT_MS terminates the socket (then retried with backoff, as any lost connection).
  let pongTimer: ReturnType<typeof setTimeout> | undefined;
  const client = createClient({
    url: `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/graphql`,
    connectionParams: { authorization: `Bearer ${token}` },
    retryAttempts: Infinity,
    // The server answers pings before it acknowledges: a token check that hangs would leave
    // "Connecting…" for good. Past this, the socket is closed and retried like any other.
    connectionAckWaitTimeout: 15_000,
    // A ping every 10 s: a socket that died silently (a laptop asleep, a proxy) is noticed.
    keepAlive: 10_000,
    shouldRetry: (e) => !(isClose(e) && e.code === FORBIDDEN),
    retryWait: async (retries) => {
      const inMs = backoffMs(retries);
      onState({ state: 'reconnecting', attempt: retries + 1, inMs });
      await new Promise((resolve) => setTimeout(resolve, inMs));
    },
    on: {
      ping: (received) => {
        if (!received) pongTimer = setTimeout(() => client.terminate(), PONG_TIMEOUT_MS);
      },
      pong: (received) => {
        if (received) clearTimeout(pongTimer);
      },
      connecting: () => onState({ state: 'connecting' }),
      connected: () => onState({ state: 'live' }),
      closed: (e) => {
        clearTimeout(pongTimer);
        if (isClose(e) && e.code === FORBIDDEN) onAuthRejected();
        // 1000 is our own close (sign-out, a filter change): nothing was lost.
        else if (!(isClose(e) && e.code === 1000)) onState({ state: 'lost' });
      },
    },
  });
  return client;
}
