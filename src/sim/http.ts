// Per-request plumbing shared by the simulator's wires: cancellable waits tied to the
// response's lifetime, a deliberate mid-stream break, and the heads of JSON and SSE answers.
import type http from 'node:http';
import type { SimBehaviour } from './behaviour.js';

/**
 * Waits that end early when the client goes away or close() destroys the socket, so that no
 * timer outlives its connection. Only one wait is pending at a time per response.
 */
export class Exchange {
  gone = false;
  private wake: (() => void) | undefined;
  private drainWake: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(readonly res: http.ServerResponse) {
    res.on('close', () => {
      this.gone = true;
      this.release();
      this.releaseDrain();
    });
    // Separate from sleeps: a 'drain' must not cut a pacing wait short.
    res.on('drain', () => this.releaseDrain());
  }

  /** Resolves true after ms, or false as soon as the connection is gone. */
  sleep(ms: number): Promise<boolean> {
    if (this.gone) return Promise.resolve(false);
    if (!(ms > 0)) return Promise.resolve(true);
    return new Promise((resolve) => {
      this.wake = () => resolve(!this.gone);
      this.timer = setTimeout(() => this.release(), ms);
    });
  }

  /** Resolves when the response can take more data again (false if it is gone). */
  drained(): Promise<boolean> {
    if (this.gone) return Promise.resolve(false);
    return new Promise((resolve) => {
      this.drainWake = () => resolve(!this.gone);
    });
  }

  private release(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  private releaseDrain(): void {
    const wake = this.drainWake;
    this.drainWake = undefined;
    wake?.();
  }
}

/**
 * Mid-stream break: end the TCP connection without the terminating zero-length chunk, so the
 * client sees a truncated chunked body. end() (not destroy()) first, so that the chunks already
 * written (the http layer corks the socket until the next tick) still reach the client.
 */
export function breakConnection(res: http.ServerResponse): void {
  const socket = res.socket;
  if (!socket) return;
  socket.end(() => socket.destroy());
}

/**
 * Sends the pieces of a streamed answer one by one at the behaviour's pace: tokensPerSecond
 * apart, or dripMs when slower, else as fast as the socket drains; breaks the connection after
 * breakAfterChunks pieces, and stops after the first with hang 'after-first-chunk'. False when the
 * stream ended early (client gone, broken, hung): the caller sends nothing more.
 */
export async function sendPaced(ex: Exchange, b: SimBehaviour, pieces: readonly string[], send: (piece: string) => void): Promise<boolean> {
  const drip = b.dripMs ?? 0;
  const gap = b.tokensPerSecond ? 1000 / b.tokensPerSecond : 0;
  let due = performance.now();
  for (let i = 0; i < pieces.length; i++) {
    if (b.breakAfterChunks !== undefined && i >= b.breakAfterChunks) {
      breakConnection(ex.res);
      return false;
    }
    if (i > 0) {
      if (gap > 0 || drip > 0) {
        due += gap;
        if (!(await ex.sleep(Math.max(drip, due - performance.now())))) return false;
        if (drip > gap) due = performance.now();
      } else if (ex.res.writableNeedDrain && !(await ex.drained())) return false;
      if (ex.gone) return false;
    }
    send(pieces[i]!);
    if (i === 0 && b.hang === 'after-first-chunk') return false;
  }
  if (b.breakAfterChunks !== undefined && b.breakAfterChunks <= pieces.length) {
    breakConnection(ex.res);
    return false;
  }
  // The same pause before what closes the stream.
  return drip > 0 ? ex.sleep(drip) : true;
}

export function sendJson(res: http.ServerResponse, status: number, body: string, extra?: Record<string, string>): void {
  const headers: Record<string, string | number> = {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
  };
  if (extra) Object.assign(headers, extra);
  res.writeHead(status, headers);
  res.end(body);
}

/** The head of an SSE answer, sent at once (each event after it is its own res.write). */
export function startEventStream(res: http.ServerResponse): void {
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' });
  res.flushHeaders();
}
