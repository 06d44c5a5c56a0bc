// Per-socket batched writes for the websocket fan-out (src/live/fanout.ts): one writer per
// socket; the frames of all its members go out together, corked into one syscall, at most
// every MIN_WRITE_INTERVAL_MS; nothing more is written until the previous batch has reached
// the kernel, so a client that stops reading fills its members' queues instead of the kernel's.
//
// A socket's unsent bytes (its members' queues plus what ws holds for it) are bounded by
// TOLLGATE_WS_MAX_BUFFER_BYTES. One member queues at most a quarter of that: a subscription
// that falls behind drops its oldest events (and says so in droppedBefore) long before its
// socket is in danger. Only many subscriptions on a socket that stops reading pass the limit
// together; that socket is closed (1008 "slow consumer") and its members end, so it costs a
// few MiB, not a thousand events per subscription. Clients that keep up never get near it.
import type { WebSocket } from 'ws';

/** What a writer drains: a fan-out member's queue of ready frames. */
export interface FrameSource {
  /** Appends its queued frames to `frames`; one that cannot give them all yet marks itself again. */
  drainInto(frames: string[]): void;
  /** The socket was closed for falling behind: end, and let go of what is queued. */
  stop(): void;
}

export interface WriterLimits {
  /** Unsent bytes a socket may have before it is closed as a slow consumer. */
  maxBufferedBytes: number;
  onSlowConsumer: () => void;
}

/** Close code and reason for a socket that fell too far behind (1008: policy violation). */
const SLOW_CONSUMER = { code: 1008, reason: 'slow consumer' } as const;

/**
 * How long one turn of the event loop may spend writing to sockets (ms): a proxied request
 * that arrives meanwhile waits for the rest of the slice. One socket's batch takes ~15 µs.
 * bench:subscriptions (200 subscribers, ~1000 decisions/s), proxy p50 with subscribers minus
 * without, runs interleaved on one machine: 1 ms slices 1.21–1.57 ms (median 1.32, 6 runs),
 * 0.25 ms 0.45–1.20 ms (median 0.88, 9 runs), 0.1 ms 0.55 and 0.76 ms but delivery p99 up to
 * 45 ms (target ≤ 50), against 25–38 ms at 0.25.
 */
const FLUSH_SLICE_MS = 0.25;

/**
 * A flush that starts with a socket waiting longer than CATCH_UP_AFTER_MS for its turn runs
 * for CATCH_UP_SLICE_MS instead. On a slower machine, short slices between busy turns of the
 * event loop did not keep up with ~1000 decisions/s: the oldest frames waited 60–280 ms in
 * some seconds (measured from each decision's time to its frame's write) while the loop itself
 * was never blocked for more than 20 ms. Longer slices only while behind drain that backlog,
 * and leave the short slices, kinder to the proxy's latency, for when the writers keep up.
 */
const CATCH_UP_AFTER_MS = 10;
const CATCH_UP_SLICE_MS = 1;

/** The writers of one fan-out, one per socket; those with frames are flushed together. */
export class SocketWriters {
  private readonly writers = new Map<WebSocket, SocketWriter>();
  private readonly dirty = new Set<SocketWriter>();
  private flushScheduled = false;

  constructor(readonly limits: WriterLimits = { maxBufferedBytes: Infinity, onSlowConsumer: () => undefined }) {}

  for(socket: WebSocket): SocketWriter {
    let writer = this.writers.get(socket);
    if (!writer) {
      writer = new SocketWriter(this, socket);
      // A socket already closed would never say so again: it is not kept.
      if (socket.readyState !== socket.CLOSED) {
        this.writers.set(socket, writer);
        const closed = writer;
        socket.once('close', () => {
          this.writers.delete(socket);
          // graphql-ws ends the subscriptions it knows of; whatever it lost track of ends too.
          closed.stopAll();
        });
      }
    }
    return writer;
  }

  /** Bytes waiting to be sent to every socket (for /metrics). */
  get bufferedBytes(): number {
    let total = 0;
    for (const w of this.writers.values()) total += w.unsentBytes;
    return total;
  }

  /** Flushes `writer` on the next turn, with every other socket that has frames by then. */
  schedule(writer: SocketWriter): void {
    if (!this.dirty.has(writer)) {
      writer.scheduledAt = performance.now();
      this.dirty.add(writer);
    }
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(this.flushAll);
  }

  /**
   * Flushes the sockets with frames for at most FLUSH_SLICE_MS, then lets the event loop serve
   * what arrived meanwhile before going on: sockets written together come due together, and
   * one turn writing them all held up the proxy's requests behind it.
   */
  private readonly flushAll = (): void => {
    this.flushScheduled = false;
    const now = performance.now();
    // The set keeps the order writers were scheduled in: the first has waited longest.
    const oldest = this.dirty.values().next().value;
    const behind = oldest !== undefined && now - oldest.scheduledAt > CATCH_UP_AFTER_MS;
    const deadline = now + (behind ? CATCH_UP_SLICE_MS : FLUSH_SLICE_MS);
    for (const w of this.dirty) {
      this.dirty.delete(w);
      w.flush();
      if (performance.now() >= deadline) break;
    }
    if (this.dirty.size > 0 && !this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flushAll);
    }
  };
}

/** ws has no public cork(); its underlying net.Socket does, and coalesces the frames into one write. */
function rawSocket(socket: WebSocket): { cork(): void; uncork(): void } | undefined {
  return (socket as unknown as { _socket?: { cork(): void; uncork(): void } })._socket;
}

/**
 * A socket written less than this ago gets its next frames batched until then: a busy socket
 * (an unfiltered dashboard) costs one write per interval instead of one per event, while a
 * quiet one is written at once. bench:subscriptions (200 subscribers, ~1000 decisions/s), two
 * runs each: at 5 ms, 11.5–15.1 µs of Tollgate CPU per delivery and the proxy's p50 +2.2 ms
 * under the subscribers; at 20 ms, 10.4–12.6 µs and +1.6–1.8 ms, delivery p99 27–30 ms
 * (target ≤ 50 ms).
 */
const MIN_WRITE_INTERVAL_MS = 20;

export class SocketWriter {
  /** Every source (fan-out member) writing to this socket. */
  private readonly sources = new Set<FrameSource>();
  /** Sources with frames to write. */
  private readonly pending = new Set<FrameSource>();
  /** Bytes of the frames its sources hold, not yet handed to ws. */
  private queued = 0;
  /** Closed as a slow consumer. */
  private closed = false;
  /** The last batch has not reached the kernel yet. */
  private writing = false;
  private lastWrite = -Infinity;
  private timer: NodeJS.Timeout | null = null;
  /** When it was last put in line for a flush (SocketWriters.schedule). */
  scheduledAt = 0;

  constructor(
    private readonly writers: SocketWriters,
    private readonly socket: WebSocket,
  ) {}

  add(source: FrameSource): void {
    this.sources.add(source);
  }

  remove(source: FrameSource): void {
    this.sources.delete(source);
    this.pending.delete(source);
  }

  mark(source: FrameSource): void {
    this.pending.add(source);
    this.request();
  }

  /** A source queued (positive) or let go of (negative) this many bytes of frames. */
  queue(bytes: number): void {
    this.queued += bytes;
    if (bytes > 0) this.checkBuffer();
  }

  /** Bytes one source may queue (it drops its oldest beyond): a quarter of the socket's limit. */
  get sourceMaxBytes(): number {
    return this.writers.limits.maxBufferedBytes / 4;
  }

  /** Queued here plus held by ws and the socket: what this client has not received yet. */
  get unsentBytes(): number {
    return this.queued + this.socket.bufferedAmount;
  }

  /** Closes the socket (1008 "slow consumer") once its unsent bytes pass the limit. */
  checkBuffer(): void {
    const { maxBufferedBytes, onSlowConsumer } = this.writers.limits;
    if (this.closed || this.unsentBytes <= maxBufferedBytes) return;
    this.closed = true;
    onSlowConsumer();
    this.socket.close(SLOW_CONSUMER.code, SLOW_CONSUMER.reason);
    this.stopAll();
  }

  stopAll(): void {
    for (const source of [...this.sources]) source.stop();
    this.pending.clear();
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
    if (this.closed || this.socket.readyState !== this.socket.OPEN) {
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
