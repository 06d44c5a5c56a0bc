// A loopback TCP fault proxy (test-only): put it between Tollgate and a store (ClickHouse's
// HTTP endpoint, PostgreSQL, Redis) and break the link on purpose.
//
//   pass      forward both ways (the default)
//   reset     every open connection is reset now, and every new one is reset on accept
//             (the client sees ECONNRESET / "socket hang up", as with a store that died)
//   blackhole accept and read, forward nothing, answer nothing (a store that hangs)
//   delayMs   in pass mode, hold every chunk from the store for this long (a slow store)
//
// The listening port never changes, so the client's URL stays valid across faults.
import net from 'node:net';

export type ProxyMode = 'pass' | 'reset' | 'blackhole';

export interface TcpProxy {
  readonly port: number;
  readonly host: string;
  /** Rewrites a URL's host:port to go through the proxy. */
  via(url: string): string;
  setMode(mode: ProxyMode): void;
  /** Delay for store → client data in pass mode (0: none). */
  setDelay(ms: number): void;
  /** Connections accepted since start. */
  accepted(): number;
  /** Connections open now. */
  open(): number;
  /** Called with the first bytes of each client → store chunk (to time a fault to a request). */
  onClientData(fn: ((chunk: Buffer) => void) | null): void;
  close(): Promise<void>;
}

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  let mode: ProxyMode = 'pass';
  let delayMs = 0;
  let accepted = 0;
  let watcher: ((chunk: Buffer) => void) | null = null;
  const pairs = new Set<{ client: net.Socket; upstream: net.Socket | null }>();

  const server = net.createServer((client) => {
    accepted++;
    client.on('error', () => undefined);
    if (mode === 'reset') {
      client.resetAndDestroy();
      return;
    }
    const pair = { client, upstream: null as net.Socket | null };
    pairs.add(pair);
    client.on('close', () => {
      pairs.delete(pair);
      pair.upstream?.destroy();
    });
    if (mode === 'blackhole') {
      client.resume(); // read and drop
      return;
    }
    const upstream = net.connect(target.port, target.host);
    pair.upstream = upstream;
    upstream.setNoDelay(true);
    client.setNoDelay(true);
    upstream.on('error', () => client.resetAndDestroy());
    upstream.on('close', () => client.destroy());
    client.on('data', (chunk: Buffer) => {
      watcher?.(chunk);
      if (mode !== 'pass') return;
      upstream.write(chunk);
    });
    client.on('end', () => upstream.end());
    upstream.on('data', (chunk: Buffer) => {
      if (mode !== 'pass') return;
      if (delayMs > 0) {
        upstream.pause();
        setTimeout(() => {
          if (!client.destroyed) client.write(chunk);
          upstream.resume();
        }, delayMs);
      } else client.write(chunk);
    });
    upstream.on('end', () => client.end());
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;

  return {
    port,
    host: '127.0.0.1',
    via(url) {
      const u = new URL(url);
      u.hostname = '127.0.0.1';
      u.port = String(port);
      return u.toString();
    },
    setMode(next) {
      mode = next;
      if (next === 'pass') return;
      for (const { client, upstream } of pairs) {
        if (next === 'reset') {
          client.resetAndDestroy();
          upstream?.destroy();
        } else {
          // blackhole: the client keeps a socket that answers nothing from now on
          upstream?.destroy();
          upstream?.removeAllListeners('close');
        }
      }
    },
    setDelay(ms) {
      delayMs = ms;
    },
    accepted: () => accepted,
    open: () => pairs.size,
    onClientData(fn) {
      watcher = fn;
    },
    async close() {
      for (const { client, upstream } of pairs) {
        client.destroy();
        upstream?.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
