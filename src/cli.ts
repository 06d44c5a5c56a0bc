// `tollgate <command>`: start, migrate, demo, keys create, prices, verify-receipt.
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { createKeyThrough, type GraphQLCall, graphqlClient, owningServer } from './admin-client.js';
import { type Config, loadConfig } from './config.js';
import { createLogger, limitHeapGrowth, startServer } from './main.js';
import { type RepricingResult, repriceReceipts } from './pricing/reprice.js';
import { importSnapshot } from './pricing/snapshot.js';
import { verifyReceipt } from './receipts/verify.js';
import { openStores, type Stores } from './runtime.js';
import type { PriceRecord } from './store/admin/pricing.js';
import { claimDataDir, describeOwner, findOwner } from './store/data-dir.js';

const USAGE = `Usage: tollgate <command>

  start                               start the gateway (default)
  migrate                             apply config-store and ClickHouse migrations
  demo [--duration D] [--rate R]      send realistic traffic (a simulated provider) through the
                                      running Tollgate, or one it starts; D like 90s, 5m (default:
                                      until Ctrl-C), R requests per second (default 5)
  keys create --team T [--name N] [--json]
                                      create an API key (and the team if missing)
  prices import-snapshot [--provider NAME ...] [--missing-only] [--json]
                                      price configured providers from the list prices
                                      shipped with Tollgate (a new version only where changed)
  prices reprice --from T --to T --provider P --model M [--version N] [--apply] [--json]
                                      recompute receipt costs in [from, to) with a price
                                      version (default: current); --apply writes them to
                                      receipt_repricings (receipts stay as signed)
  verify-receipt <file> [--keys F | --url U]
                                      verify a receipt's signature offline
`;

export async function runCli(argv: string[]): Promise<number> {
  const [command = 'start', ...rest] = argv;
  // Without configuration: help must work where the environment does not (yet) parse.
  switch (command) {
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return 0;
    case 'verify-receipt':
      return verify(rest);
  }
  const config = loadConfig();
  switch (command) {
    case 'start':
      limitHeapGrowth(config.heapGrowthPercent);
      await startServer(config, { installSignalHandlers: true });
      return -1; // keep running
    case 'migrate':
      return migrate(config);
    case 'keys':
      return keys(config, rest);
    case 'prices':
      return prices(config, rest);
    case 'demo': {
      const { runDemo } = await import('./demo.js');
      return runDemo(config, rest);
    }
    default:
      process.stderr.write(`unknown command '${command}'\n\n${USAGE}`);
      return 2;
  }
}

async function migrate(config: Config): Promise<number> {
  const owner = await findOwner(config.dataDir);
  if (owner) {
    process.stdout.write(`Tollgate (${describeOwner(owner)}) owns ${config.dataDir} and applied migrations when it started; nothing to do.\n`);
    return 0;
  }
  const claim = await claimDataDir(config.dataDir);
  try {
    const stores = await openStores(config, createLogger(config), { waitForClickHouse: false });
    await stores.close();
    process.stdout.write('migrations applied\n');
    return 0;
  } finally {
    claim.release();
  }
}

async function keys(config: Config, args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { team: { type: 'string' }, name: { type: 'string' }, json: { type: 'boolean', default: false } },
  });
  if (positionals[0] !== 'create' || !values.team) {
    process.stderr.write(USAGE);
    return 2;
  }
  const team = values.team;
  const name = values.name ?? 'cli';
  let created: { id: string; teamId: string; secret: string };
  const server = await owningServer(config);
  if (server) {
    // The running server owns the embedded stores: ask it, with the admin token.
    created = await createKeyThrough(server, team, name);
  } else {
    const claim = await claimDataDir(config.dataDir);
    try {
      const stores = await openStores(config, createLogger({ ...config, logLevel: 'warn' }));
      try {
        const t = await stores.adminStore.teams.ensureTeam(team);
        const k = await stores.adminStore.teams.createApiKey({ teamId: t.id, name });
        created = { id: k.apiKey.id, teamId: k.apiKey.teamId, secret: k.secret };
      } finally {
        await stores.close();
      }
    } finally {
      claim.release();
    }
  }
  if (values.json) process.stdout.write(`${JSON.stringify(created)}\n`);
  else {
    process.stdout.write(
      `Created API key ${created.id} for team '${team}'. The secret is shown once:\n\n  ${created.secret}\n\n` +
        `Use it with any OpenAI SDK: base_url=<tollgate>/v1, api_key=<the secret>.\n`,
    );
  }
  return 0;
}

// --- prices -------------------------------------------------------------------------------

type ImportedPrice = Pick<
  PriceRecord,
  'version' | 'provider' | 'model' | 'inputPerMTokUsd' | 'outputPerMTokUsd' | 'cachedInputPerMTokUsd' | 'cacheWritePerMTokUsd' | 'currency' | 'usdRate'
>;
interface ImportOutcome {
  snapshot: string;
  asOf: string;
  created: ImportedPrice[];
  unchanged: number;
  skipped: number;
}

const PRICE_FIELDS = 'version provider model inputPerMTokUsd outputPerMTokUsd cachedInputPerMTokUsd cacheWritePerMTokUsd currency usdRate';

async function prices(config: Config, args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === 'import-snapshot') return importPriceSnapshot(config, rest);
  if (sub === 'reprice') return reprice(config, rest);
  process.stderr.write(USAGE);
  return 2;
}

async function importPriceSnapshot(config: Config, args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      provider: { type: 'string', multiple: true },
      'missing-only': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    },
  });
  const names = values.provider ?? null;
  const onlyMissing = values['missing-only'];
  const outcome = await withAdmin<ImportOutcome>(
    config,
    async (graphql) =>
      (
        await graphql(
          `mutation ($input: ImportPriceSnapshotInput) {
            importPriceSnapshot(input: $input) { snapshot asOf unchanged skipped created { ${PRICE_FIELDS} } }
          }`,
          { input: { providers: names, onlyMissing } },
        )
      ).importPriceSnapshot as ImportOutcome,
    async (stores) => {
      const providers = await stores.adminStore.providers.listProviders();
      const unknown = (names ?? []).filter((n) => !providers.some((p) => p.name === n));
      if (unknown.length) throw new Error(`no provider named ${unknown.map((n) => `"${n}"`).join(', ')}`);
      const targets = names ? providers.filter((p) => names.includes(p.name)) : providers;
      return importSnapshot(stores.adminStore.pricing, targets, { onlyMissing });
    },
  );
  if (values.json) {
    process.stdout.write(`${JSON.stringify(outcome)}\n`);
    return 0;
  }
  const lines = outcome.created.map((p) => {
    const cached =
      (p.cachedInputPerMTokUsd === null ? '' : `, cached input ${p.cachedInputPerMTokUsd}`) +
      (p.cacheWritePerMTokUsd == null ? '' : `, cache write ${p.cacheWritePerMTokUsd}`);
    const entered = p.currency === 'USD' ? '' : ` (entered in ${p.currency}, 1 ${p.currency} = ${p.usdRate} USD)`;
    return `  ${p.provider}/${p.model}  version ${p.version}: input ${p.inputPerMTokUsd}, output ${p.outputPerMTokUsd}${cached} USD per 1M tokens${entered}\n`;
  });
  process.stdout.write(
    `Price snapshot ${outcome.snapshot}: vendor list prices as of ${outcome.asOf}. Check them against the vendors' pricing pages.\n` +
      lines.join('') +
      `${outcome.created.length} new price versions, ${outcome.unchanged} unchanged, ${outcome.skipped} skipped (already priced).\n`,
  );
  return 0;
}

async function reprice(config: Config, args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      from: { type: 'string' },
      to: { type: 'string' },
      provider: { type: 'string' },
      model: { type: 'string' },
      version: { type: 'string' },
      apply: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    },
  });
  const from = values.from ? new Date(values.from) : null;
  const to = values.to ? new Date(values.to) : null;
  const version = values.version === undefined ? null : Number(values.version);
  if (
    !from ||
    !to ||
    Number.isNaN(from.getTime()) ||
    Number.isNaN(to.getTime()) ||
    !values.provider ||
    !values.model ||
    (version !== null && !Number.isInteger(version))
  ) {
    process.stderr.write('prices reprice --from <ISO time> --to <ISO time> --provider P --model M [--version N] [--apply] [--json]\n');
    return 2;
  }
  const input = { from, to, provider: values.provider, model: values.model, priceVersion: version, apply: values.apply };
  const result = await withAdmin<RepricingResult>(
    config,
    async (graphql) =>
      (
        await graphql(
          `mutation ($input: RepriceReceiptsInput!) {
            repriceReceipts(input: $input) { priceVersion applied written
              rows { provider model receipts unpricedBefore originalCostUsd recomputedCostUsd deltaUsd pending } }
          }`,
          { input: { ...input, from: from.toISOString(), to: to.toISOString() } },
        )
      ).repriceReceipts as RepricingResult,
    (stores) =>
      repriceReceipts(
        {
          clickhouse: stores.clickhouse.client,
          receiptsTable: config.clickhouse?.cluster ? 'receipts_distributed' : 'receipts',
          prices: stores.adminStore.pricing,
        },
        input,
      ),
  );
  if (values.json) {
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return 0;
  }
  const rows = result.rows.map(
    (r) =>
      `  ${r.provider}/${r.model}: ${r.receipts} receipts (${r.unpricedBefore} unpriced), original ${r.originalCostUsd} USD, ` +
      `recomputed ${r.recomputedCostUsd} USD, delta ${r.deltaUsd} USD, ${r.pending} to write\n`,
  );
  process.stdout.write(
    `Price version ${result.priceVersion}, ${from.toISOString()} to ${to.toISOString()}:\n` +
      (rows.length ? rows.join('') : '  no receipts in range\n') +
      (result.applied
        ? `${result.written} re-priced costs written to receipt_repricings (receipts are unchanged).\n`
        : 'Dry run: nothing written. Add --apply to record the recomputed costs.\n'),
  );
  return 0;
}

/**
 * Runs an admin operation through the server that owns the data dir (its GraphQL API, with
 * the admin token), or on the stores directly when no server runs (DESIGN §3).
 */
async function withAdmin<T>(config: Config, remote: (graphql: GraphQLCall) => Promise<T>, local: (stores: Stores) => Promise<T>): Promise<T> {
  const server = await owningServer(config);
  if (server) return remote(graphqlClient(server));
  const claim = await claimDataDir(config.dataDir);
  try {
    const stores = await openStores(config, createLogger({ ...config, logLevel: 'warn' }));
    try {
      return await local(stores);
    } finally {
      await stores.close();
    }
  } finally {
    claim.release();
  }
}

async function verify(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { keys: { type: 'string' }, url: { type: 'string' } },
  });
  const file = positionals[0];
  if (!file || (!values.keys && !values.url)) {
    process.stderr.write('verify-receipt <receipt.json> --keys <jwks.json> | --url <tollgate base url>\n');
    return 2;
  }
  const receipt = JSON.parse(await readFile(file, 'utf8'));
  const jwks = values.keys
    ? JSON.parse(await readFile(values.keys, 'utf8'))
    : await (await fetch(new URL('/.well-known/tollgate/receipt-keys', values.url))).json();
  const result = verifyReceipt(receipt, jwks);
  process.stdout.write(result.valid ? `valid: receipt ${receipt.receipt_id} signed by ${receipt.key_id}\n` : `INVALID: ${result.reason}\n`);
  return result.valid ? 0 : 1;
}
