// TEST-ONLY ClickHouse HTTP endpoint backed by chDB, run as its own child process.
//
// No ClickHouse server can be installed on these machines (DESIGN §2), yet the fault tests
// must drive Tollgate's *server* path: `@clickhouse/client` over HTTP (CLICKHOUSE_URL), which
// never loads chDB. This file answers the subset of the ClickHouse HTTP interface that
// @clickhouse/client sends, by executing each statement on chDB (the same ClickHouse engine,
// 26.7) in this separate process:
//
//   GET  /ping                        → "Ok.\n"
//   POST /?query=…&param_x=…&<setting>=…   SQL in `query`, and the request body is data
//                                      (exec / insert: `INSERT … FORMAT <format>` + rows; a
//                                      RowBinary body is read through a file, as chDB's inline
//                                      data is text only: see src/store/clickhouse.ts)
//   POST /?param_x=…&<setting>=…      SQL in the body (query / command)
//   multipart/form-data bodies         (`query` and `param_*` parts, clickhouse-js's long-params mode)
//   settings                           every other URL parameter; applied to that statement
//                                      only (reset afterwards, as a server does per query);
//                                      `insert_deduplication_token` included: chDB honours it
//   default_format                     the output format when the SQL has none
//   errors                             HTTP 500, `X-ClickHouse-Exception-Code`, body "Code: N. DB::Exception: …"
//   GET  /__stats                      (test hook) statements run, inserts and dedup tokens seen
//
// It is not a ClickHouse server: no auth, no sessions, no compression of requests, one
// statement at a time (chDB runs one query per session).
//
// Usage: `startClickHouseHttp(dataDir)` from a test spawns `node --import tsx <this file> <dataDir>`
// and resolves with its URL once it listens.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const self = fileURLToPath(import.meta.url);
const root = path.resolve(path.dirname(self), '../..');

// URL parameters that are not settings.
const NOT_SETTINGS = new Set([
  'query',
  'query_id',
  'database',
  'session_id',
  'session_timeout',
  'session_check',
  'role',
  'user',
  'password',
  'compress',
  'decompress',
  'quota_key',
]);

export interface ClickHouseHttp {
  url: string;
  port: number;
  child: ChildProcess;
  stats(): Promise<{ statements: number; inserts: number; tokens: Record<string, number> }>;
  close(): Promise<void>;
}

export async function startClickHouseHttp(dataDir: string): Promise<ClickHouseHttp> {
  const child = spawn(process.execPath, ['--import', 'tsx', self, dataDir], {
    cwd: root,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, CHHTTP_DEBUG: process.env.CHHTTP_DEBUG ?? '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stderr!.on('data', (d) => {
    out += d;
    if (process.env.CHHTTP_DEBUG) process.stderr.write(d);
  });
  const port = await new Promise<number>((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (d) => {
      buf += d;
      const m = /LISTENING (\d+)/.exec(buf);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`clickhouse-http exited (${code}):\n${out}${buf}`)));
    setTimeout(() => reject(new Error(`clickhouse-http did not start:\n${out}${buf}`)), 60_000).unref();
  });
  const url = `http://127.0.0.1:${port}`;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  return {
    url,
    port,
    child,
    stats: async () => (await (await fetch(`${url}/__stats`)).json()) as any,
    async close() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The child process

interface Multipart {
  [name: string]: string;
}

function parseMultipart(body: Buffer, contentType: string): Multipart {
  const m = /boundary=(?:"([^"]+)"|([^;]+))/.exec(contentType);
  if (!m) return {};
  const boundary = `--${m[1] ?? m[2]}`;
  const parts: Multipart = {};
  for (const raw of body.toString('utf8').split(boundary)) {
    const headerEnd = raw.indexOf('\r\n\r\n');
    if (headerEnd < 0) continue;
    const name = /name="([^"]+)"/.exec(raw.slice(0, headerEnd))?.[1];
    if (!name) continue;
    parts[name] = raw.slice(headerEnd + 4).replace(/\r\n$/, '');
  }
  return parts;
}

async function serve(dataDir: string): Promise<void> {
  const specifier = 'chdb/connection';
  const { createChdbConnection } = (await import(specifier)) as { createChdbConnection(o: { path: string }): any };
  const connection = createChdbConnection({ path: dataDir });
  const insertsDir = `${dataDir}-inserts`;
  mkdirSync(insertsDir, { recursive: true });

  // A server applies URL settings to one query; chDB's connection SETs them on its single
  // session. Reset every setting a previous statement changed (like src/store/clickhouse.ts).
  const baseline = new Map<string, string>();
  {
    const rs = await connection.query({ query: 'SELECT name, value FROM system.settings FORMAT JSONEachRow' });
    let text = '';
    for await (const chunk of rs.stream) text += chunk.toString();
    for (const line of text.split('\n')) if (line) baseline.set(JSON.parse(line).name, JSON.parse(line).value);
  }
  const touched = new Set<string>();
  const stats = { statements: 0, inserts: 0, tokens: {} as Record<string, number> };

  let chain: Promise<unknown> = Promise.resolve();
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const next = chain.then(fn, fn);
    chain = next.catch(() => undefined);
    return next;
  };

  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname === '/ping') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('Ok.\n');
      return;
    }
    if (url.pathname === '/__stats') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(stats));
      return;
    }
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);

    const params: Record<string, string> = {};
    const settings: Record<string, string> = {};
    let sql: string;
    let insertFile: string | null = null;
    const contentType = String(req.headers['content-type'] ?? '');
    const form = contentType.startsWith('multipart/form-data') ? parseMultipart(body, contentType) : null;
    for (const [k, v] of url.searchParams) {
      if (k.startsWith('param_')) params[k.slice(6)] = v;
      else if (!NOT_SETTINGS.has(k)) settings[k] = v;
    }
    if (form) {
      for (const [k, v] of Object.entries(form)) if (k.startsWith('param_')) params[k.slice(6)] = v;
      sql = form.query ?? url.searchParams.get('query') ?? '';
    } else {
      const inUrl = url.searchParams.get('query');
      const binary = inUrl === null ? null : /\bFORMAT\s+(RowBinary\w*)\s*$/i.exec(inUrl);
      if (inUrl !== null && binary) {
        insertFile = path.join(insertsDir, `${randomUUID()}.bin`);
        writeFileSync(insertFile, body);
        params.insert_file = insertFile;
        sql = `${inUrl.slice(0, binary.index)}SELECT * FROM file({insert_file:String}, '${binary[1]}')`;
      } else {
        const text = body.toString('utf8');
        sql = inUrl === null ? text : text.length > 0 ? `${inUrl}\n${text}` : inUrl;
      }
    }
    const compress = settings.enable_http_compression === '1' && /gzip/.test(String(req.headers['accept-encoding'] ?? ''));

    const isolated: Record<string, string> = {};
    for (const name of touched) if (!(name in settings) && baseline.has(name)) isolated[name] = baseline.get(name)!;
    for (const [k, v] of Object.entries(settings)) {
      isolated[k] = v;
      if (baseline.has(k)) touched.add(k);
    }
    const isInsert = /^\s*INSERT\b/i.test(sql);
    if (process.env.CHHTTP_DEBUG) process.stderr.write(`[ch] ${Date.now() % 100000} ${sql.slice(0, 60).replace(/\n/g, ' ')}\n`);
    try {
      const result = await serial(async () => {
        stats.statements++;
        if (isInsert) {
          stats.inserts++;
          const token = settings.insert_deduplication_token;
          if (token) stats.tokens[token] = (stats.tokens[token] ?? 0) + 1;
        }
        // Query parameters arrive as text in ClickHouse's escaped format; chDB's own binder
        // would escape that text once more, so set them as session parameters instead.
        const sets = Object.entries(params).map(([k, v]) => `SET param_${k} = '${v.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'; `);
        const r = await connection.exec({ query: sets.join('') + sql, clickhouse_settings: isolated });
        const parts: Buffer[] = [];
        for await (const c of r.stream) parts.push(c as Buffer);
        return Buffer.concat(parts);
      });
      const headers: Record<string, string> = {
        'content-type': 'text/plain; charset=UTF-8',
        'x-clickhouse-query-id': url.searchParams.get('query_id') ?? '',
        'x-clickhouse-summary': JSON.stringify({
          read_rows: '0',
          read_bytes: '0',
          written_rows: '0',
          written_bytes: '0',
          total_rows_to_read: '0',
          result_rows: '0',
          result_bytes: '0',
          elapsed_ns: '0',
        }),
        'x-clickhouse-server-display-name': 'tollgate-test-chdb',
      };
      if (settings.default_format) headers['x-clickhouse-format'] = settings.default_format;
      if (compress) {
        headers['content-encoding'] = 'gzip';
        res.writeHead(200, headers).end(gzipSync(result));
      } else res.writeHead(200, headers).end(result);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      const code = /Code: (\d+)/.exec(message)?.[1] ?? '1001';
      const text = /Code: \d+\. DB::Exception/.test(message) ? message : `Code: ${code}. DB::Exception: ${message}`;
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=UTF-8', 'x-clickhouse-exception-code': code });
      res.end(`${text}\n`);
    } finally {
      if (insertFile) rmSync(insertFile, { force: true });
    }
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  process.stdout.write(`LISTENING ${(server.address() as import('node:net').AddressInfo).port}\n`);
  const stop = () => {
    server.close();
    server.closeAllConnections();
    void connection.close().finally(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

if (process.argv[1] && path.resolve(process.argv[1]) === self) {
  serve(path.resolve(process.argv[2] ?? path.join(root, '.tollgate-test-clickhouse'))).catch((err) => {
    process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  });
}
