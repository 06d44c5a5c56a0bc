// How the answer store holds an entry in memory: its answer text deflated when that saves
// space (the log and Redis keep plain JSON).
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import type { CachedAnswer } from './store.js';

/**
 * What the LRU holds per entry: a CachedAnswer whose answer text is deflated when that saves
 * space. The answers were most of the cache's heap (157 of 329 MB per 100k entries in
 * bench:cache); JSON chat completions deflate to a third or less. The packed bytes are kept as
 * a latin1 string (one byte per byte, on the JS heap where the limit and the bench see it)
 * rather than a Buffer per entry (an object and an off-heap allocation each).
 */
export interface HeldAnswer extends Omit<CachedAnswer, 'answer'> {
  /** The answer text, or its deflated bytes as latin1 when `answerChars` > 0. */
  body: string;
  /** Length of the answer text when `body` is deflated, else 0. */
  answerChars: number;
}

/** Shorter answers are kept as they are: deflate would save little and cost a call per hit. */
const PACK_FROM_CHARS = 256;

/**
 * A preset deflate dictionary: the JSON envelope that every cached chat completion (and
 * embeddings list) repeats, so each entry's packed bytes hold little more than its own text.
 * Deflate matches against it as if it preceded the answer; the most common strings go last
 * (nearest, cheapest to reference). Only the in-memory copy uses it: the log and Redis keep
 * plain JSON, so changing it is safe at any time.
 */
const PACK_DICTIONARY = Buffer.from(
  [
    '{"object":"list","data":[{"object":"embedding","index":0,"embedding":[',
    '"tool_calls":[{"id":"call_","type":"function","function":{"name":"","arguments":"{\\"',
    '"finish_reason":"tool_calls"',
    '"finish_reason":"length"',
    '"system_fingerprint":null,"service_tier":"default"',
    '"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}',
    '"refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":',
    ',"completion_tokens":',
    ',"total_tokens":',
    '{"id":"chatcmpl-","object":"chat.completion","created":17',
    ',"model":"","choices":[{"index":0,"message":{"role":"assistant","content":"',
  ].join(''),
);

export function pack(entry: CachedAnswer): HeldAnswer {
  const { answer } = entry;
  let body = answer;
  let answerChars = 0;
  if (answer.length >= PACK_FROM_CHARS) {
    // Level 1: most of the saving of level 6 for a fraction of the time, on a path after the upstream call.
    const packed = deflateRawSync(answer, { level: 1, dictionary: PACK_DICTIONARY });
    if (packed.length < answer.length * 0.9) {
      body = packed.toString('latin1');
      answerChars = answer.length;
    }
  }
  // Spelled out, not `{ ...rest, body }`: objects built by rest/spread got a hidden class
  // each (a Map and a DescriptorArray per entry, 38 MB per 100k in a heap snapshot).
  return {
    key: entry.key,
    teamId: entry.teamId,
    createdAt: entry.createdAt,
    expiresAt: entry.expiresAt,
    body,
    answerChars,
    costUsd: entry.costUsd,
    usageEstimated: entry.usageEstimated === true,
    provider: entry.provider,
    model: entry.model,
    semantic: entry.semantic,
  };
}

export function unpack(held: HeldAnswer): CachedAnswer {
  const answer = held.answerChars > 0 ? inflateRawSync(Buffer.from(held.body, 'latin1'), { dictionary: PACK_DICTIONARY }).toString('utf8') : held.body;
  return {
    key: held.key,
    teamId: held.teamId,
    createdAt: held.createdAt,
    expiresAt: held.expiresAt,
    answer,
    costUsd: held.costUsd,
    usageEstimated: held.usageEstimated,
    provider: held.provider,
    model: held.model,
    semantic: held.semantic,
  };
}
