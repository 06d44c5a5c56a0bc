// One step of a CASCADE (DESIGN §5): cheap first, strongest last. Each step is asked for a
// complete answer (never streamed upstream: it is checked whole before anything reaches the
// client), which is then held against the route's acceptance checks (routing/accept.ts). The
// step's tokens, cost and verdict go on its Attempt; the pipeline decides whether to climb.
import type { ChatCompletion } from '../protocols/canonical.js';
import type { ParsedRequest } from '../protocols/protocol.js';
import { checkAnswer, type Verdict } from '../routing/accept.js';
import type { AcceptCheck, Route, Target } from '../routing/catalog.js';
import { type AttemptDeps, type AttemptLog, answerGenerated, type Prepared, type Sent, send, usageOf } from './attempt.js';
import type { Cancellation } from './cancellation.js';
import type { Exchange } from './exchange.js';
import { classify, UpstreamFailure } from './upstream.js';
import { costOf, readUsage, type Usage } from './usage.js';

export interface CascadeStep {
  target: Target;
  answer: ChatCompletion;
  usage: Usage;
  cost: number | null;
  verdict: Verdict;
}

export async function cascadeStep(
  deps: AttemptDeps,
  ex: Exchange,
  log: AttemptLog,
  { adapter, request }: Prepared,
  accept: readonly AcceptCheck[],
  signal: Cancellation,
): Promise<Exclude<Sent, { ok: unknown }> | { step: CascadeStep }> {
  const { target } = log;
  const chat = ex.parsed!.chat!;
  const sent = await send(deps, log, adapter, request, signal, false);
  if (!('ok' in sent)) return sent;

  let answer: ChatCompletion;
  let usage: Usage;
  let verdict: Verdict;
  try {
    const buf = await sent.ok.body.read();
    answer = adapter.answer(JSON.parse(buf.toString('utf8')));
    usage = await usageOf(readUsage(answer.usage), ex.parsed!, () => answerGenerated(answer));
    verdict = checkAnswer(accept, chat, answer);
  } catch (err) {
    // Whatever the answer was, the attempt ends here (a half-open target's probe included).
    const malformed = err instanceof SyntaxError || err instanceof TypeError;
    const failure = malformed ? new UpstreamFailure('network_error', 'upstream sent an answer that is not valid chat JSON') : classify(err, signal);
    return { unanswered: log.failover(failure, malformed ? sent.ok.status : 0) };
  }
  const cost = costOf(usage, target.price);
  log.succeeded(sent.ok.status, verdict);
  Object.assign(log.entry!, {
    prompt_tokens: usage.promptTokens,
    completion_tokens: usage.completionTokens,
    cost_usd: cost,
    accepted: verdict.accepted,
    reject_reason: verdict.rejectReason,
  });
  return { step: { target, answer, usage, cost, verdict } };
}

/** A climb in progress: the steps that answered, and whether the next call escalates past a rejection. */
export class Cascade {
  readonly steps: CascadeStep[] = [];
  /** The last step answered and was rejected: calling the next one is not a retry. */
  escalating = false;

  constructor(readonly accept: readonly AcceptCheck[]) {}

  answered(step: CascadeStep): void {
    this.steps.push(step);
    this.escalating = !step.verdict.accepted;
  }

  get lastAnswer(): CascadeStep | null {
    return this.steps.at(-1) ?? null;
  }
}

/** Cascades check whole chat answers; a request that can only pass through natively cannot climb. */
export function isCascade(route: Route, parsed: ParsedRequest): boolean {
  return route.strategy === 'CASCADE' && parsed.chat !== null && !parsed.nativeOnly;
}
