// Parameterized ClickHouse SQL. `sql\`… ${value} …\`` turns every interpolated value into a
// query parameter `{pN:Type}` and never into SQL text; a nested fragment is spliced in with
// its own parameters renumbered. The only ways to put text into a query are the template's
// literal strings (written in this repository) and `trusted()`, which accepts only values
// from the fixed whitelists below (dimension columns, bucket functions).
//
//   const q = sql`SELECT count() FROM receipts WHERE team_id = ${teamId}`;
//   client.query({ query: q.query, query_params: q.query_params })

export type ParamType = string;

/** A value with an explicit ClickHouse parameter type (`UUID`, `Array(Tuple(…))`, …). */
export class TypedParam {
  constructor(
    readonly value: unknown,
    readonly type: ParamType,
  ) {
    if (!/^[A-Za-z][A-Za-z0-9_]*(\(.*\))?$/.test(type) || /[{};]/.test(type)) throw new TypeError(`invalid parameter type ${type}`);
  }
}

const TRUSTED = Symbol('trusted');

export class SqlFragment {
  /** @internal */
  constructor(
    readonly strings: readonly string[],
    readonly values: readonly unknown[],
  ) {}

  private build(): { query: string; query_params: Record<string, unknown> } {
    const params: Record<string, unknown> = {};
    let n = 0;
    const render = (f: SqlFragment): string => {
      let out = f.strings[0]!;
      for (let i = 0; i < f.values.length; i++) {
        const v = f.values[i];
        if (v instanceof SqlFragment) out += render(v);
        else {
          const name = `p${n++}`;
          const { value, type } = toParam(v);
          params[name] = value;
          out += `{${name}:${type}}`;
        }
        out += f.strings[i + 1]!;
      }
      return out;
    };
    const query = render(this);
    return { query, query_params: params };
  }

  get query(): string {
    return this.build().query;
  }

  get query_params(): Record<string, unknown> {
    return this.build().query_params;
  }

  /** Both at once (one rendering). */
  toQuery(): { query: string; query_params: Record<string, unknown> } {
    return this.build();
  }
}

export function sql(strings: TemplateStringsArray, ...values: unknown[]): SqlFragment {
  return new SqlFragment([...strings], values);
}

/** Fragments joined by a literal separator. */
sql.join = (parts: readonly SqlFragment[], separator: ', ' | ' AND ' | ' OR ' | ' ' | ' UNION ALL ' = ', '): SqlFragment => {
  if (parts.length === 0) return new SqlFragment([''], []);
  const strings = ['', ...parts.slice(1).map(() => separator), ''];
  return new SqlFragment(strings, [...parts]);
};

/** A value with an explicit parameter type. */
sql.typed = (value: unknown, type: ParamType): TypedParam => new TypedParam(value, type);

/** Empty fragment. */
sql.empty = (): SqlFragment => new SqlFragment([''], []);

/**
 * SQL text from a whitelist: the caller passes a key and a map of constant SQL snippets;
 * a key not in the map throws. Nothing from input can reach the text.
 */
export function trusted<K extends string>(map: Readonly<Record<K, string>>, key: K): SqlFragment {
  if (!Object.hasOwn(map, key)) throw new TypeError(`not a whitelisted SQL identifier: ${String(key)}`);
  const text = map[key];
  return Object.assign(new SqlFragment([text], []), { [TRUSTED]: true });
}

function pad(n: number, w = 2): string {
  return String(n).padStart(w, '0');
}

/** Date → 'YYYY-MM-DD HH:MM:SS.mmm' (UTC), the DateTime64(3, 'UTC') parameter form. */
export function clickHouseDateTime(d: Date): string {
  return (
    `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.${pad(d.getUTCMilliseconds(), 3)}`
  );
}

function toParam(v: unknown): { value: unknown; type: ParamType } {
  if (v instanceof TypedParam) return { value: v.value, type: v.type };
  if (typeof v === 'string') return { value: v, type: 'String' };
  if (typeof v === 'boolean') return { value: v, type: 'Bool' };
  if (typeof v === 'bigint') return { value: v.toString(), type: 'Int64' };
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new TypeError('SQL parameter must be a finite number');
    return Number.isInteger(v) ? { value: v, type: 'Int64' } : { value: v, type: 'Float64' };
  }
  if (v instanceof Date) {
    if (Number.isNaN(v.getTime())) throw new TypeError('SQL parameter is an invalid Date');
    return { value: clickHouseDateTime(v), type: "DateTime64(3, 'UTC')" };
  }
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return { value: v, type: 'Array(String)' };
  throw new TypeError(`unsupported SQL parameter: ${Object.prototype.toString.call(v)}`);
}
