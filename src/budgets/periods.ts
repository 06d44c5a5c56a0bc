// Budget periods, in UTC: DAY runs from 00:00:00.000 UTC to the next midnight, MONTH from the
// 1st 00:00 UTC to the next 1st, TOTAL never resets. Counters are keyed by the period they
// belong to, so a new period starts from zero without anything having to reset them.
export type Period = 'DAY' | 'MONTH' | 'TOTAL';

export interface PeriodWindow {
  /** Part of the counter key: `2026-11-22`, `2026-11`, or `total`. */
  id: string;
  startMs: number;
  /** Exclusive; null for TOTAL. */
  endMs: number | null;
}

export function periodWindow(period: Period, nowMs: number): PeriodWindow {
  const d = new Date(nowMs);
  const y = d.getUTCFullYear();
  const m = d.getUTCMonth();
  switch (period) {
    case 'DAY': {
      const startMs = Date.UTC(y, m, d.getUTCDate());
      return { id: new Date(startMs).toISOString().slice(0, 10), startMs, endMs: startMs + 86_400_000 };
    }
    case 'MONTH': {
      const startMs = Date.UTC(y, m, 1);
      return { id: new Date(startMs).toISOString().slice(0, 7), startMs, endMs: Date.UTC(y, m + 1, 1) };
    }
    case 'TOTAL':
      return { id: 'total', startMs: 0, endMs: null };
  }
}
