// Where sealed WAL segments are prepared for ClickHouse: in one worker thread. See
// segment-prep.ts for what preparing means.

import type { KeyObject } from 'node:crypto';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { type PreparedSegment, SigningKeyMismatchError } from './segment-prep.js';
import type { PrepareRequest, PrepareResponse, RecycleRequest, SegmentWorkerData } from './segment-worker.js';

export type { PreparedSegment } from './segment-prep.js';

export interface SegmentPreparer {
  /** The insert body of a sealed segment file. Rejects if the file cannot be read or signed. */
  prepare(file: string): Promise<PreparedSegment>;
  /** Hands back a body whose insert was acknowledged: the next prepare may write into its buffer. */
  recycle(body: Uint8Array): void;
  /** Stops; a pending prepare rejects. */
  close(): Promise<void>;
}

/**
 * Prepares in one worker thread, started on first use. If the thread dies (a crash,
 * terminate()), the pending prepare rejects, the caller retries as after any failed
 * insert, and the next prepare starts a new thread: preparing is a pure function of the
 * file, so a retried segment yields the same rows. The thread keeps the process alive only
 * while a prepare is pending.
 */
export class SegmentWorker implements SegmentPreparer {
  readonly #data: SegmentWorkerData;
  #worker: Worker | null = null;
  readonly #pending = new Map<number, { resolve: (p: PreparedSegment) => void; reject: (err: Error) => void }>();
  #nextId = 1;
  #closed = false;
  /** Threads started so far (tests). */
  started = 0;

  constructor(key: KeyObject, keyId: string) {
    this.#data = { key, keyId };
  }

  prepare(file: string): Promise<PreparedSegment> {
    if (this.#closed) return Promise.reject(new Error('receipt segment worker is closed'));
    let worker: Worker;
    try {
      worker = this.#worker ??= this.#start();
    } catch (err) {
      return Promise.reject(err);
    }
    const id = this.#nextId++;
    return new Promise<PreparedSegment>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      worker.ref();
      worker.postMessage({ id, file } satisfies PrepareRequest);
    });
  }

  recycle(body: Uint8Array): void {
    if (!this.#worker) return; // no thread (closed, or dead until the next prepare): the GC takes it
    const buffer = body.buffer as ArrayBuffer;
    this.#worker.postMessage({ recycle: buffer } satisfies RecycleRequest, [buffer]);
  }

  /** Ends the thread as a crash would (tests); a pending prepare rejects, the next one starts a new thread. */
  async kill(): Promise<void> {
    const worker = this.#worker;
    if (!worker) return;
    this.#fail(worker, new Error('receipt segment worker was terminated'));
    await worker.terminate();
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.kill();
  }

  #start(): Worker {
    const worker = spawnSegmentWorker(this.#data);
    this.started++;
    worker.on('message', (res: PrepareResponse) => {
      const pending = this.#pending.get(res.id);
      if (!pending) return;
      this.#pending.delete(res.id);
      if (this.#pending.size === 0) worker.unref();
      if (res.ok) pending.resolve(res.result);
      else pending.reject(toError(res.error));
    });
    worker.on('error', (err) => this.#fail(worker, err));
    worker.on('exit', (code) => this.#fail(worker, new Error(`receipt segment worker exited with code ${code}`)));
    worker.unref();
    return worker;
  }

  /** Forgets a dead thread and rejects what it had pending. */
  #fail(worker: Worker, err: Error): void {
    if (this.#worker !== worker) return;
    this.#worker = null;
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) p.reject(err);
  }
}

function toError(e: { message: string; name: string; code?: string }): Error {
  const err = e.name === 'SigningKeyMismatchError' ? new SigningKeyMismatchError(e.message) : new Error(e.message);
  if (e.code) (err as NodeJS.ErrnoException).code = e.code;
  return err;
}

// The worker's entry point is segment-worker.js next to this module when it is compiled
// (dist/), segment-worker.ts when it runs from source under tsx or vitest. A worker
// thread does not inherit the TypeScript loader of its parent (and Node 20 ignores
// `--import` in a worker's execArgv), so from source the worker first registers tsx.
let entry: { url: URL; typescript: boolean } | null = null;

function workerEntry(): { url: URL; typescript: boolean } {
  if (entry) return entry;
  const js = new URL('./segment-worker.js', import.meta.url);
  if (existsSync(fileURLToPath(js))) return (entry = { url: js, typescript: false });
  const ts = new URL('./segment-worker.ts', import.meta.url);
  if (existsSync(fileURLToPath(ts))) return (entry = { url: ts, typescript: true });
  throw new Error(`receipt segment worker not found next to ${fileURLToPath(import.meta.url)}`);
}

function spawnSegmentWorker(workerData: SegmentWorkerData): Worker {
  const { url, typescript } = workerEntry();
  // A segment's prepare keeps ~5 MB alive; V8's default young generation (16 MB semi-spaces)
  // let this thread's heap sit at ~40 MB committed. Capped, it stays at 16–28 MB with the same
  // CPU (--trace-gc under c=32: more scavenges, each smaller).
  const options = { workerData, name: 'tollgate-receipts', resourceLimits: { maxYoungGenerationSizeMb: 8 } };
  if (!typescript) return new Worker(url, options);
  let tsx: string;
  try {
    tsx = import.meta.resolve('tsx/esm/api');
  } catch (err) {
    throw new Error('running Tollgate from TypeScript source needs tsx for the receipts worker (npm install tsx), or build it: npm run build', { cause: err });
  }
  const bootstrap = `import(${JSON.stringify(tsx)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(url.href)}); });`;
  return new Worker(bootstrap, { ...options, eval: true });
}
