// An upstream stream on its way to the client. Until its first byte reaches the client the
// attempt may still fail over; after it, never (DESIGN §5): a stream that breaks gets an error
// event in the client's protocol and a `partial` receipt with the tokens actually delivered.
// What precedes the answer (SSE comments, a role-only chunk) is held back, for at most
// `streamHoldMs`: a provider that keeps a connection alive with comments while its model thinks
// (OpenRouter) must keep the client's alive too, or a proxy in front cuts it (many close a
// connection silent for 30–60 s).
import { createHash } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { StringDecoder } from 'node:string_decoder';
import type { StreamPump } from '../protocols/protocol.js';
import type { UnsignedReceipt } from '../receipts/receipt.js';
import { type AttemptLog, type Unanswered, usageOf } from './attempt.js';
import { type Cancellation, ClientGone, whenCancelled } from './cancellation.js';
import { publishDecision } from './decisions.js';
import type { PipelineDeps } from './deps.js';
import type { Endings } from './endings.js';
import { GatewayError, upstreamStreamError } from './errors.js';
import type { Exchange } from './exchange.js';
import { classify, UpstreamFailure } from './upstream.js';
import { readUsage } from './usage.js';

export type Relayed = { unanswered: Unanswered } | { delivered: true; receipt: UnsignedReceipt | null };

/** An SSE comment: every client's parser skips it; proxies see a connection in use. */
const KEEP_ALIVE = ': keep-alive\n\n';

export async function relayStream(
  deps: Pick<PipelineDeps, 'limiter' | 'health' | 'bus' | 'config'>,
  endings: Endings,
  ex: Exchange,
  log: AttemptLog,
  pump: StreamPump,
  upstreamBody: AsyncIterable<Buffer> & { destroy(): void },
  res: ServerResponse,
  signal: Cancellation,
): Promise<Relayed> {
  const decoder = new StringDecoder('utf8');
  const responseHash = createHash('sha256');
  let started = false;
  // What came before the answer began (SSE comments, a role-only chunk): held, so that an
  // upstream failing after them can still be failed over; it goes out with the first part, or
  // once it has been held for streamHoldMs.
  let held = '';
  let holdUntil = ex.elapsed() + deps.config.streamHoldMs;
  // When the client last heard from this stream (or when it began).
  let lastWrite = ex.elapsed();
  // As long as an opening is held, and 10 s when nothing is held (a hold of 0).
  const keepAliveMs = deps.config.streamHoldMs || 10_000;
  let breakage: UpstreamFailure | null = null;
  /** Writes to the client once the answer has begun (or the hold is over); false while the attempt is still undecided. */
  const deliver = (out: string): boolean => {
    const answering = pump.tally.answering || pump.tally.done;
    if (!started) {
      if (!answering && ex.elapsed() < holdUntil) {
        held += out;
        return false;
      }
      started = true;
      // The attempt that is streaming is recorded when it ends: count it in the header now.
      endings.startStream(ex, res, log.number);
      out = held + out;
      held = '';
    }
    // TTFT is the answer's first part, not a comment that went ahead of it.
    if (answering && ex.ttftMs === null) {
      ex.ttftMs = ex.elapsed();
      log.firstToken();
    }
    lastWrite = ex.elapsed();
    responseHash.update(out);
    return res.write(out);
  };
  /** Nothing reached the client: the attempt fails over. */
  const failedBeforeStart = (failure: UpstreamFailure | null = null): Relayed => {
    upstreamBody.destroy();
    ex.target = null;
    return { unanswered: log.failover(failure ?? new UpstreamFailure('network_error', 'upstream stream began with an error'), 200) };
  };
  // On a clock, not on the upstream's chunks (a model may think in silence after its opening):
  // once the hold is over, what was held goes out, with what the pump holds of the opening (an
  // Anthropic ping, a Responses response.created); from then on a comment of our own whenever
  // the client heard nothing for keepAliveMs (a transcoded stream drops the upstream's
  // keep-alives; a model's thinking has no place in a chat stream), so that the client's
  // connection and its proxies stay alive. An upstream that has sent nothing at all is not
  // committed to: the idle timeout may still fail it over.
  let heard = false;
  const ticker = setInterval(() => {
    if (res.destroyed || signal.aborted) return;
    if (!started) {
      if (!heard) return;
      holdUntil = 0; // the tick is the hold's end, whatever the clock's rounding
      deliver(pump.releaseOpening?.() || (held ? '' : KEEP_ALIVE));
    } else if (ex.elapsed() - lastWrite >= keepAliveMs) deliver(KEEP_ALIVE);
  }, keepAliveMs);
  // Once the upstream said it is done, the answer is whole: an upstream that then keeps its
  // connection open does not hold the client's end (and its receipt) until the idle timeout.
  let endGrace: NodeJS.Timeout | undefined;
  try {
    for await (const chunk of upstreamBody) {
      heard = true;
      const out = pump.push(decoder.write(chunk));
      // Nothing has reached the client yet: an error in the stream can still fail over.
      if (!started && pump.tally.upstreamError) return failedBeforeStart();
      if (out && !deliver(out) && started) await drained(res, signal);
      // The answer ended in an error: whatever the upstream sends after it is not waited for.
      if (pump.tally.upstreamError) break;
      if (pump.tally.done) endGrace ??= setTimeout(() => upstreamBody.destroy(), END_GRACE_MS);
    }
  } catch (err) {
    // After its end event the answer is whole: a connection that breaks then (or that the end
    // grace closes) takes nothing from it.
    if (!pump.tally.done) breakage = classify(err, signal);
  } finally {
    clearInterval(ticker);
    clearTimeout(endGrace);
  }
  if (!breakage) {
    const tail = pump.push(decoder.end()) + pump.end();
    // An upstream that sent an error event and closed ended in its error, not a reset.
    if (!pump.tally.done && !pump.tally.upstreamError) breakage = new UpstreamFailure('connection_reset', 'upstream stream ended before its end event');
    // An answer whose last part wrote nothing here (a held final event, an empty finish) starts
    // now; one that broke or ended in an error before anything went out fails over instead.
    else if (!pump.tally.upstreamError && (tail || (!started && (pump.tally.answering || pump.tally.done)))) deliver(tail);
  }
  // Some servers (vLLM) send an error chunk after the first byte, then [DONE]: the answer is
  // still cut short. Ending it as complete would bill it `ok`, cache it, and (transcoded, where
  // the error chunk has no event of its own) hide the error from the client.
  if (!breakage && pump.tally.upstreamError) breakage = new UpstreamFailure('stream_error', upstreamStreamError(pump.tally.upstreamError));
  if (!started) return failedBeforeStart(breakage ?? new UpstreamFailure('network_error', 'upstream stream was empty'));

  // From here on the client has bytes: no failover, whatever happens.
  const tally = pump.tally;
  const usage = await usageOf(
    readUsage(tally.usage),
    ex.parsed!,
    () => ({ text: tally.deliveredText, reasoning: tally.reasoningText }),
    readUsage(tally.promptUsage),
  );
  deps.limiter.recordTokens(ex.key!.id, usage.promptTokens + usage.completionTokens, ex.key!.tpmLimit);
  if (signal.reason instanceof ClientGone) {
    log.finish(200, 'client_cancelled');
    log.release();
    publishDecision(deps.bus, ex, log.target, 'CANCELLED', 'client_cancelled', null, log.candidates, log.number);
    await endings.cancelled(ex, usage, responseHash.digest('hex'));
    return { delivered: true, receipt: null };
  }
  if (breakage) {
    const latency = log.finish(200, breakage.kind);
    // A failure rate's sample; not a failover's cost (it broke after the answer began).
    deps.health.onFailure(log.target.key, { probe: log.probe });
    publishDecision(deps.bus, ex, log.target, 'FAILED', `mid_stream_${breakage.kind}`, latency, log.candidates, log.number);
    const error = new GatewayError(
      502,
      'api_error',
      'upstream_stream_interrupted',
      `The upstream stream broke after the response started (${breakage.message}); the answer is incomplete.`,
    );
    await endings.breakStream(ex, res, pump, error, usage, responseHash);
    return { delivered: true, receipt: null };
  }

  log.firstToken(); // an answer without a token (an empty finish) is judged by its end
  log.succeeded(200);
  return { delivered: true, receipt: await endings.endStream(ex, res, pump, usage, responseHash) };
}

/** How long an upstream may keep its connection open after its end event. */
const END_GRACE_MS = 1_000;

/** The client has read enough to take more, or the request is cancelled. */
function drained(res: ServerResponse, signal: Cancellation): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const stopListening = whenCancelled(signal, done);
    res.once('drain', done);
    function done() {
      stopListening();
      res.removeListener('drain', done);
      resolve();
    }
  });
}
