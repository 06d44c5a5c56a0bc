// Which tables the latency and costPerTask queries read, for which part of the range.
import { describe, expect, it } from 'vitest';
import type { AnalyticsContext } from '../../src/analytics/common.js';
import { costPerTaskQuery } from '../../src/analytics/costPerTask.js';
import { latencySketchQuery, sketchAnswers, wholeDays } from '../../src/analytics/latency.js';
import { decodeCursor } from '../../src/analytics/receipts.js';

const ctx = { receiptsTable: 'receipts' } as AnalyticsContext;
const day = (d: number, ms = 0) => new Date(Date.UTC(2026, 9, d) + ms);
const H = 3_600_000;

/** The tables a query reads, one entry per FROM (tables are Identifier parameters). */
function tablesRead(q: { query: string; query_params: Record<string, unknown> }): string[] {
  return [...q.query.matchAll(/FROM \{(p\d+):Identifier\}/g)].map((m) => String(q.query_params[m[1]!]));
}

describe('latency plan', () => {
  it('whole UTC days inside the range', () => {
    expect(wholeDays({ from: day(1), to: day(31) })).toEqual({ from: day(1), to: day(31) });
    expect(wholeDays({ from: day(1, 13 * H + 1), to: day(3, 5 * H) })).toEqual({ from: day(2), to: day(3) });
    expect(wholeDays({ from: day(1, 1), to: day(2, -1) })).toBeNull();
    expect(sketchAnswers({ from: day(1), to: day(2) }, ['MODEL'])).toBe(true);
    expect(sketchAnswers({ from: day(1), to: day(2) }, ['END_USER'])).toBe(false);
    expect(sketchAnswers({ from: day(1), to: day(2), endUsers: ['u'] }, [])).toBe(false);
    expect(sketchAnswers({ from: day(1, H), to: day(2) }, [])).toBe(false);
    expect(sketchAnswers({ from: day(1), to: day(2) }, ['VARIANT'])).toBe(false);
    expect(sketchAnswers({ from: day(1), to: day(2), taskTypes: ['t'] }, [])).toBe(false);
  });

  it('reads latency_daily for whole days and raw receipts only for the partial days at the ends', () => {
    const aligned = latencySketchQuery(ctx, { from: day(1), to: day(31) }, ['MODEL']).toQuery();
    expect(tablesRead(aligned)).toEqual(['latency_daily']);

    const from = day(1, 13 * H + 250);
    const to = day(31, 5 * H);
    const q = latencySketchQuery(ctx, { from, to, features: ['f'] }, ['MODEL', 'TEAM']).toQuery();
    expect(tablesRead(q)).toEqual(['latency_daily', 'receipts', 'receipts']);
    const times = Object.values(q.query_params).filter((v) => typeof v === 'string' && /^\d{4}-/.test(v));
    // daily [Oct 2, Oct 31), raw [from, Oct 2) and [Oct 31, to)
    expect(times).toEqual([
      '2026-10-02 00:00:00.000',
      '2026-10-31 00:00:00.000',
      '2026-10-01 13:00:00.250',
      '2026-10-02 00:00:00.000',
      '2026-10-31 00:00:00.000',
      '2026-10-31 05:00:00.000',
    ]);
    expect(q.query).toContain('UNION ALL');
    expect(Object.values(q.query_params).filter((v) => Array.isArray(v))).toEqual([['f'], ['f'], ['f']]);
  });
});

describe('costPerTask plan', () => {
  it('scans receipts once, whatever the grouping', () => {
    for (const dims of [[], ['TEAM'], ['MODEL', 'TEAM', 'FEATURE']] as const) {
      const q = costPerTaskQuery(ctx, { from: day(1), to: day(31), teamIds: ['t'] }, [...dims]).toQuery();
      expect(tablesRead(q).filter((t) => t === 'receipts')).toHaveLength(1);
      // a window over the task only when a group can split it
      expect(q.query.includes('OVER (PARTITION BY')).toBe(dims.some((d) => d !== 'TEAM'));
    }
  });
});

describe('receipts cursors', () => {
  const cursor = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const id = '01890000-0000-7000-8000-000000000000';

  it('a cursor this API gave out round-trips; a crafted time no receipt can have is BAD_USER_INPUT, not an internal error', () => {
    expect(decodeCursor(cursor([Date.UTC(2026, 11, 7), id]))).toEqual({ at: new Date(Date.UTC(2026, 11, 7)), id });
    // Number.MAX_SAFE_INTEGER made an Invalid Date (a TypeError building the query); year 10000, a date ClickHouse refused.
    for (const at of [Number.MAX_SAFE_INTEGER, 253_402_300_800_000, -1e15]) {
      let thrown: unknown;
      try {
        decodeCursor(cursor([at, id]));
      } catch (err) {
        thrown = err;
      }
      expect((thrown as { extensions?: { code?: string } })?.extensions?.code, String(at)).toBe('BAD_USER_INPUT');
    }
  });
});
