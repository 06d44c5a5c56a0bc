// Reading request bodies with a hard size limit (upstream bodies: upstream-body.ts).
import type { IncomingMessage } from 'node:http';
import { ClientGone } from './cancellation.js';
import { bodyTooLarge, requestTimeout } from './errors.js';
import { cutForTime } from './inbound.js';

/** Reads the whole request body, refusing (413) as soon as it passes `limit` bytes. */
export function readRequestBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return Promise.reject(bodyTooLarge(limit));
  // Cut while we were still authenticating: its 'error' has passed, and no 'end' will come.
  if (req.destroyed && !req.complete) return Promise.reject(cutShort(req));
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
    const onError = () => {
      cleanup();
      reject(cutShort(req));
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
 * Why a request's body stopped arriving: cut by the server (request timeout, or shutdown while
 * it was still arriving: a 408 in its receipt), or the client went away (a `cancelled` receipt).
 */
function cutShort(req: IncomingMessage): Error {
  return cutForTime(req) ? requestTimeout() : new ClientGone('client closed the connection while sending its request');
}
