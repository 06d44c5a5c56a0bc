// What stops a request's upstream work: the client went away, or the route's total timeout
// passed. An EventEmitter, not an AbortController: undici takes either as a request's
// `signal`, and on Node 20 an AbortController with one listener costs ~14 µs per request
// against ~0.5 µs for this (measured; AbortSignal is an EventTarget, slow to make and to
// listen to). It is made for every proxied request, so the difference is worth a class.
import { EventEmitter } from 'node:events';

/** Why a request's work stopped: the client went away (else: the route's total timeout passed). */
export class ClientGone extends Error {}

export class Cancellation extends EventEmitter {
  aborted = false;
  reason: unknown = undefined;

  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.emit('abort');
  }
}

/** What upstream calls accept: a Cancellation, or a standard AbortSignal (e.g. AbortSignal.timeout). */
export type UpstreamSignal = Cancellation | AbortSignal;

/** Calls `listener` when `signal` fires (not if it already has); returns how to stop listening. */
export function whenCancelled(signal: UpstreamSignal, listener: () => void): () => void {
  if (signal instanceof Cancellation) {
    signal.once('abort', listener);
    return () => signal.removeListener('abort', listener);
  }
  signal.addEventListener('abort', listener, { once: true });
  return () => signal.removeEventListener('abort', listener);
}

/** Waits `ms`, or less: resolves early when `signal` fires. */
export function delay(ms: number, signal: UpstreamSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    const stopListening = whenCancelled(signal, done);
    function done() {
      clearTimeout(timer);
      stopListening();
      resolve();
    }
  });
}

/** Longest wait between retry rounds. */
const MAX_BACKOFF_MS = 2_000;

/** Exponential backoff with full jitter between retry rounds. */
export function backoffMs(round: number): number {
  return Math.random() * Math.min(MAX_BACKOFF_MS, 100 * 2 ** (round - 1));
}
