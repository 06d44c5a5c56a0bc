// Subscriptions served over HTTP (server-sent events, multipart) hold their token for as long
// as they stream, as websockets do: checked again every `reverifyMs`, a revoked or expired token
// ends its streams; and shutdown ends them all, since a stream never finishes by itself and
// would hold the drain until its timeout (receipts are flushed only after it). A client that
// stops reading (its stream has not taken an event for `stallMs`) is ended too, its connection
// closed: the stream held its 1,000 undelivered events and the socket for good (a websocket's
// rule is its unsent bytes; here the write waits for the socket, so time is what shows).
import type { IncomingMessage } from 'node:http';
import type { Plugin } from 'graphql-yoga';
import { GatewayError } from '../gateway/errors.js';
import type { Principal } from '../gateway/tokens.js';

type Verify = (authorization: string | undefined, req: IncomingMessage | undefined) => Promise<Principal | null>;

interface OpenStream {
  authorization: string | undefined;
  req: IncomingMessage | undefined;
  end: () => void;
  /** Since when it has not asked for an event (opened, or the last one handed out); null while it waits for one. */
  stalledSince: () => number | null;
}

export class HttpSubscriptions {
  private readonly open = new Set<OpenStream>();
  private timer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(
    private readonly verify: Verify,
    private readonly reverifyMs: number,
    private readonly stallMs = 30_000,
  ) {}

  /** The envelop plugin: wraps each HTTP subscription's stream so that it can be ended. */
  plugin(): Plugin {
    return {
      onSubscribe: ({ args }) => {
        const context = args.contextValue as { socket?: unknown; request?: Request; req?: IncomingMessage };
        if (context.socket) return; // a websocket's: its socket is checked and closed instead
        return {
          onSubscribeResult: ({ result, setResult }) => {
            if (!isAsyncIterable(result)) return;
            const authorization = context.request?.headers.get('authorization') ?? undefined;
            setResult(this.track(result, authorization, context.req));
          },
        };
      },
    };
  }

  /** Ends every stream (shutdown), and any opened from now on at once: each client gets its end. */
  endAll(): void {
    this.closed = true;
    for (const stream of [...this.open]) stream.end();
  }

  get size(): number {
    return this.open.size;
  }

  private track<T>(source: AsyncIterable<T>, authorization: string | undefined, req: IncomingMessage | undefined): AsyncIterableIterator<T> {
    const iterator = source[Symbol.asyncIterator]();
    const done: IteratorReturnResult<undefined> = { done: true, value: undefined };
    let ended = this.closed;
    // The read waiting for the source, if any: end() answers it as done. One per read, so
    // nothing of what earlier reads returned stays reachable (a race against one long-lived
    // promise would keep every event until the stream ended).
    let waiting: ((r: IteratorResult<T>) => void) | null = null;
    let idleSince = performance.now();
    const stream: OpenStream = {
      authorization,
      req,
      stalledSince: () => (waiting === null ? idleSince : null),
      end: () => {
        if (ended) return;
        ended = true;
        this.forget(stream);
        waiting?.(done);
        waiting = null;
        void iterator.return?.();
      },
    };
    if (ended) void iterator.return?.();
    else {
      this.open.add(stream);
      this.timer ??= setInterval(() => this.reverify(), this.reverifyMs).unref();
    }
    return {
      next: () => {
        if (ended) return Promise.resolve(done);
        return new Promise<IteratorResult<T>>((resolve, reject) => {
          waiting = resolve;
          iterator.next().then(
            (result) => {
              waiting = null;
              idleSince = performance.now();
              // The source is over (yoga does not always call return() then): not checked any more.
              if (result.done) this.forget(stream);
              resolve(result);
            },
            (err: unknown) => {
              waiting = null;
              this.forget(stream);
              reject(err);
            },
          );
        });
      },
      return: async () => {
        stream.end();
        return done;
      },
      throw: async (err: unknown) => {
        stream.end();
        throw err;
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
  }

  private forget(stream: OpenStream): void {
    this.open.delete(stream);
    if (this.open.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  private reverify(): void {
    const now = performance.now();
    for (const stream of [...this.open]) {
      const since = stream.stalledSince();
      if (since !== null && now - since > this.stallMs) {
        stream.end();
        stream.req?.socket.destroy();
        continue;
      }
      void this.verify(stream.authorization, stream.req).then(
        (principal) => principal === null && stream.end(),
        (err: unknown) => err instanceof GatewayError && stream.end(),
      );
    }
  }
}

function isAsyncIterable(value: unknown): value is AsyncIterable<unknown> {
  return typeof value === 'object' && value !== null && Symbol.asyncIterator in value;
}
