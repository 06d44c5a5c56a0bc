// Composition root for `tollgate start`: config → stores → app → listen; SIGTERM drains.
import path from 'node:path';
import v8 from 'node:v8';
import { type DestinationStream, pino } from 'pino';
import { graphqlUrlFor } from './admin-client.js';
import type { Config } from './config.js';
import { redactDeep, redactSecrets } from './redact.js';
import { openRuntime, type Runtime } from './runtime.js';
import { claimDataDir } from './store/data-dir.js';

export function createLogger(config: Config, destination?: DestinationStream) {
  return pino(
    {
      level: config.logLevel,
      base: { service: 'tollgate' },
      // Belt and braces: nothing logs these, and if something ever does, they are censored.
      redact: ['authorization', 'apiKey', 'secret', 'token', '*.authorization', '*.apiKey', '*.secret', '*.token'],
      // Credentials inside URLs (an error quoting DATABASE_URL, a webhook URL with ?token=)
      // are masked in every field and message of every line.
      formatters: { log: (fields) => redactDeep(fields) as Record<string, unknown> },
      hooks: {
        logMethod(args, method) {
          method.apply(this, args.map((a) => (typeof a === 'string' ? redactSecrets(a) : a)) as typeof args);
        },
      },
    },
    destination,
  );
}

/**
 * For the process `tollgate start` owns (not a gateway embedded in another program): V8's old
 * generation may grow `percent` past the heap its last full collection kept. V8 reads this at
 * every collection, so setting it at start takes effect (unlike the young generation's size).
 */
export function limitHeapGrowth(percent: number): void {
  if (percent > 0) v8.setFlagsFromString(`--heap-growing-percent=${percent}`);
}

export interface Started {
  runtime: Runtime;
  url: string;
  stop(): Promise<void>;
}

export async function startServer(config: Config, opts: { installSignalHandlers?: boolean; quiet?: boolean } = {}): Promise<Started> {
  const log = createLogger(config);
  const claim = await claimDataDir(config.dataDir);
  let runtime: Runtime;
  try {
    runtime = await openRuntime(config, log);
  } catch (err) {
    claim.release();
    throw err;
  }
  const port = await runtime.app.start();
  const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
  claim.setUrl(url);
  if (!opts.quiet) printBanner(config, runtime, url);

  let stopping: Promise<void> | null = null;
  const stop = () =>
    (stopping ??= (async () => {
      log.info('draining: no new connections, finishing in-flight requests, flushing receipts');
      await runtime.close();
      claim.release();
      log.info('stopped');
    })());

  if (opts.installSignalHandlers) {
    // `on`, not `once`: Ctrl-C under `npm start` delivers SIGINT twice (the terminal signals
    // the process group, and npm forwards its own), and a second one must not kill the drain
    // halfway. stop() runs once; the drain is bounded by TOLLGATE_DRAIN_TIMEOUT_MS.
    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      process.on(signal, () => {
        stop().then(
          () => process.exit(0),
          (err) => {
            log.error({ err: String(err) }, 'shutdown failed');
            process.exit(1);
          },
        );
      });
    }
  }
  return { runtime, url, stop };
}

export function printBanner(config: Config, rt: Runtime, url: string): void {
  const graphql = graphqlUrlFor(url, config);
  const lines = [
    '',
    `Tollgate is listening on ${url}`,
    `  OpenAI base_url   ${url}/v1`,
    `  console           ${new URL('/console', graphql)}   (sign in with the admin token)`,
    `  GraphQL           ${graphql}${config.production ? '' : '   (GraphiQL when opened in a browser)'}`,
    `  health            ${url}/healthz   ${url}/readyz   ${url}/metrics`,
    `  receipt keys      ${url}/.well-known/tollgate/receipt-keys`,
    `  data dir          ${config.dataDir}`,
    `  config store      ${rt.configDb.kind === 'pglite' ? `PGlite (embedded) in ${path.join(config.dataDir, 'pg')}` : 'PostgreSQL (DATABASE_URL)'}`,
    `  receipts store    ${rt.clickhouse.kind === 'chdb' ? `chDB (embedded ClickHouse) in ${path.join(config.dataDir, 'clickhouse')}` : `ClickHouse server (${redactSecrets(config.clickhouse?.url ?? '')})`}`,
    `  receipt WAL       ${path.join(config.dataDir, 'wal')}`,
    ...rt.bootstrapped.map((b) => `  configured        ${b}`),
    rt.adminToken.created
      ? `  admin token       ${rt.adminToken.token}   (shown once; also in ${path.join(config.dataDir, 'admin-token')}, mode 0600)`
      : `  admin token       ${config.adminToken ? 'from TOLLGATE_ADMIN_TOKEN' : `in ${path.join(config.dataDir, 'admin-token')}`}`,
    '',
    ...(rt.app.catalog.catalog.providers.size === 0
      ? [
          'No provider is configured yet, so there is nothing to route to. Two ways forward:',
          '  - set a provider key and restart, e.g.  OPENROUTER_API_KEY=sk-or-… npm start',
          '    (or ARK_API_KEY, OPENAI_API_KEY, DEEPSEEK_API_KEY; or providers in TOLLGATE_CONFIG=tollgate.yaml)',
          '  - or see it work with simulated traffic: run  npx tollgate demo  beside this server',
          '',
        ]
      : []),
    'Make an API key:   npx tollgate keys create --team my-team',
    '',
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}
