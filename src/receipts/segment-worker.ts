// The receipts journal's worker thread (started by SegmentWorker in segment-preparer.ts):
// prepares sealed WAL segments for ClickHouse — reads, signs, maps to rows — so that none
// of that runs on the main thread. One request at a time, in the order they come, with one
// scratch for them all; the body is transferred back, and its buffer returns (a RecycleRequest)
// once its insert was acknowledged.
import type { KeyObject } from 'node:crypto';
import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { ed25519Signer } from './ed25519.js';
import { prepareSegment, SegmentScratch } from './segment-prep.js';

export interface SegmentWorkerData {
  key: KeyObject;
  keyId: string;
}

export interface PrepareRequest {
  id: number;
  file: string;
}

/** The buffer of a body whose insert was acknowledged, for the next prepare to write into. */
export interface RecycleRequest {
  recycle: ArrayBuffer;
}

export type PrepareResponse =
  | { id: number; ok: true; result: Awaited<ReturnType<typeof prepareSegment>> }
  | { id: number; ok: false; error: { message: string; code?: string; name: string } };

/** Nice value of the worker thread (lower priority than the main thread's 0). */
const WORKER_NICE = 10;

const port = parentPort;
if (!port) throw new Error('segment-worker.ts runs as a worker thread');
const { key, keyId } = workerData as SegmentWorkerData;
const sign = ed25519Signer(key);

// Background work: on a busy machine the request path (main thread) should win the CPU.
// On Linux a thread's nice value is its own, and /proc/thread-self names this thread.
if (process.platform === 'linux') {
  try {
    setPriority(Number(readlinkSync('/proc/thread-self').split('/').pop()), WORKER_NICE);
  } catch {
    // not permitted or not available: run at the process's priority
  }
}

const scratch = new SegmentScratch();
let previous: Promise<unknown> = Promise.resolve();

const prepare = (req: PrepareRequest): Promise<void> =>
  prepareSegment(req.file, sign, keyId, scratch).then(
    (result) => port.postMessage({ id: req.id, ok: true, result } satisfies PrepareResponse, [result.body.buffer as ArrayBuffer]),
    (err: unknown) => {
      const e = err instanceof Error ? err : new Error(String(err));
      const code = (e as NodeJS.ErrnoException).code;
      port.postMessage({ id: req.id, ok: false, error: { message: e.message, name: e.name, ...(code ? { code } : {}) } } satisfies PrepareResponse);
    },
  );

port.on('message', (req: PrepareRequest | RecycleRequest) => {
  // The body is written synchronously, after the file is read: taking a buffer back between
  // two prepares, or while one reads its file, never changes a body being written.
  if ('recycle' in req) scratch.recycle(new Uint8Array(req.recycle));
  else previous = previous.then(() => prepare(req));
});
