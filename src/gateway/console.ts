// The browser side of the GraphQL API: the console (/console) and the offline GraphiQL page.
// Both are static files that talk only to the public GraphQL API, served from this process
// (no CDN, no external font): the console from dist/console, built by `npm install`
// (scripts/build-console.mjs), and GraphiQL's editor bundle from @graphql-yoga/render-graphiql,
// which ships it as strings. They are served wherever /graphql is (the main port, or
// TOLLGATE_ADMIN_PORT), so the browser only ever talks to one origin.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { GraphiQLOptions } from 'graphql-yoga';

/** dist/console of this package, from src/gateway (tests) and from dist/gateway alike. */
export const CONSOLE_DIR = fileURLToPath(new URL('../../dist/console/', import.meta.url));

export const isConsolePath = (path: string): boolean => path === '/console' || path.startsWith('/console/');

interface Asset {
  body: Buffer;
  type: string;
  etag: string;
}

const JS = 'text/javascript; charset=utf-8';

/** Built console files, by URL path. */
const CONSOLE_FILES: Readonly<Record<string, { file: string; type: string }>> = {
  '/console': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/console/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/console/console.js': { file: 'console.js', type: JS },
  '/console/console.css': { file: 'console.css', type: 'text/css; charset=utf-8' },
  '/console/graphiql/boot.js': { file: 'graphiql-boot.js', type: JS },
};

/** GraphiQL's bundle: URL path → export of @graphql-yoga/render-graphiql/graphiql. */
const GRAPHIQL_FILES: Readonly<Record<string, { name: 'js' | 'css' | 'editorWorkerService' | 'jsonWorker' | 'graphqlWorker'; type: string }>> = {
  '/console/graphiql/graphiql.js': { name: 'js', type: JS },
  '/console/graphiql/graphiql.css': { name: 'css', type: 'text/css; charset=utf-8' },
  // Monaco asks for its workers by label (see src/console/graphiql-boot.ts).
  '/console/graphiql/worker-editorWorkerService.js': { name: 'editorWorkerService', type: JS },
  '/console/graphiql/worker-json.js': { name: 'jsonWorker', type: JS },
  '/console/graphiql/worker-graphql.js': { name: 'graphqlWorker', type: JS },
};

// The console may only load what this server serves and talk to this origin (https and
// websockets alike: 'self' covers ws:/wss: to the same host and port).
const CONSOLE_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; " +
  "frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/**
 * The headers of the GraphiQL page (yoga writes the page; these go with it): the console's
 * policy, and Monaco's editor workers come from this server too. Not framed by another site.
 */
export const GRAPHIQL_PAGE_HEADERS: Readonly<Record<string, string>> = {
  // GraphiQL's bundle carries its fonts (Monaco's icons among them) as data: URLs.
  'content-security-policy': `${CONSOLE_CSP}; worker-src 'self'; font-src 'self' data:`,
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

const asset = (body: Buffer, type: string): Asset => ({ body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` });

interface ConsoleOptions {
  /** GraphiQL is on (not in production): serve its bundle too. */
  graphiql: boolean;
  /** Where the built console is (default: dist/console). */
  dir?: string;
}

export function createConsoleHandler(opts: ConsoleOptions) {
  const dir = opts.dir ?? CONSOLE_DIR;
  // Loaded on first use and kept: a few hundred KB for the console, ~9 MB for GraphiQL.
  const loaded = new Map<string, Promise<Asset | null>>();

  const load = (path: string): Promise<Asset | null> => {
    let p = loaded.get(path);
    if (!p) {
      p = loadAsset(path, dir, opts.graphiql);
      // A console not built yet may be built while the server runs: a miss or a read error
      // is tried again next time.
      const forget = () => void loaded.delete(path);
      p.then((a) => a ?? forget(), forget);
      loaded.set(path, p);
    }
    return p;
  };

  return async function serveConsole(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('Method not allowed\n');
      return;
    }
    const found = await load(path);
    if (!found) {
      const known = path in CONSOLE_FILES;
      res
        .writeHead(known ? 503 : 404, { 'content-type': 'text/plain; charset=utf-8' })
        .end(known ? 'The console is not built: run `npm run build` (or `npm install`) in the Tollgate directory.\n' : 'Not found\n');
      return;
    }
    const headers: Record<string, string> = {
      'content-type': found.type,
      etag: found.etag,
      // Always revalidated (a cheap 304): a new Tollgate version shows at the next reload.
      'cache-control': 'no-cache',
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
    };
    if (found.type.startsWith('text/html')) headers['content-security-policy'] = CONSOLE_CSP;
    if (req.headers['if-none-match'] === found.etag) {
      res.writeHead(304, headers).end();
      return;
    }
    headers['content-length'] = String(found.body.length);
    res.writeHead(200, headers);
    res.end(req.method === 'HEAD' ? undefined : found.body);
  };
}

async function loadAsset(path: string, dir: string, graphiql: boolean): Promise<Asset | null> {
  const file = CONSOLE_FILES[path];
  if (file) {
    if (path.startsWith('/console/graphiql/') && !graphiql) return null;
    try {
      return asset(await readFile(join(dir, file.file)), file.type);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }
  const bundled = GRAPHIQL_FILES[path];
  if (bundled && graphiql) {
    const strings = await import('@graphql-yoga/render-graphiql/graphiql');
    return asset(Buffer.from(strings[bundled.name], 'utf8'), bundled.type);
  }
  return null;
}

/** What GraphiQL shows in a fresh browser. */
export const GRAPHIQL_DEFAULT_QUERY = `# Tollgate's GraphQL API: press ▶ (or Ctrl-Enter) to run a query.
# Send the admin token or an access token in the Headers tab:
#   { "Authorization": "Bearer tga-…" }
# (already filled in when GraphiQL was opened from the console).
query Viewer {
  viewer { kind role teamId }
}
`;

/**
 * GraphiQL's page for yoga (its `renderGraphiQL` option): a small HTML page whose scripts
 * and styles are the files above, instead of yoga's default, which loads them from a CDN and
 * stays blank offline. The boot script pre-fills the Authorization header only when the page
 * was opened from a signed-in console.
 */
export function renderGraphiQLPage(options: GraphiQLOptions): string {
  // Inside <script type="application/json">, "<" must not open a tag ("</script>").
  const json = JSON.stringify({ ...options, title: undefined }).replaceAll('<', '\\u003c');
  return `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <title>Tollgate GraphiQL</title>
    <link rel="icon" href="data:," />
    <link rel="stylesheet" href="/console/graphiql/graphiql.css" />
    <style>body { margin: 0; height: 100vh; } #root { height: 100%; }</style>
  </head>
  <body class="no-focus-outline">
    <noscript>GraphiQL needs JavaScript.</noscript>
    <div id="root"></div>
    <script type="application/json" id="graphiql-options">${json}</script>
    <script src="/console/graphiql/boot.js"></script>
    <script src="/console/graphiql/graphiql.js"></script>
  </body>
</html>
`;
}
