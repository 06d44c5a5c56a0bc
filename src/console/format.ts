// How numbers are shown. Every formatted number is also kept raw in its element's
// data-value (see cell() in the views), so what is shown can be checked against the
// GraphQL answer it came from. No DOM here: tests import this file.

const NONE = '—';

/** Dollars: cents from $1 up, else three significant digits (LLM calls cost fractions of a cent). */
export function usd(v: number | null | undefined): string {
  if (v === null || v === undefined) return NONE;
  const abs = Math.abs(v);
  const digits = abs === 0 || abs >= 1 ? 2 : Math.min(9, Math.max(2, Math.ceil(-Math.log10(abs)) + 2));
  return `$${v.toFixed(digits)}`;
}

export function ms(v: number | null | undefined): string {
  if (v === null || v === undefined) return NONE;
  return v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(1)} ms`;
}

export function pct(v: number | null | undefined): string {
  if (v === null || v === undefined) return NONE;
  return `${(v * 100).toFixed(1)}%`;
}

export function count(v: number | null | undefined): string {
  if (v === null || v === undefined) return NONE;
  return Math.round(v).toLocaleString('en-US');
}

/** Per-second rates on the live panel. */
export function rate(v: number): string {
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}

export type Kind = 'usd' | 'ms' | 'pct' | 'count';
export const FORMAT: Readonly<Record<Kind, (v: number | null | undefined) => string>> = { usd, ms, pct, count };

/** Time of day (hh:mm:ss, 24 h) in the browser's time zone. */
export function clock(iso: string | Date): string {
  const d = typeof iso === 'string' ? new Date(iso) : iso;
  const p = (n: number) => String(n).padStart(2, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}
