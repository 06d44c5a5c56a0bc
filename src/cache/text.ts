// Text analysis for the semantic cache, shared by the local embedder and the hit guard.
//
// Two questions get asked of a prompt:
//  1. Which words carry its meaning? (content tokens: lower-cased, punctuation and filler
//     words dropped, contractions expanded so that "isn't" keeps its "not").
//  2. Which details must match exactly for two prompts to have the same answer? Numbers,
//     negations, units, dates and names: an embedding sees "15 % of 240" and "15 % of 250" as
//     near-identical, but the answers differ. This "fingerprint" is what keeps false hits rare.

/** Words that change how a question is asked, never what it asks. */
const FILLER = new Set(
  (
    "a an the please pls kindly hey hi hello thanks thank thx sorry you your u me my i i'm im we our us can could would will " +
    'should shall may might must do does did just quickly quick really actually basically simply briefly ' +
    'tell explain wondering was were be been being am is are so um uh ok okay also like want need help ' +
    'to of in on at for with by about from as into it its this that these those there here some any ' +
    'and or but if then than what whats which who whom whose when where why how'
  ).split(' '),
);

/** Prepositions that fix roles ("from X to Y"): kept as tokens so bigrams see direction. */
const ROLE_WORDS = new Set(['to', 'from', 'into', 'vs', 'versus', 'than', 'before', 'after', 'over', 'under', 'between']);

/**
 * Filler to the embedding, yet they change the answer: which thing a question asks for (when,
 * where, who…: "what" and "which" are how a rewording says "tell me"), and the past ("who was
 * the CEO" is not "who is"). They must agree, as details do.
 */
const QUESTION_KINDS = new Set(['who', 'whom', 'whose', 'when', 'where', 'why', 'how']);
const PAST = new Set(['was', 'were', 'did', 'had']);
/**
 * What the asker asks about themselves: whether they can ("can I") or whether they should
 * ("should I", "must we"). Only before "I"/"we" ("can you explain" is politeness), and not
 * after a question word.
 */
const MODALITY = new Map([
  ['can', 'can'],
  ['could', 'can'],
  ['may', 'can'],
  ['might', 'can'],
  ['should', 'should'],
  ['must', 'should'],
  ['shall', 'should'],
  ['ought', 'should'],
]);
const QUESTION_WORDS = new Set([...QUESTION_KINDS, 'what', 'which']);
/** A choice between things ("Rust or Go") is not a question about both ("Rust and Go"). */
const CHOICE = new Set(['or', 'vs', 'versus', 'either']);

const NEGATIONS = new Set(['not', 'no', 'never', 'without', 'except', 'none', 'nor', 'neither', 'nothing', 'nobody', 'cannot', 'excluding', 'unless']);

const UNITS = new Set(
  (
    'km kilometer kilometers kilometre kilometres mile miles mi m meter meters metre metres cm centimeter centimeters mm ' +
    'millimeter millimeters inch inches ft foot feet yard yards kg kilogram kilograms g gram grams mg lb lbs pound pounds ' +
    'oz ounce ounces l liter liters litre litres ml milliliter milliliters gallon gallons celsius fahrenheit kelvin ' +
    'c f k °c °f b byte bytes kb kib mb mib gb gib tb tib pb bit bits mbps gbps hz khz mhz ghz ' +
    'ms millisecond milliseconds s sec second seconds min minute minutes h hr hour hours day days week weeks month months ' +
    'year years usd eur gbp jpy cny rmb inr dollar dollars euro euros yen yuan rupee rupees cent cents ' +
    'px em rem pt percent w kw kwh watt watts volt volts v amp amps mph kph knots'
  ).split(' '),
);

const DATE_WORDS = new Set(
  (
    'january february march april june july august september october november december ' +
    'jan feb mar apr jun jul aug sep sept oct nov dec monday tuesday wednesday thursday friday saturday sunday ' +
    'today tomorrow yesterday tonight morning afternoon evening noon midnight weekend weekday quarter q1 q2 q3 q4 ' +
    'last next previous current first second third fourth final'
  ).split(' '),
);

const CONTRACTIONS: Array<[RegExp, string]> = [
  [/\bcan['’]t\b/gi, 'can not'],
  [/\bwon['’]t\b/gi, 'will not'],
  [/\bshan['’]t\b/gi, 'shall not'],
  [/n['’]t\b/gi, ' not'],
  [/['’]re\b/gi, ' are'],
  [/['’]ve\b/gi, ' have'],
  [/['’]ll\b/gi, ' will'],
  [/['’]d\b/gi, ' would'],
  [/['’]m\b/gi, ' am'],
  [/['’]s\b/gi, ''],
];

// Sentence punctuation; a number (a sign where it stands alone, "-5" but not the "-" of
// "2020-2021"; decimals, thousands separators, an attached unit: 3pm, 5GB); an operator (==,
// ===, ->, &&, and single ones: "17*23" and "17+23", "5 < 3" and "5 > 3" ask different
// questions; not "-", a hyphen in prose); a run of letters/digits.
const TOKEN = /[.!?:;\n]|(?:(?<![\p{L}\p{N}.,])-)?\d[\d,]*(?:\.\d+)?[\p{L}%°]*|(?=[!-]*[=<>&|+*/%^~])[=<>&|+*/%^~!-]{2,}|[=<>&|+*/^~]|[\p{L}\p{N}°]+/gu;

/** Ways of asking that add nothing to the question (removed before tokenizing). */
const FILLER_PHRASES =
  /\b(?:i was wondering|i(?:'|’)?d like to know|i would like to know|do you (?:happen to )?know|(?:could|can|would) you (?:please )?(?:tell|remind|show) me|sorry to bother you|thanks? (?:you )?in advance|thanks a lot|quick question|just curious|quick one|real quick)\b/gi;

/** Number words change the answer as much as digits do ("per thousand" vs "per million"). */
const NUMBER_WORDS = new Set(
  (
    'zero two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen ' +
    'eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred thousand million billion trillion ' +
    'dozen half twice double triple'
  ).split(' '),
);

const SMALL_NUMBERS =
  'zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty'.split(' ');
const TENS = new Map([
  ['thirty', 30],
  ['forty', 40],
  ['fifty', 50],
  ['sixty', 60],
  ['seventy', 70],
  ['eighty', 80],
  ['ninety', 90],
]);

export interface TextAnalysis {
  /** Content tokens in order (filler dropped, role words and negations kept), stemmed. */
  tokens: string[];
  /** The details that must match for a hit: numbers, negations, units, dates, role frames. */
  fingerprint: string;
  /** Names: words capitalised mid-sentence, acronyms, words mixing letters with digits or inner capitals. */
  names: string[];
}

export function analyze(text: string): TextAnalysis {
  const shouting = isShouting(text);
  let expanded = text.replace(FILLER_PHRASES, ' ');
  for (const [pattern, replacement] of CONTRACTIONS) expanded = expanded.replace(pattern, replacement);
  const tokens: string[] = [];
  const names: string[] = [];
  const details: string[] = [];
  let negations = 0;
  let past = false;
  let choice = false;
  const kinds = new Set<string>();
  const modality = new Set<string>();
  let previous = '';
  let earlier = '';
  let sentenceStart = true;
  for (const m of expanded.matchAll(TOKEN)) {
    const word = m[0];
    if (/^[.!?:;\n]$/.test(word)) {
      sentenceStart = true;
      continue;
    }
    const atStart = sentenceStart;
    sentenceStart = false;
    if (/^-?\d/.test(word)) {
      const n = normalizeNumber(word.toLowerCase());
      details.push(n);
      tokens.push(n);
      continue;
    }
    if (!/[\p{L}\p{N}]/u.test(word)) {
      // An operator: "==" and "===" ask different questions.
      details.push(word);
      tokens.push(word);
      continue;
    }
    const lower = word.toLowerCase();
    const twoBefore = earlier;
    const before = previous;
    earlier = previous;
    previous = lower;
    // "product A but not product B": a lone capital mid-sentence is a label, not the article.
    if (/^\p{Lu}$/u.test(word) && word !== 'I' && !atStart && !shouting) {
      tokens.push(lower);
      names.push(lower);
      continue;
    }
    if (NEGATIONS.has(lower)) negations++;
    if (QUESTION_KINDS.has(lower)) kinds.add(lower === 'whom' || lower === 'whose' ? 'who' : lower);
    if (PAST.has(lower)) past = true;
    if (CHOICE.has(lower)) choice = true;
    // "How can I…" is "How do I…": after a question word the modal asks nothing of its own.
    if ((lower === 'i' || lower === 'we') && MODALITY.has(before) && !QUESTION_WORDS.has(twoBefore)) modality.add(MODALITY.get(before)!);
    if (NUMBER_WORDS.has(lower)) {
      // "five ideas" and "5 ideas" ask the same.
      const n = SMALL_NUMBERS.indexOf(lower);
      const value = n >= 0 ? String(n) : TENS.has(lower) ? String(TENS.get(lower)) : lower;
      details.push(value);
      tokens.push(value);
      continue;
    } else if (UNITS.has(lower) || DATE_WORDS.has(lower)) details.push(unitKey(lower));
    if (FILLER.has(lower) && !ROLE_WORDS.has(lower) && !NEGATIONS.has(lower)) continue;
    const token = stem(lower);
    tokens.push(token);
    if (!shouting && isName(word, atStart) && !UNITS.has(lower) && !DATE_WORDS.has(lower)) names.push(token);
  }
  details.sort();
  // Parity, not count: "not … no" and "never" both negate once as far as the answer goes.
  const asked = [...kinds, ...modality].sort().join(',');
  const fingerprint = `${details.join(',')}|${negations % 2}|${asked}|${past ? 'past' : ''}|${choice ? 'choice' : ''}|${roleFrames(tokens).join(',')}`;
  return { tokens, fingerprint, names };
}

/**
 * Who does what to whom: each role word with the word after it, each negation with the two
 * after it ("but not product B"). "from MySQL to PostgreSQL" and "from PostgreSQL to MySQL"
 * share every word but no frame; moving a whole clause ("Without a loop, how do I…" / "How do
 * I … without a loop?") keeps them.
 */
function roleFrames(tokens: string[]): string[] {
  const frames: string[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const span = ROLE_WORDS.has(tokens[i]) ? 1 : NEGATIONS.has(tokens[i]) ? 2 : 0;
    if (span) frames.push(`${tokens[i]}>${tokens.slice(i + 1, i + 1 + span).join(' ')}`);
  }
  return frames.sort();
}

/** ALL CAPS or Title Case Text Says Nothing About Names. */
function isShouting(text: string): boolean {
  const words = text.match(/\p{L}+/gu) ?? [];
  const letters = words.join('');
  const upper = letters.replace(/\P{Lu}/gu, '').length;
  if (words.length >= 2 && upper / letters.length > 0.6) return true;
  // Short questions are often mostly names ("Who founded Microsoft?"): title case needs more words.
  return words.length >= 4 && words.filter((w) => /^\p{Lu}/u.test(w)).length / words.length > 0.6;
}

/**
 * True when two prompts agree on every detail that changes the answer: the fingerprint, and
 * each name appears as often in one as in the other ("pros and cons of Django" vs "of Flask"
 * when both prompts mention both).
 */
export function detailsAgree(a: TextAnalysis, b: TextAnalysis): boolean {
  if (a.fingerprint !== b.fingerprint) return false;
  for (const name of new Set([...a.names, ...b.names])) {
    if (count(a.tokens, name) !== count(b.tokens, name)) return false;
  }
  return true;
}

function count(tokens: string[], token: string): number {
  let n = 0;
  for (const t of tokens) if (t === token) n++;
  return n;
}

/** Capitalised but not starting a sentence, an acronym, or letters mixed with digits/inner capitals (GPT4, iPhone). */
function isName(word: string, atStart: boolean): boolean {
  if (FILLER.has(word.toLowerCase())) return false;
  const capitalised = /^\p{Lu}/u.test(word);
  const acronym = /^\p{Lu}{2,}\d*$/u.test(word);
  const mixed = /\p{L}/u.test(word) && (/\d/.test(word) || /\p{Ll}\p{Lu}/u.test(word));
  return (capitalised && !atStart) || acronym || mixed;
}

/** "1,000" and "1000" are one number; an attached unit stays with it ("3pm" ≠ "3am"). */
function normalizeNumber(token: string): string {
  const m = /^(-?[\d,]+(?:\.\d+)?)(.*)$/u.exec(token)!;
  const value = Number(m[1].replace(/,/g, ''));
  return `${Number.isFinite(value) ? value : m[1]}${m[2]}`;
}

/** "kilometres" and "km" are the same unit; plural forms too. */
function unitKey(word: string): string {
  const singular = word.length > 3 && word.endsWith('s') ? word.slice(0, -1) : word;
  return UNIT_ALIASES[singular] ?? singular;
}

const UNIT_ALIASES: Record<string, string> = {
  kilometer: 'km',
  kilometre: 'km',
  mile: 'mi',
  meter: 'm',
  metre: 'm',
  centimeter: 'cm',
  millimeter: 'mm',
  inche: 'in',
  inch: 'in',
  foot: 'ft',
  feet: 'ft',
  kilogram: 'kg',
  gram: 'g',
  pound: 'lb',
  lb: 'lb',
  ounce: 'oz',
  liter: 'l',
  litre: 'l',
  milliliter: 'ml',
  celsiu: 'c',
  celsius: 'c',
  '°c': 'c',
  fahrenheit: 'f',
  '°f': 'f',
  byte: 'b',
  millisecond: 'ms',
  second: 's',
  sec: 's',
  minute: 'min',
  hour: 'h',
  hr: 'h',
  dollar: 'usd',
  euro: 'eur',
  yuan: 'cny',
  rmb: 'cny',
  rupee: 'inr',
  percent: '%',
  sept: 'sep',
  january: 'jan',
  february: 'feb',
  march: 'mar',
  april: 'apr',
  june: 'jun',
  july: 'jul',
  august: 'aug',
  september: 'sep',
  october: 'oct',
  november: 'nov',
  december: 'dec',
};

/** A deliberately light stemmer: plural and a few verb endings, enough for rewordings. */
export function stem(word: string): string {
  if (word.length <= 3) return word;
  if (word.endsWith('ies') && word.length > 4) return `${word.slice(0, -3)}y`;
  if (word.endsWith('ing') && word.length > 5) return word.slice(0, -3);
  if (word.endsWith('ed') && word.length > 4) return word.slice(0, -2);
  if (word.endsWith('es') && /(?:ss|x|ch|sh)es$/.test(word)) return word.slice(0, -2);
  if (word.endsWith('s') && !word.endsWith('ss') && !word.endsWith('us') && !word.endsWith('is')) return word.slice(0, -1);
  return word;
}
