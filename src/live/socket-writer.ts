// Per-socket batched writes for the websocket fan-out (src/live/fanout.ts): one writer per
// socket; the frames of all its members go out together, corked into one syscall, at most
// every MIN_WRITE_INTERVAL_MS; nothing more is written until the previous batch has reached
// the kernel, so a client that stops reading fills its members' queues (which then drop)
// instead of the server's memory.
import type { WebSocket } from 'ws';

/** What a writer drains: a fan-out member's queue of ready frames. */
export interface FrameSource {
  /** Appends its queued frames to `frames`; one that cannot give them all yet marks itself again. */
  drainInto(frames: string[]): void;
}

/** The writers of one fan-out, one per socket; those with frames are flushed together. */
export class SocketWriters {
  private readonly writers = new WeakMap<WebSocket, SocketWriter>();
  private readonly dirty = new Set<SocketWriter>();
  private flushScheduled = false;

  for(socket: WebSocket): SocketWriter {
    let writer = this.writers.get(socket);
    if (!writer) {
      writer = new SocketWriter(this, socket);
      this.writers.set(socket, writer);
    }
    return writer;
  }

  /** Flushes `writer` on the next turn, with every other socket that has frames by then. */
  schedule(writer: SocketWriter): void {
    this.dirty.add(writer);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(this.flushAll);
  }

  private readonly flushAll = (): void => {
    this.flushScheduled = false;
    const writers = [...this.dirty];
    this.dirty.clear();
    for (const w of writers) w.flush();
  };
}

/** ws has no public cork(); its underlying net.Socket does, and coalesces the frames into one write. */
function rawSocket(socket: WebSocket): { cork(): void; uncork(): void } | undefined {
  return (socket as unknown as { _socket?: { cork(): void; uncork(): void } })._socket;
}

/**
 * A socket written less than this ago gets its next frames batched until then: a busy socket
 * (an unfiltered dashboard) costs one write per interval instead of one per event, while a
 * quiet one is written at once. Small beside the delivery target (tens of ms).
 */
const MIN_WRITE_INTERVAL_MS = 5;

export class SocketWriter {
  /** Sources (fan-out members) with frames to write. */
  private readonly pending = new Set<FrameSource>();
  /** The last batch has not reached the kernel yet. */
  private writing = false;
  private lastWrite = -Infinity;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly writers: SocketWriters,
    private readonly socket: WebSocket,
  ) {}

  mark(source: FrameSource): void {
    this.pending.add(source);
    this.request();
  }

  remove(source: FrameSource): void {
    this.pending.delete(source);
  }

  /** Asks for a flush: on the next turn, or when the write interval has passed. */
  private request(): void {
    if (this.writing || this.timer) return;
    const wait = this.lastWrite + MIN_WRITE_INTERVAL_MS - performance.now();
    if (wait <= 0) {
      this.writers.schedule(this);
      return;
    }
    this.timer = setTimeout(() => {
      this.timer = null;
      this.writers.schedule(this);
    }, wait);
  }

  flush(): void {
    if (this.writing || this.timer || this.pending.size === 0) return;
    if (this.socket.readyState !== this.socket.OPEN) {
      this.pending.clear();
      return;
    }
    const frames: string[] = [];
    for (const m of this.pending) m.drainInto(frames); // a member waiting on a re-execution marks itself again
    this.pending.clear();
    if (frames.length === 0) return;
    this.lastWrite = performance.now();
    const raw = rawSocket(this.socket);
    raw?.cork();
    const last = frames.length - 1;
    for (let i = 0; i < last; i++) this.socket.send(frames[i]!);
    this.writing = true;
    this.socket.send(frames[last]!, () => {
      this.writing = false;
      if (this.pending.size > 0) this.request();
    });
    raw?.uncork();
  }
}
