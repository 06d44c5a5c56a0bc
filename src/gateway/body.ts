// Reading request and upstream bodies with hard size limits.
import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { bodyTooLarge, requestTimeout } from './errors.js';
import { cutForTime } from './inbound.js';

/** Reads the whole request body, refusing (413) as soon as it passes `limit` bytes. */
export function readRequestBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return Promise.reject(bodyTooLarge(limit));
  // Cut while we were still authenticating: its 'error' has passed, and no 'end' will come.
  if (req.destroyed && !req.complete) return Promise.reject(cutForTime(req) ? requestTimeout() : new Error('request aborted'));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        cleanup();
        reject(bodyTooLarge(limit));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    };
    const onError = (err: Error) => {
      cleanup();
      // Cut by the server (request timeout, or shutdown while it was still arriving): a 408 in its receipt.
      reject(cutForTime(req) ? requestTimeout() : err);
    };
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
}

/**
 * Collects an upstream body (already bounded in time by undici's body timeout). Read with
 * 'data' events rather than `for await`: the stream's async iterator costs a few µs of
 * promises and bookkeeping per response, on every proxied request.
 */
export function readUpstreamBody(body: Readable, limit = 64 * 1024 * 1024): Promise<Buffer> {
  // Destroyed before we got to it (an abort while the caller was busy): its events have passed.
  // Its 'error' may still be on its way (undici emits it a turn later): it must find a listener.
  if (body.destroyed) {
    body.on('error', ignore);
    return Promise.reject(body.errored ?? prematureClose());
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        cleanup();
        body.destroy();
        reject(new Error('upstream body too large'));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    // Closed without 'end' or 'error' (destroyed by someone else): what `for await` reports too.
    const onClose = () => {
      cleanup();
      reject(prematureClose());
    };
    // Settled: an error emitted later (undici's AbortError from the destroy above) must still
    // find a listener, or it would be thrown as an uncaught exception.
    const cleanup = () => {
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('error', onError);
      body.off('close', onClose);
      body.on('error', ignore);
    };
    body.on('data', onData);
    body.on('end', onEnd);
    body.on('error', onError);
    body.on('close', onClose);
  });
}

const ignore = () => undefined;
const prematureClose = () => Object.assign(new Error('Premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
