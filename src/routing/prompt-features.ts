// What the prompt classifier reads from a text, in one pass over its characters.
//
// The hot path must stay well under 0.2 ms on a 2k-token prompt, so nothing here builds
// strings or arrays per word: cue words and phrases are hashed as they are read and looked up
// in the lexicon (prompt-lexicon.ts). Texts longer than 2 × SAMPLE_CHARS are read head and
// tail only (the request is almost always at one end of a pasted text); the skipped middle is
// counted by size.
//
// Where a cue sits matters: "summarize this in one line" followed by an article about design
// trade-offs asks for a summary, not a design. A text is cut into paragraphs at blank lines;
// the first and last paragraphs are the request ("instruction") when short (see splitRequest),
// the rest is pasted material, and so are code between ``` fences, quoted text and what follows
// a lead-in like "Translate this into French:". The classifier weighs material's cues less.
import { CUE_COUNT, Cue, FNV_OFFSET, fnvStep, isCjk, LEX, lookupCjk, SPACE } from './prompt-lexicon.js';

/** Counters for one stretch of text (a paragraph, or all of the material). */
export interface TextCounts {
  /** Position-independent cue counts by Cue family. */
  cues: Float64Array;
  /** English words, numbers and Chinese characters/1.7: a token-like size. */
  tokens: number;
  numbers: number;
  /** , 、 (and ， as half): several in a request usually mean a list of requirements. */
  commas: number;
  questions: number;
  /** Lines starting with "1." / "2)" / "-" / "*" / "•". */
  listLines: number;
  /** ^ ² ³ √ ∑ ∫ ≤ ≥ ≠ ∞ = and friends, outside code. */
  mathSymbols: number;
  /** O(…), Θ(…), Ω(…): an asked-for complexity bound. */
  bounds: number;
  /** Ends with ':' — introduces pasted material. */
  introducesMaterial: boolean;
  /** Starts right after a code block: prose after pasted code is about the code. */
  afterCode: boolean;
}

export interface PromptFeatures {
  /** The request itself: short first and last paragraphs. */
  instruction: TextCounts;
  /** Pasted material: the other paragraphs (cues only; counted separately so they weigh less). */
  material: TextCounts;
  /** Lines between ``` fences (estimated for the unread middle of a long text). */
  codeLines: number;
}

/** Read at most this many characters from each end of a text. */
export const SAMPLE_CHARS = 2000;
/** Besides the shorter end, the other end of a text is part of the request when this short. */
const SHORT_PARAGRAPH_TOKENS = 15;
/** … or, right after a code block, up to this long. */
const AFTER_CODE_TOKENS = 60;
const CJK_CHARS_PER_TOKEN = 1.7;

function emptyCounts(): TextCounts {
  return {
    cues: new Float64Array(CUE_COUNT),
    tokens: 0,
    numbers: 0,
    commas: 0,
    questions: 0,
    listLines: 0,
    mathSymbols: 0,
    bounds: 0,
    introducesMaterial: false,
    afterCode: false,
  };
}

function resetCounts(counts: TextCounts): TextCounts {
  counts.cues.fill(0);
  counts.tokens = counts.numbers = counts.commas = counts.questions = counts.listLines = counts.mathSymbols = counts.bounds = 0;
  counts.introducesMaterial = counts.afterCode = false;
  return counts;
}

function addInto(into: TextCounts, from: TextCounts): void {
  for (let i = 0; i < CUE_COUNT; i++) into.cues[i] += from.cues[i];
  into.tokens += from.tokens;
  into.numbers += from.numbers;
  into.commas += from.commas;
  into.questions += from.questions;
  into.listLines += from.listLines;
  into.mathSymbols += from.mathSymbols;
  into.bounds += from.bounds;
}

/** Characters that count as math notation when they appear outside code (1 by char code). */
const MATH_SYMBOL = new Uint8Array(0x2300);
for (const c of '^²³√∑∫≤≥≠∞π±∈∀∃⇒→×÷=θλ₁₂₃ₙ⁵') MATH_SYMBOL[c.charCodeAt(0)] = 1;

/** Letters and digits start a word (lower-case ASCII, digits, Latin letters with accents). */
const isWordStart = (c: number) => (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57) || (c >= 0xc0 && c <= 0x24f);
/** … and apostrophe, hyphen and ';' ("tl;dr") continue one; c is lower-cased already. */
const isWordChar = (c: number) => (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c === 39 || c === 45 || c === 59 || (c >= 0xc0 && c <= 0x24f);

/**
 * One pass over the text. Splits it into paragraphs (first, middle, last), counts cues and
 * structure per paragraph, and finally decides which paragraphs are the request.
 */
export function readPrompt(text: string): PromptFeatures {
  return new PromptReader(text).read();
}

/**
 * The state of one pass. A class rather than closures: its methods are compiled once, and the
 * hot loop reads fields of one object whose shape never changes.
 */
class PromptReader {
  // Paragraphs: the first, the latest finished one (the last, once the text ends), and
  // everything in between added up as material.
  private first: TextCounts | null = null;
  private latest: TextCounts | null = null;
  private current = emptyCounts();
  private readonly material = emptyCounts();
  /** Paragraph counters already added to the material, for reuse. */
  private readonly spare: TextCounts[] = [];
  private codeLines = 0;
  // Quoted words are mentioned, not asked for ("what does \"prove\" mean when baking?"), and
  // so is what follows a short lead-in like "Translate this into French:": both are material.
  private quoted = false;
  private leadIn = false;
  private into = this.current;
  // Phrase state: the words before the current one, as far as they may begin a phrase.
  private prevWord = 0; // hash of the previous word when it may start a phrase (0: none)
  private prevPair = 0; // hash of the previous two-word phrase when it may start one (0: none)
  // Chinese state: the previous three Chinese characters (0: none).
  private cjk1 = 0;
  private cjk2 = 0;
  private cjk3 = 0;
  // Line state.
  private lineStart = true;
  private blankRun = 0; // consecutive newlines with only spaces between them
  private inFence = false;
  private lastVisible = 0; // last non-space character code of the current paragraph

  constructor(private readonly text: string) {}

  read(): PromptFeatures {
    const { text } = this;
    const length = text.length;
    if (length > 2 * SAMPLE_CHARS) {
      this.scan(0, SAMPLE_CHARS);
      this.endParagraph();
      // The unread middle is material, as dense in tokens as the head; the head's last
      // paragraph is not the text's last.
      const headTokens = this.first!.tokens + this.material.tokens + (this.latest?.tokens ?? 0);
      this.material.tokens += (headTokens / SAMPLE_CHARS) * (length - 2 * SAMPLE_CHARS);
      if (this.latest) addInto(this.material, this.latest);
      this.latest = null;
      // Inside a code block at the cut? Then the tail has an odd number of fences.
      this.inFence = countFences(text, length - SAMPLE_CHARS) % 2 === 1;
      this.scan(length - SAMPLE_CHARS, length);
      this.codeLines *= length / (2 * SAMPLE_CHARS);
    } else {
      this.scan(0, length);
    }
    this.endParagraph();
    return { ...splitRequest(this.first!, this.latest, this.material), codeLines: this.codeLines };
  }

  private scan(from: number, to: number): void {
    const { text } = this;
    for (let i = from; i < to; i++) {
      const c = text.charCodeAt(i);
      if (c === 10 /* \n */) {
        this.breakPhrase();
        if (this.inFence) this.codeLines++;
        this.lineStart = true;
        if (++this.blankRun === 2 && !this.inFence) this.endParagraph();
        continue;
      }
      if (c === 32 || c === 9 || c === 13) continue;
      if (this.lineStart) {
        this.lineStart = false;
        this.blankRun = 0;
        if (c === 96 /* ` */ && text.charCodeAt(i + 1) === 96 && text.charCodeAt(i + 2) === 96) {
          this.breakPhrase();
          this.inFence = !this.inFence;
          // A code block ends the paragraph that introduced it: "Refactor this:\n```…```".
          if (this.inFence) this.endParagraph();
          else this.current.afterCode = true;
          i = skipToLineEnd(text, i, to) - 1;
          continue;
        }
        const marker = this.inFence ? 0 : listMarkerLength(text, i, to);
        if (marker > 0) {
          this.current.listLines++;
          i += marker - 1; // "1." is a marker, not a number
          continue;
        }
      }
      if (this.inFence) {
        // Code is material: counted by lines, its words are not cues.
        i = skipToLineEnd(text, i, to) - 1;
        continue;
      }
      this.lastVisible = c;
      if (isWordStart(c)) {
        i = this.readWord(i, to) - 1;
        continue;
      }
      if (isCjk(c)) {
        this.prevWord = this.prevPair = 0;
        this.into.tokens += 1 / CJK_CHARS_PER_TOKEN;
        lookupCjk(this.into.cues, c, this.cjk1, this.cjk2, this.cjk3);
        this.cjk3 = this.cjk2;
        this.cjk2 = this.cjk1;
        this.cjk1 = c;
        continue;
      }
      this.cjk1 = this.cjk2 = this.cjk3 = 0;
      this.prevWord = this.prevPair = 0;
      const into = this.into;
      if (c === 34 /* " */ || c === 96 /* ` */) this.aside(!this.quoted, this.leadIn);
      else if (c === 0x201c || c === 0x300c || c === 0x300e) this.aside(true, this.leadIn);
      else if (c === 0x201d || c === 0x300d || c === 0x300f) this.aside(false, this.leadIn);
      else if ((c === 58 || c === 0xff1a) && !this.leadIn && isLeadIn(this.current, text.charCodeAt(i + 1))) this.aside(this.quoted, true);
      else if (c === 0xff0c)
        into.commas += 0.5; // Chinese prose separates clauses with ，
      else if (c === 44 || c === 0x3001) into.commas++;
      else if (c === 63 || c === 0xff1f) into.questions++;
      else if (c === 40 /* ( */ && isBoundMarker(text, i)) into.bounds++;
      else if (c < MATH_SYMBOL.length && MATH_SYMBOL[c] === 1) into.mathSymbols++;
    }
  }

  /**
   * Reads the word (letters, digits, and inside a word ' - ;) starting at i, hashing it alone
   * and as the end of a two- and three-word phrase, and counts its cues. Returns where it ends.
   */
  private readWord(start: number, to: number): number {
    const { text } = this;
    let h1 = FNV_OFFSET;
    let h2 = this.prevWord !== 0 ? fnvStep(this.prevWord, SPACE) : 0;
    let h3 = this.prevPair !== 0 ? fnvStep(this.prevPair, SPACE) : 0;
    let i = start;
    let last = 0;
    for (; i < to; i++) {
      let c = text.charCodeAt(i);
      if (c >= 65 && c <= 90)
        c += 32; // ASCII lower case
      else if (c === 0x2019) c = 39; // ’ → '
      if (!isWordChar(c)) break;
      h1 = fnvStep(h1, c);
      h2 = fnvStep(h2, c);
      h3 = fnvStep(h3, c);
      last = c;
    }
    this.lastVisible = last;
    this.cjk1 = this.cjk2 = this.cjk3 = 0;
    const into = this.into;
    into.tokens++;
    const first = text.charCodeAt(start);
    if (first >= 48 && first <= 57) {
      into.numbers++;
      this.prevWord = this.prevPair = 0;
      return i;
    }
    const single = LEX.words.get(h1);
    if (single !== undefined) into.cues[single]++;
    if (this.prevWord !== 0) {
      const pair = LEX.words.get(h2);
      if (pair !== undefined) into.cues[pair]++;
      if (this.prevPair !== 0) {
        const triple = LEX.words.get(h3);
        if (triple !== undefined) into.cues[triple]++;
      }
    }
    this.prevPair = this.prevWord !== 0 && LEX.phraseStarts.has(h2) ? h2 : 0;
    this.prevWord = LEX.phraseStarts.has(h1) ? h1 : 0;
    return i;
  }

  private breakPhrase(): void {
    this.prevWord = this.prevPair = 0;
    this.cjk1 = this.cjk2 = this.cjk3 = 0;
  }

  private endParagraph(): void {
    this.breakPhrase();
    const done = this.current;
    done.introducesMaterial = this.lastVisible === 58 /* : */ || this.lastVisible === 0xff1a; /* ： */
    let next: TextCounts | undefined;
    if (!this.first) this.first = done;
    else if (done.tokens > 0) {
      if (this.latest) {
        addInto(this.material, this.latest);
        this.spare.push(this.latest);
      }
      this.latest = done;
    } else next = done; // an empty paragraph: nothing to keep
    this.into = this.current = resetCounts(next ?? this.spare.pop() ?? emptyCounts());
    this.quoted = this.leadIn = false;
    this.lastVisible = 0;
  }

  private aside(quoted: boolean, leadIn: boolean): void {
    this.breakPhrase();
    this.quoted = quoted;
    this.leadIn = leadIn;
    this.into = quoted || leadIn ? this.material : this.current;
  }
}

/** Words before a colon that hand over a text to work on: "Translate this into French: …". */
const LEAD_IN_MAX_TOKENS = 12;

function isLeadIn(soFar: TextCounts, next: number): boolean {
  const handsOver = soFar.cues[Cue.Edit] + soFar.cues[Cue.Convert] + soFar.cues[Cue.Explain] > 0;
  // "3:45" is a time, not a lead-in: the colon must be followed by a space or a line end.
  const endsClause = next === 32 || next === 10 || next === 13 || Number.isNaN(next) || next >= 0x3000;
  return handsOver && endsClause && soFar.tokens <= LEAD_IN_MAX_TOKENS;
}

/**
 * A single paragraph is the request whatever its size. Otherwise the request is the shorter of
 * the first and last paragraphs, plus the other one when it is short too (a question after a
 * pasted log), when it is the first and ends with a colon ("Summarize this:"), or when it is
 * the last and follows a code block (prose after pasted code is about the code). Everything in
 * between is material.
 */
function splitRequest(first: TextCounts, last: TextCounts | null, material: TextCounts): Pick<PromptFeatures, 'instruction' | 'material'> {
  if (!last) return { instruction: first, material };
  const firstIsShorter = first.tokens <= last.tokens;
  const firstIn = firstIsShorter || first.tokens <= SHORT_PARAGRAPH_TOKENS || first.introducesMaterial;
  const lastIn = !firstIsShorter || last.tokens <= SHORT_PARAGRAPH_TOKENS || (last.afterCode && last.tokens <= AFTER_CODE_TOKENS);
  const instruction = emptyCounts();
  addInto(firstIn ? instruction : material, first);
  addInto(lastIn ? instruction : material, last);
  return { instruction, material };
}

/** "O(n log n)", "Θ(n)", "O(1)": a capital O/Θ/Ω right before "(", not ending a word. */
function isBoundMarker(text: string, i: number): boolean {
  const before = text.charCodeAt(i - 1);
  if (before !== 79 && before !== 0x398 && before !== 0x3a9) return false;
  const beforeThat = i >= 2 ? text.charCodeAt(i - 2) : 32;
  return !((beforeThat >= 65 && beforeThat <= 90) || (beforeThat >= 97 && beforeThat <= 122));
}

/** The length of a list marker at the start of a line ("1. ", "12) ", "- ", "* ", "• "), or 0. */
function listMarkerLength(text: string, i: number, to: number): number {
  const c = text.charCodeAt(i);
  if (c === 45 || c === 42 || c === 0x2022) return text.charCodeAt(i + 1) === 32 ? 1 : 0;
  let j = i;
  while (j < to && j < i + 3 && text.charCodeAt(j) >= 48 && text.charCodeAt(j) <= 57) j++;
  if (j === i) return 0;
  const after = text.charCodeAt(j);
  return after === 46 || after === 41 || after === 0x3001 ? j + 1 - i : 0;
}

function countFences(text: string, from: number): number {
  let n = 0;
  for (let i = text.indexOf('```', from); i !== -1; i = text.indexOf('```', i + 3)) n++;
  return n;
}

function skipToLineEnd(text: string, i: number, to: number): number {
  const end = text.indexOf('\n', i);
  return end === -1 || end > to ? to : end;
}
