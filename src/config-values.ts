// Parsers of single environment values, as zod schemas: integers with defaults and floors,
// connection URLs, lists, CORS origins, the OIDC issuer, key=value lists, egress allow-lists.
// They read nothing themselves: src/config.ts applies them to the environment.
import { z } from 'zod';
import { CidrList, parseCidr } from './net/ip.js';

export const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v.trim()));

/** One of `values`; absent or blank: undefined (as OpenTelemetry's variables mean it too). */
export const optionalEnum = <const T extends readonly [string, ...string[]]>(values: T) => optionalString.pipe(z.enum(values).optional());

/** An integer from min to max, in decimal digits; absent or blank: undefined. */
export const integer = (min: number, max = Number.MAX_SAFE_INTEGER) =>
  z
    .string()
    .optional()
    .transform((v, ctx): number | undefined => {
      if (v === undefined || v.trim() === '') return undefined;
      // Digits only: Number() also reads 0x1F90 and 8e3.
      const n = /^\s*-?\d+\s*$/.test(v) ? Number(v) : Number.NaN;
      if (!Number.isSafeInteger(n) || n < min || n > max) {
        ctx.addIssue({
          code: 'custom',
          message: max === Number.MAX_SAFE_INTEGER ? `must be an integer >= ${min}` : `must be an integer from ${min} to ${max}`,
        });
        return z.NEVER;
      }
      return n;
    });

export const intFrom = (def: number, min = 0, max?: number) => integer(min, max).transform((n) => n ?? def);

/** The longest delay a Node timer takes: past it, setTimeout fires after 1 ms. */
export const MAX_TIMER_MS = 2_147_483_647;
/** A duration in milliseconds that a timer will run (a larger one would fire at once). */
export const msFrom = (def: number, min = 0) => intFrom(def, min, MAX_TIMER_MS);
export const portFrom = (def: number) => intFrom(def, 0, 65_535);

/**
 * A connection URL with one of these schemes. The error names the variable but never shows
 * the value: connection URLs carry passwords.
 */
export const connectionUrl = (...protocols: string[]) =>
  optionalString.refine((v) => v === undefined || hasProtocol(v, protocols), {
    message: `must be a URL starting with ${protocols.map((p) => `${p}//`).join(' or ')} (value not shown: it may hold a password)`,
  });

function hasProtocol(value: string, protocols: string[]): boolean {
  try {
    return protocols.includes(new URL(value).protocol);
  } catch {
    return false;
  }
}

/**
 * TOLLGATE_CORS_ORIGINS: origins (`https://app.example.com`) whose pages may call Tollgate from
 * a browser, comma-separated, or `*` for any page (never with credentials). Default: none.
 */
export const corsOrigins = optionalString.transform((v, ctx) => {
  const origins: string[] = [];
  for (const entry of (v ?? '')
    .split(',')
    .map((o) => o.trim())
    .filter(Boolean)) {
    const origin = entry === '*' ? '*' : originOf(entry);
    if (origin === null) {
      ctx.addIssue({ code: 'custom', message: `'${entry.slice(0, 100)}' is not an origin (scheme://host[:port]) or *` });
      return z.NEVER;
    }
    origins.push(origin);
  }
  return origins;
});

/** The origin a browser would send for `entry`, if it names one: http(s), no path or query. */
function originOf(entry: string): string | null {
  try {
    const url = new URL(entry);
    const bare = url.pathname === '/' && !url.search && !url.hash && !url.username && !url.password;
    return (url.protocol === 'http:' || url.protocol === 'https:') && bare ? url.origin : null;
  } catch {
    return null;
  }
}

/** A comma- or space-separated list; empty entries dropped. */
export const listOf = <T>(parse: (entries: string[]) => T) =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      const entries = (v ?? '').split(/[\s,]+/).filter(Boolean);
      try {
        return parse(entries);
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: err instanceof Error ? err.message : String(err) });
        return z.NEVER;
      }
    });

/** An identity provider's issuer: https, or http on loopback only (its keys decide who is admin). */
export const issuerUrl = optionalString.superRefine((v, ctx) => {
  const problem = v === undefined ? null : httpsOrLoopbackProblem(v);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

/**
 * OpenTelemetry's `key=value,key2=value2` lists (OTEL_EXPORTER_OTLP_HEADERS,
 * OTEL_RESOURCE_ATTRIBUTES), values percent-decoded. Errors never show a value: headers carry
 * collectors' API keys.
 */
export const keyValueList = z
  .string()
  .optional()
  .transform((v, ctx) => {
    const pairs: Record<string, string> = {};
    const entries = (v ?? '')
      .split(',')
      .map((e) => e.trim())
      .filter(Boolean);
    for (const [i, entry] of entries.entries()) {
      const eq = entry.indexOf('=');
      const key = entry.slice(0, Math.max(0, eq)).trim();
      let value: string | undefined;
      try {
        value = decodeURIComponent(entry.slice(eq + 1).trim());
      } catch {
        value = undefined;
      }
      if (!key || value === undefined) {
        ctx.addIssue({ code: 'custom', message: `entry ${i + 1} is not key=value with a percent-encoded value (value not shown: it may hold a secret)` });
        return z.NEVER;
      }
      pairs[key] = value;
    }
    return pairs;
  });

export const otlpProtocol = optionalEnum(['http/protobuf', 'http/json']);
export const otlpCompression = optionalEnum(['gzip', 'none']);

const HOSTNAME = /^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*$/;

/** TOLLGATE_EGRESS_ALLOW: CIDRs (or single addresses) and host names, told apart by their form. */
export function egressAllowList(entries: string[]): { hosts: string[]; cidrs: CidrList } {
  const hosts: string[] = [];
  const cidrs: string[] = [];
  for (const entry of entries) {
    if (parseCidr(entry)) cidrs.push(entry);
    else {
      const host = entry.toLowerCase().replace(/\.$/, '');
      if (!HOSTNAME.test(host)) throw new Error(`'${entry}' is neither a host name nor an IP address or CIDR range`);
      hosts.push(host);
    }
  }
  return { hosts, cidrs: CidrList.parse(cidrs) };
}

/** Why `url` may not be an issuer or key-set URL, or null: https, or http on loopback only. */
export function httpsOrLoopbackProblem(url: string): string | null {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return 'must be a URL';
  }
  if (u.protocol === 'https:') return null;
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  if (u.protocol === 'http:' && (host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host))) return null;
  return 'must be an https URL (plain http only on loopback)';
}
