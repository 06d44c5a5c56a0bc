// The request side of Tollgate's HTTP servers (main port and admin port): a client must send
// its headers within TOLLGATE_HEADERS_TIMEOUT_MS and its whole request within
// TOLLGATE_REQUEST_TIMEOUT_MS (Node answers 408 and closes; slowloris). Responses are not
// bounded here: a long stream goes on as long as the upstream does.
//
// Node stops enforcing those timeouts once server.close() is called, so at shutdown `drain`
// cuts the connections whose request is still arriving (nothing has been done for them yet)
// instead of waiting for them, and waits only for requests that arrived whole.
import http from 'node:http';
import type { Socket } from 'node:net';

export interface InboundTimeouts {
  headersMs: number;
  requestMs: number;
}

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => Promise<void> | void;

/** How a request cut for time shows on its socket (what body.ts turns into a 408). */
const REQUEST_TIMEOUT = 'ERR_HTTP_REQUEST_TIMEOUT';

export class InboundServer {
  readonly server: http.Server;
  /** Per connection: its current request, null before the first has arrived. */
  private readonly current = new Map<Socket, { req: http.IncomingMessage; res: http.ServerResponse } | null>();
  /** Handlers still running (a request cut at shutdown still writes its receipt). */
  private readonly handling = new Set<Promise<void>>();

  constructor(timeouts: InboundTimeouts, handler: Handler) {
    this.server = http.createServer(
      {
        keepAliveTimeout: 65_000,
        headersTimeout: timeouts.headersMs,
        requestTimeout: timeouts.requestMs,
        // How often Node looks for requests past those timeouts (its default is 30 s).
        connectionsCheckingInterval: Math.max(50, Math.min(1_000, Math.floor(timeouts.headersMs / 4))),
      },
      (req, res) => {
        this.current.set(req.socket, { req, res });
        const handled = Promise.resolve(handler(req, res)).finally(() => this.handling.delete(handled));
        this.handling.add(handled);
      },
    );
    this.server.on('connection', (socket: Socket) => {
      // The proxy's latency budget is sub-millisecond: never wait for Nagle.
      socket.setNoDelay(true);
      this.current.set(socket, null);
      socket.once('close', () => this.current.delete(socket));
    });
  }

  listen(port: number, host: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
  }

  /**
   * Stops accepting, closes idle connections and those whose request has not fully arrived,
   * and resolves once every request that did arrive is answered and handled, or at `deadlineMs`.
   */
  async drain(deadlineMs: number): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    // Websockets were closed before (app.stop). A request that arrived whole is answered, and
    // its connection closed after the answer (server.close() does not close it when it goes idle).
    for (const [socket, current] of this.current) {
      const arriving = current === null || !current.req.complete || current.res.writableFinished;
      if (arriving) {
        socket.destroy(Object.assign(new Error('shutting down: the request had not arrived'), { code: REQUEST_TIMEOUT }));
        continue;
      }
      if (!current.res.headersSent) current.res.shouldKeepAlive = false;
      current.res.once('finish', () => socket.end());
    }
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, deadlineMs)));
    await Promise.race([closed.then(() => Promise.all(this.handling)), deadline]);
    clearTimeout(timer);
  }

  /** Cuts every connection left (after drain, or at once). */
  closeAll(): void {
    this.server.close();
    this.server.closeAllConnections();
  }
}

/** Whether the server cut this request because it did not arrive in time (or at shutdown). */
export function cutForTime(req: http.IncomingMessage): boolean {
  return (req.socket?.errored as { code?: string } | null | undefined)?.code === REQUEST_TIMEOUT;
}
