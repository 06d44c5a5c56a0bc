// The built-in prompt classifier: how much work does a request ask for?
//
// SIMPLE     a lookup, greeting, conversion, definition, short translation
// MEDIUM     one ordinary task: a summary, an email, an explanation, a small function or query
// COMPLEX    engineering or writing work with many parts: systems, long code changes, plans
// REASONING  a chain of reasoning with a right answer: proofs, derivations, constrained
//            algorithm design, multi-step math
//
// No model and no network: the request's last user turn is read once (prompt-features.ts) for
// cue families (task verbs, domain words, constraints, steps) and structure (length, pasted
// material, code, lists, math notation, complexity bounds). Each family's evidence saturates
// (a second "prove" adds less than the first, a fifth almost nothing), so repeating a word does
// not make a prompt hard; families are weighted and summed into an effort score, cut into
// tiers at two thresholds. Hard prompts are REASONING when the reasoning families outweigh the
// engineering ones. The confidence grows with the distance from the nearest tier boundary (for
// a hard prompt, also with the margin between reasoning and engineering).
//
// Written here rather than taken from a library: no maintained JavaScript package classifies
// prompt difficulty, and the routers that do (LiteLLM's, RouteLLM) are Python or need a model.
// The weights were tuned on the `tune` part of test/data/router-eval.jsonl only; `npm run
// eval:router` reports the held-out part separately.
import { readPrompt, type TextCounts } from './prompt-features.js';
import { Cue } from './prompt-lexicon.js';

export type Tier = 'SIMPLE' | 'MEDIUM' | 'COMPLEX' | 'REASONING';
export const TIERS: readonly Tier[] = ['SIMPLE', 'MEDIUM', 'COMPLEX', 'REASONING'];

export interface ClassifierMessage {
  role: 'system' | 'user' | 'assistant' | 'tool';
  text: string;
}

/** What the classifier sees of a request, whichever protocol it came in (chat, Responses, Messages). */
export interface ClassifierInput {
  messages: ClassifierMessage[];
  hasTools: boolean;
  hasImages: boolean;
  jsonMode: 'none' | 'json_object' | 'json_schema';
  /** 0 if unset. */
  maxTokens: number;
}

export interface Classification {
  tier: Tier;
  /** 0–1: grows with the distance of the prompt's score from the nearest tier boundary. */
  confidence: number;
}

/** A classification with the evidence behind it (for tuning and explanations). */
export interface ScoredPrompt extends Classification {
  /** The effort score: below EFFORT_MEDIUM is SIMPLE, from EFFORT_HARD on COMPLEX or REASONING. */
  effort: number;
  /** Named contributions to the effort score, non-zero ones only. */
  contributions: Record<string, number>;
}

export const EFFORT_MEDIUM = 0;
export const EFFORT_HARD = 1.8;

/** Weights of the effort score. Negative: evidence for an easy request. */
const W = {
  bias: -1.0,
  /** × log2(1 + request tokens / 8) */
  length: 1.0,
  /** × log2(1 + (material tokens + 6 per code line) / 40), at most MATERIAL_LOG_CAP */
  material: 0.25,
  greeting: -2.5,
  lookup: -1.1,
  convert: -1.0,
  edit: 0.4,
  explain: 1.0,
  snippet: 0.6,
  build: 1.6,
  systems: 1.2,
  proof: 3.2,
  math: 1.0,
  algorithm: 1.2,
  deliberate: 1.4,
  /** a task verb about its domain ("design" + "distributed", "prove" + "prime") says more than either */
  together: 0.8,
  constraint: 0.6,
  steps: 0.4,
  /** commas in the request beyond the first, up to 5: a list of requirements */
  commas: 1.0,
  /** more than one question */
  questions: 0.6,
  lists: 0.5,
  /** numbers beyond the second: quantities to reason with (or requirements) */
  numbers: 1.0,
  mathSymbols: 0.8,
  bounds: 1.5,
  /** request context */
  tools: 0.3,
  jsonSchema: 0.2,
  longOutput: 0.4,
  images: 0.3,
} as const;

/** A pasted text's size says little past a page (~600 tokens): log2(1 + 600 / 40) = 4. */
const MATERIAL_LOG_CAP = 4;
/** However much material mentions a domain, it counts as at most one mention in the request. */
const MATERIAL_CUE_CAP = 1;
/** Cues in pasted material count this much of cues in the request. */
const MATERIAL_WEIGHT = 0.25;
/** Cues in the earlier turns of a conversation count this much. */
const CONTEXT_WEIGHT = 0.3;
/** Characters of earlier turns read for context (from the most recent backwards). */
const CONTEXT_CHARS = 1500;
/** How steeply confidence rises with the distance from a tier boundary. */
const CONFIDENCE_SLOPE = 2.0;

/** 0, 0.6, 0.84, 0.94 … for 0, 1, 2, 3 pieces of evidence: each repeat adds less. */
const saturate = (count: number) => 1 - 0.4 ** count;
const log2p = (x: number) => Math.log2(1 + x);
const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

export function classifyPrompt(input: ClassifierInput): Classification {
  const e = evaluate(input);
  return e ? decide(e.effort, e.reasoning, e.engineering) : NOTHING_TO_READ;
}

export function scorePrompt(input: ClassifierInput): ScoredPrompt {
  const e = evaluate(input);
  if (!e) return { ...NOTHING_TO_READ, effort: W.bias, contributions: {} };
  const contributions = Object.fromEntries(Object.entries(e.terms).filter(([, value]) => value !== 0));
  return { ...decide(e.effort, e.reasoning, e.engineering), effort: e.effort, contributions };
}

/** Nothing to read (no text, or an image alone): no evidence either way. */
const NOTHING_TO_READ: Classification = { tier: 'SIMPLE', confidence: 0.5 };

/**
 * The effort score's terms, and the reasoning and engineering sums that split hard prompts.
 * (Plain functions and one object shape: this runs on every classified request, and V8 keeps
 * such code optimized whatever the prompts look like.)
 */
function evaluate(input: ClassifierInput) {
  const lastUser = findLastUserTurn(input.messages);
  if (lastUser < 0 || input.messages[lastUser].text.trim() === '') return null;
  const prompt = readPrompt(input.messages[lastUser].text);
  const context = readContext(input.messages, lastUser);
  const req = prompt.instruction;
  const material = prompt.material;
  // A greeting inside a long request is politeness, not the request; lookups and conversions
  // are short questions, and "how many" in a long word problem is not a lookup.
  const greetingShort = Math.min(1, 6 / req.tokens);
  const lookupShort = Math.min(1, 12 / req.tokens);
  const codeLines = prompt.codeLines + (context ? CONTEXT_WEIGHT * context.codeLines : 0);
  const build = asked(req, context, Cue.Build);
  const systems = inDomain(req, context, material, Cue.Systems);
  const proof = asked(req, context, Cue.Proof);
  const math = inDomain(req, context, material, Cue.Math);
  const terms = {
    bias: W.bias,
    length: W.length * log2p(req.tokens / 8),
    material: W.material * Math.min(MATERIAL_LOG_CAP, log2p((material.tokens + 6 * codeLines) / 40)),
    greeting: W.greeting * asked(req, context, Cue.Greeting) * greetingShort,
    lookup: W.lookup * asked(req, context, Cue.Lookup) * lookupShort,
    convert: W.convert * asked(req, context, Cue.Convert) * lookupShort,
    edit: W.edit * asked(req, context, Cue.Edit),
    explain: W.explain * asked(req, context, Cue.Explain),
    constraint: W.constraint * asked(req, context, Cue.Constraint),
    steps: W.steps * asked(req, context, Cue.Steps),
    commas: (W.commas * Math.min(Math.max(req.commas - 1, 0), 5)) / 5,
    questions: (W.questions * Math.min(Math.max(req.questions - 1, 0), 3)) / 3,
    // engineering
    build: W.build * build,
    systems: W.systems * systems,
    buildSystems: W.together * build * systems,
    snippet: W.snippet * asked(req, context, Cue.Snippet),
    lists: (W.lists * Math.min(req.listLines, 5)) / 5,
    // reasoning
    proof: W.proof * proof,
    math: W.math * math,
    proofMath: W.together * proof * math,
    algorithm: W.algorithm * inDomain(req, context, material, Cue.Algorithm),
    deliberate: W.deliberate * asked(req, context, Cue.Deliberate),
    mathSymbols: W.mathSymbols * saturate(req.mathSymbols / 2),
    bounds: W.bounds * saturate(req.bounds),
    numbers: W.numbers * saturate(Math.max(0, req.numbers - 2) / 2),
    // the request around the prompt
    tools: input.hasTools ? W.tools : 0,
    jsonSchema: input.jsonMode === 'json_schema' ? W.jsonSchema : 0,
    longOutput: input.maxTokens >= 4000 ? W.longOutput : 0,
    images: input.hasImages ? W.images : 0,
  };
  const engineering = terms.build + terms.systems + terms.buildSystems + terms.snippet + terms.lists;
  const reasoning = terms.proof + terms.math + terms.proofMath + terms.algorithm + terms.deliberate + terms.mathSymbols + terms.bounds + terms.numbers;
  const effort =
    terms.bias +
    terms.length +
    terms.material +
    terms.greeting +
    terms.lookup +
    terms.convert +
    terms.edit +
    terms.explain +
    terms.constraint +
    terms.steps +
    terms.commas +
    terms.questions +
    engineering +
    reasoning +
    terms.tools +
    terms.jsonSchema +
    terms.longOutput +
    terms.images;
  return { terms, effort, reasoning, engineering };
}

/** Saturated evidence that the request asks for this (its words, and the conversation's). */
function asked(req: TextCounts, context: TextCounts | null, family: number): number {
  return saturate(req.cues[family] + (context ? CONTEXT_WEIGHT * context.cues[family] : 0));
}

/**
 * … plus what pasted material says about the domain: a log that mentions latency is about
 * systems (a question about it need not be hard, so material adds at most MATERIAL_CUE_CAP).
 */
function inDomain(req: TextCounts, context: TextCounts | null, material: TextCounts, family: number): number {
  const fromMaterial = Math.min(MATERIAL_CUE_CAP, MATERIAL_WEIGHT * material.cues[family]);
  return saturate(req.cues[family] + (context ? CONTEXT_WEIGHT * context.cues[family] : 0) + fromMaterial);
}

/** Tier from the effort score; among hard prompts, reasoning vs engineering evidence. */
function decide(effort: number, reasoning: number, engineering: number): Classification {
  if (effort < EFFORT_MEDIUM) return { tier: 'SIMPLE', confidence: sigmoid(CONFIDENCE_SLOPE * (EFFORT_MEDIUM - effort)) };
  if (effort < EFFORT_HARD) {
    const margin = Math.min(effort - EFFORT_MEDIUM, EFFORT_HARD - effort);
    return { tier: 'MEDIUM', confidence: sigmoid(CONFIDENCE_SLOPE * margin) };
  }
  const hard = sigmoid(CONFIDENCE_SLOPE * (effort - EFFORT_HARD));
  const which = sigmoid(CONFIDENCE_SLOPE * Math.abs(reasoning - engineering));
  return { tier: reasoning > engineering ? 'REASONING' : 'COMPLEX', confidence: hard * which };
}

/** The index of the last user message (the last message when none is from the user; -1 when empty). */
export function findLastUserTurn(messages: ClassifierMessage[]): number {
  for (let i = messages.length - 1; i >= 0; i--) if (messages[i].role === 'user') return i;
  return messages.length - 1;
}

/**
 * The turns before the last user turn, most recent first, up to CONTEXT_CHARS: "now make it
 * thread-safe" after a page of code is a code task. The system prompt is left out: it is the
 * same for every request of an application and says little about this one.
 */
function readContext(messages: ClassifierMessage[], lastUser: number): (TextCounts & { codeLines: number }) | null {
  const parts: string[] = [];
  let budget = CONTEXT_CHARS;
  for (let i = lastUser - 1; i >= 0 && budget > 0; i--) {
    if (messages[i].role === 'system') continue;
    const text = messages[i].text;
    parts.unshift(text.length > budget ? text.slice(text.length - budget) : text);
    budget -= text.length;
  }
  if (parts.length === 0) return null;
  const read = readPrompt(parts.join('\n\n'));
  const all = read.instruction;
  for (let i = 0; i < all.cues.length; i++) all.cues[i] += read.material.cues[i];
  return Object.assign(all, { codeLines: read.codeLines });
}

// V8 optimizes the scanner and the scorer for the kinds of values and branches it has seen.
// Optimized on English-only prompts, they are thrown away by the first Chinese prompt, list or
// code block ("insufficient type feedback"), and V8 was seen taking thousands of calls to
// optimize them again (0.25 ms instead of 0.04 ms a call meanwhile; without this warm-up, a
// 2k-token English prompt also stayed at 0.08 ms instead of 0.05 after a mixed workload).
// Scoring a few prompts that take every branch (~1 ms, once, when the gateway starts) gives
// V8 the whole picture up front. Pure computation: nothing outside this module changes.
const WARM_UP = [
  'Hi "there": 设计一个分布式系统，并证明它“正确”。\n\n```js\nx = 1;\n```\n\nThen: 1. O(n) 「a」 ≤ 3:45 tl;dr, ok?',
  'Translate this: café — résumé’s 12,5 x^2 ∑ (a) [b] {c} 推理过程 动态规划 是什么?\n- one\n* two\n• three\n2) four\n\n> quoted',
  `Summarize in one line:\n\n${'Prose about systems and latency, 2024. '.repeat(120)}\n\n\`\`\`\n${'code();\n'.repeat(200)}`,
];
export function warmUpClassifier(): void {
  for (const [i, text] of WARM_UP.entries()) {
    scorePrompt({
      messages:
        i === 0
          ? [{ role: 'user', text }]
          : [
              { role: 'system', text: 'Be brief.' },
              { role: 'user', text: 'hello' },
              { role: 'assistant', text: 'Hi! How can I help?' },
              { role: 'user', text },
            ],
      hasTools: i === 1,
      hasImages: i === 2,
      jsonMode: i === 1 ? 'json_schema' : 'none',
      maxTokens: i * 4000,
    });
  }
}
