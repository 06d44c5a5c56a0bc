import { describe, expect, it } from 'vitest';
import { DIMENSION_COLUMN, filterConditions, matchesNothing, rollupAnswers, scopeFilter } from '../../src/analytics/common.js';
import { sql, trusted } from '../../src/analytics/sql.js';
import { loadTeam } from '../../src/graphql/schema/teams.js';

describe('sql tagged template', () => {
  it('turns every value into a typed parameter', () => {
    const d = new Date('2026-11-21T10:00:00.123Z');
    const q = sql`SELECT ${'a'}, ${42}, ${1.5}, ${d}, ${['x', "y' OR 1=1 --"]}, ${true}`.toQuery();
    expect(q.query).toBe("SELECT {p0:String}, {p1:Int64}, {p2:Float64}, {p3:DateTime64(3, 'UTC')}, {p4:Array(String)}, {p5:Bool}");
    expect(q.query_params).toEqual({ p0: 'a', p1: 42, p2: 1.5, p3: '2026-11-21 10:00:00.123', p4: ['x', "y' OR 1=1 --"], p5: true });
  });
  it('nests fragments with renumbered parameters and never inlines input', () => {
    const inner = sql`x = ${"'; DROP TABLE receipts; --"}`;
    const q = sql`SELECT 1 WHERE ${inner} AND ${inner} AND y = ${sql.typed('0190', 'UUID')}`.toQuery();
    expect(q.query).toBe('SELECT 1 WHERE x = {p0:String} AND x = {p1:String} AND y = {p2:UUID}');
    expect(q.query).not.toContain('DROP');
  });
  it('accepts identifiers only from a whitelist and rejects unsupported values', () => {
    expect(sql`GROUP BY ${trusted(DIMENSION_COLUMN, 'MODEL')}`.query).toBe('GROUP BY model');
    expect(() => trusted(DIMENSION_COLUMN, 'model; DROP TABLE receipts' as never)).toThrow(/whitelisted/);
    expect(() => sql`${{ a: 1 }}`.query).toThrow();
    expect(() => sql`${NaN}`.query).toThrow();
    expect(() => sql.typed('x', 'String}; DROP')).toThrow();
  });
  it('filter conditions and team scoping', () => {
    const from = new Date('2026-11-21T10:00:00Z');
    const to = new Date('2026-11-21T12:00:00Z');
    const f = filterConditions({ from, to, features: ["' OR 1=1 --"], statuses: ['ERROR'] }, 'raw').toQuery();
    expect(f.query).toBe(
      "started_at >= {p0:DateTime64(3, 'UTC')} AND started_at < {p1:DateTime64(3, 'UTC')} AND feature IN {p2:Array(String)} AND status IN {p3:Array(String)}",
    );
    expect(f.query_params.p3).toEqual(['error']);
    expect(scopeFilter({ from, to, teamIds: ['b'] }, { role: 'ANALYST', teamId: 'a' }).teamIds).toEqual([]);
    expect(scopeFilter({ from, to, teamIds: ['a', 'b'] }, { role: 'ANALYST', teamId: 'a' }).teamIds).toEqual(['a']);
    expect(scopeFilter({ from, to }, { role: 'ANALYST', teamId: 'a' }).teamIds).toEqual(['a']);
    expect(scopeFilter({ from, to, teamIds: ['b'] }, { role: 'ADMIN', teamId: null }).teamIds).toEqual(['b']);
    expect(rollupAnswers({ from, to }, ['MODEL'])).toBe(true);
    expect(rollupAnswers({ from, to }, ['END_USER'])).toBe(false);
    expect(rollupAnswers({ from, to, endUsers: ['u'] }, [])).toBe(false);
    expect(rollupAnswers({ from: new Date(from.getTime() + 1), to }, [])).toBe(false);
    // the routing dimensions (receipt version 2) are not rollup columns either
    for (const dim of ['TASK_TYPE', 'RULE', 'EXPERIMENT', 'VARIANT'] as const) expect(rollupAnswers({ from, to }, ['MODEL', dim]), dim).toBe(false);
    for (const list of ['taskTypes', 'rules', 'experiments', 'variants'] as const) {
      expect(rollupAnswers({ from, to, [list]: ['x'] }, []), list).toBe(false);
      expect(() => filterConditions({ from, to, [list]: ['x'] }, 'rollup'), list).toThrow(/not a rollup column/);
    }
    const routing = filterConditions({ from, to, taskTypes: ['a'], rules: ['b'], experiments: ['c'], variants: ['d'] }, 'raw').toQuery();
    expect(routing.query).toBe(
      "started_at >= {p0:DateTime64(3, 'UTC')} AND started_at < {p1:DateTime64(3, 'UTC')} AND task_type IN {p2:Array(String)} AND rule IN {p3:Array(String)} AND experiment IN {p4:Array(String)} AND variant IN {p5:Array(String)}",
    );
    expect(matchesNothing({ from, to, variants: [] })).toBe(true);
  });
});

describe('GroupKey.team batching', () => {
  it('resolves all teams of a response with one query', async () => {
    const calls: unknown[] = [];
    const ids = Array.from({ length: 20 }, (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`);
    const ctx = {
      prisma: {
        team: {
          findMany: async (args: any) => {
            calls.push(args);
            return args.where.id.in.map((id: string) => ({ id, name: `name-${id.slice(-2)}` }));
          },
        },
      },
    } as never;
    const got = await Promise.all([...ids, ...ids, 'not-a-uuid'].map((id) => loadTeam(ctx, id)));
    expect(calls.length).toBe(1);
    expect(got[0]).toEqual({ id: ids[0], name: 'name-00' });
    expect(got[got.length - 1]).toBeNull();
  });
});
