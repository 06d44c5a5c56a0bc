// A CASCADE's acceptance checks (DESIGN §5): what makes an answer good enough to stop
// climbing to a stronger (dearer) model.
//   json           only for requests that ask for JSON: the content parses, and validates
//                  against the request's json_schema when it carries one (ajv);
//   tool_args      each tool call names a tool of the request, and its arguments validate
//                  against that tool's `parameters`;
//   not_truncated  the answer did not stop at its token limit;
//   non_empty      it says something (text, or a tool call);
//   not_refused    the model did not refuse (a refusal field, or a content filter stop).
import { Ajv, type ValidateFunction } from 'ajv';
import { RE2JS } from 're2js';
import type { ChatCompletion, ChatRequest } from '../protocols/canonical.js';
import type { AcceptCheck } from './catalog.js';

export type Verdict = { accepted: true; rejectReason: null } | { accepted: false; rejectReason: string };

const ACCEPTED: Verdict = { accepted: true, rejectReason: null };
const reject = (check: string, why: string): Verdict => ({ accepted: false, rejectReason: `${check}: ${why}`.slice(0, 500) });

/**
 * The schemas are the client's: their `pattern`s run on RE2 (re2js: linear time), since a
 * backtracking pattern (`^(a+)+$`) against the model's answer would hold the event loop for
 * everyone. A pattern RE2 cannot run (lookaround, backreferences) is not checked.
 */
const linearRegExp = Object.assign(
  (pattern: string, flags: string) => {
    // Ajv shares compiled patterns by their toString(): each must name its own.
    const name = () => `/${pattern}/${flags}`;
    try {
      const re = RE2JS.compile(inRe2Syntax(pattern));
      return { test: (text: string) => re.test(text), toString: name };
    } catch {
      return { test: () => true, toString: name };
    }
  },
  { code: 're2js' },
);

/** JavaScript's `\s` (Unicode spaces; RE2's is ASCII only), spelled out for a character class. */
const JS_SPACES = '\\t\\n\\v\\f\\r \\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}\\x{feff}';

/** A JavaScript pattern in RE2's syntax where they differ: `\s`, `\S`, `\uXXXX` and `\u{X…}`. */
function inRe2Syntax(pattern: string): string {
  let out = '';
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '\\') {
      const next = pattern[i + 1] ?? '';
      const code = /^u\{([0-9a-fA-F]+)\}|^u([0-9a-fA-F]{4})/.exec(pattern.slice(i + 1));
      if (code) {
        out += `\\x{${code[1] ?? code[2]}}`;
        i += code[0].length;
      } else if (next === 's') {
        out += inClass ? JS_SPACES : `[${JS_SPACES}]`;
        i++;
      } else if (next === 'S' && !inClass) {
        out += `[^${JS_SPACES}]`;
        i++;
      } else {
        out += c + next;
        i++;
      }
      continue;
    }
    if (c === '[') inClass = true;
    else if (c === ']') inClass = false;
    out += c;
  }
  return out;
}

// One validator per distinct schema (requests repeat theirs), bounded like any cache of client
// data. Ajv keeps what it compiled (schemas, patterns) for its lifetime: a new instance every
// MAX_VALIDATORS compilations bounds that too (an old one goes once its validators are evicted).
// Schemas are not registered by their `$id`: one tenant's must not clash with another's.
const newAjv = () => new Ajv({ strict: false, allErrors: false, validateFormats: false, addUsedSchema: false, code: { regExp: linearRegExp } });
let ajv = newAjv();
let compiledByThisAjv = 0;
const validators = new Map<string, ValidateFunction | Error>();
const MAX_VALIDATORS = 1000;

function validatorFor(schema: unknown): ValidateFunction | Error {
  const key = JSON.stringify(schema);
  let v = validators.get(key);
  if (!v) {
    if (compiledByThisAjv++ >= MAX_VALIDATORS) {
      ajv = newAjv();
      compiledByThisAjv = 1;
    }
    try {
      v = ajv.compile(schema as object);
    } catch (err) {
      v = err instanceof Error ? err : new Error(String(err));
    }
    if (validators.size >= MAX_VALIDATORS) validators.delete(validators.keys().next().value!);
    validators.set(key, v);
  }
  return v;
}

function schemaProblem(schema: unknown, value: unknown): string | null {
  const validate = validatorFor(schema);
  if (validate instanceof Error) return `the request's schema does not compile (${validate.message.slice(0, 100)})`;
  if (validate(value)) return null;
  const e = validate.errors?.[0];
  return e ? `${e.instancePath || '/'} ${e.message ?? 'is invalid'}` : 'does not match the schema';
}

// The order checks run in, whatever order the route lists them: the first failure named is
// the root cause (a refusal is also empty; a truncated JSON answer is also invalid JSON).
const ORDER: readonly AcceptCheck[] = ['NOT_REFUSED', 'NOT_TRUNCATED', 'NON_EMPTY', 'JSON', 'TOOL_ARGS'];

/** The first of the route's checks the answer fails; accepted otherwise. */
export function checkAnswer(checks: readonly AcceptCheck[], request: ChatRequest, answer: ChatCompletion): Verdict {
  const choice = answer.choices[0];
  if (!choice) return reject('non_empty', 'no choices');
  const message = choice.message;
  for (const check of ORDER) {
    if (!checks.includes(check)) continue;
    switch (check) {
      case 'JSON': {
        const format = request.response_format;
        if (!format || format.type === 'text') break; // a plain-text request: nothing to check
        let value: unknown;
        try {
          value = JSON.parse(message.content ?? '');
        } catch {
          return reject('json', 'the content is not valid JSON');
        }
        if (format.type === 'json_schema' && format.json_schema?.schema) {
          const problem = schemaProblem(format.json_schema.schema, value);
          if (problem) return reject('json', problem);
        }
        break;
      }
      case 'TOOL_ARGS': {
        for (const call of message.tool_calls ?? []) {
          if (call.type !== 'function') continue; // a custom tool's input has no schema to check
          const tool = request.tools?.find((t) => t.function?.name === call.function.name);
          if (!tool) return reject('tool_args', `${call.function.name}: not a tool of the request`);
          let args: unknown;
          try {
            args = JSON.parse(call.function.arguments || '{}');
          } catch {
            return reject('tool_args', `${call.function.name}: the arguments are not valid JSON`);
          }
          if (tool.function.parameters) {
            const problem = schemaProblem(tool.function.parameters, args);
            if (problem) return reject('tool_args', `${call.function.name}: ${problem}`);
          }
        }
        break;
      }
      case 'NOT_TRUNCATED':
        if (choice.finish_reason === 'length') return reject('not_truncated', 'the answer stopped at its token limit');
        break;
      case 'NON_EMPTY':
        if (!(message.content ?? '').trim() && !(message.tool_calls?.length ?? 0)) return reject('non_empty', 'the answer is empty');
        break;
      case 'NOT_REFUSED':
        if (message.refusal) return reject('not_refused', 'the model refused');
        if (choice.finish_reason === 'content_filter') return reject('not_refused', 'stopped by a content filter');
        break;
    }
  }
  return ACCEPTED;
}
