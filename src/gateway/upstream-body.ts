// An upstream response body, filled straight from undici's dispatch handler (upstream.ts).
//
// Why not undici's `request()` and its Readable: every proxied request paid for the stream
// machinery (a Readable per response, its events and nextTicks, an AsyncResource) to carry
// what is usually one chunk. A loopback client at c=32 (600-byte answers, a Cancellation as the
// signal) spent 32–36 µs of CPU a request with a dispatch handler against 43–56 µs with
// `request()` (8 interleaved rounds, AMD EPYC); `AB_ARM=floor npm run bench:ab` shows it in
// Tollgate's own server and client. This is the little a body needs here: read it whole under a
// size limit, or iterate its chunks with backpressure, or drop it.
import type { Dispatcher } from 'undici';

/** Bytes queued for a reader that iterates before the upstream is paused. */
const HIGH_WATER_MARK = 64 * 1024;
/** What `read` accepts when no limit is given. */
const DEFAULT_LIMIT = 64 * 1024 * 1024;

export class UpstreamBody implements AsyncIterable<Buffer> {
  #chunks: Buffer[] = [];
  #queued = 0;
  #ended = false;
  #error: Error | null = null;
  #destroyed = false;
  /** A reading whole never pauses the upstream (the size limit bounds it instead). */
  #readingWhole = false;
  /** Wakes the one reader waiting for the next chunk, the end, or an error. */
  #wake: (() => void) | null = null;

  constructor(private readonly controller: Dispatcher.DispatchController) {}

  /** Destroyed by its reader: nothing more will be read from it. */
  get destroyed(): boolean {
    return this.#destroyed;
  }

  /** The whole body; rejects past `limit` bytes (destroying it), or with the transfer's error. */
  async read(limit = DEFAULT_LIMIT): Promise<Buffer> {
    this.#readingWhole = true;
    if (this.controller.paused) this.controller.resume();
    for (;;) {
      if (this.#queued > limit) {
        this.destroy();
        throw new Error('upstream body too large');
      }
      if (this.#error) throw this.#error;
      if (this.#ended) return this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks, this.#queued);
      if (this.#destroyed) throw prematureClose();
      await this.#next();
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<Buffer> {
    return {
      next: () => this.#nextChunk(),
      // A reader that stops early (break, throw) wants no more of it.
      return: async () => {
        this.destroy();
        return { done: true, value: undefined };
      },
    };
  }

  /** Stops the transfer if it is still going; a reader waiting gets a premature close. */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#chunks = [];
    this.#queued = 0;
    if (!this.#ended && !this.#error && !this.controller.aborted) this.controller.abort(abortedByReader());
    this.#wakeReader();
  }

  // --- fed by the dispatch handler ---

  push(chunk: Buffer): void {
    if (this.#destroyed) return;
    this.#chunks.push(chunk);
    this.#queued += chunk.length;
    if (this.#queued >= HIGH_WATER_MARK && !this.#readingWhole) this.controller.pause();
    this.#wakeReader();
  }

  end(): void {
    this.#ended = true;
    this.#wakeReader();
  }

  fail(err: Error): void {
    if (this.#ended || this.#error || this.#destroyed) return;
    this.#error = err;
    this.#wakeReader();
  }

  async #nextChunk(): Promise<IteratorResult<Buffer>> {
    for (;;) {
      if (this.#destroyed) throw this.#error ?? prematureClose();
      const chunk = this.#chunks.shift();
      if (chunk) {
        this.#queued -= chunk.length;
        if (this.controller.paused && this.#queued < HIGH_WATER_MARK) this.controller.resume();
        return { done: false, value: chunk };
      }
      if (this.#error) throw this.#error;
      if (this.#ended) return { done: true, value: undefined };
      await this.#next();
    }
  }

  #next(): Promise<void> {
    return new Promise((resolve) => {
      this.#wake = resolve;
    });
  }

  #wakeReader(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }
}

/** What a reader of a body someone else destroyed gets; the code `for await` on a stream reports. */
const prematureClose = () => Object.assign(new Error('Premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
const abortedByReader = () => Object.assign(new Error('upstream body dropped by its reader'), { code: 'UND_ERR_ABORTED' });
