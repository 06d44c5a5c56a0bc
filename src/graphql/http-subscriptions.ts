// Subscriptions served over HTTP (server-sent events, multipart) hold their token for as long
// as they stream, as websockets do: checked again every `reverifyMs`, a revoked or expired token
// ends its streams; and shutdown ends them all, since a stream never finishes by itself and
// would hold the drain until its timeout (receipts are flushed only after it).
import type { IncomingMessage } from 'node:http';
import type { Plugin } from 'graphql-yoga';
import { GatewayError } from '../gateway/errors.js';
import type { Principal } from '../gateway/tokens.js';

type Verify = (authorization: string | undefined, req: IncomingMessage | undefined) => Promise<Principal | null>;

interface OpenStream {
  authorization: string | undefined;
  req: IncomingMessage | undefined;
  end: () => void;
}

export class HttpSubscriptions {
  private readonly open = new Set<OpenStream>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly verify: Verify,
    private readonly reverifyMs: number,
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

  /** Ends every stream (shutdown): each client gets its stream's end, then the response ends. */
  endAll(): void {
    for (const stream of [...this.open]) stream.end();
  }

  get size(): number {
    return this.open.size;
  }

  private track<T>(source: AsyncIterable<T>, authorization: string | undefined, req: IncomingMessage | undefined): AsyncIterableIterator<T> {
    const iterator = source[Symbol.asyncIterator]();
    const done: IteratorReturnResult<undefined> = { done: true, value: undefined };
    let ended = false;
    let wake: () => void = () => undefined;
    const endedSignal = new Promise<IteratorResult<T>>((resolve) => (wake = () => resolve(done)));
    const stream: OpenStream = {
      authorization,
      req,
      end: () => {
        if (ended) return;
        ended = true;
        this.forget(stream);
        wake();
        void iterator.return?.();
      },
    };
    this.open.add(stream);
    this.timer ??= setInterval(() => this.reverify(), this.reverifyMs).unref();
    return {
      next: () => (ended ? Promise.resolve(done) : Promise.race([iterator.next(), endedSignal])),
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
    for (const stream of this.open) {
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
