// `tollgate <command>`: start, migrate, demo, keys create, verify-receipt.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig, type Config } from './config.js';
import { createLogger, startServer } from './main.js';
import { verifyReceipt } from './receipts/verify.js';
import { openStores } from './runtime.js';
import { claimDataDir, readOwner } from './store/data-dir.js';

const USAGE = `Usage: tollgate <command>

  start                               start the gateway (default)
  migrate                             apply config-store and ClickHouse migrations
  demo [--requests N]                 start Tollgate with a simulated provider and send traffic
  keys create --team T [--name N] [--json]
                                      create an API key (and the team if missing)
  verify-receipt <file> [--keys F | --url U]
                                      verify a receipt's signature offline
`;

export async function runCli(argv: string[]): Promise<number> {
  const [command = 'start', ...rest] = argv;
  const config = loadConfig();
  switch (command) {
    case 'start':
      await startServer(config, { installSignalHandlers: true });
      return -1; // keep running
    case 'migrate':
      return migrate(config);
    case 'keys':
      return keys(config, rest);
    case 'verify-receipt':
      return verify(rest);
    case 'demo': {
      const { runDemo } = await import('./demo.js');
      return runDemo(config, rest);
    }
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return 0;
    default:
      process.stderr.write(`unknown command '${command}'\n\n${USAGE}`);
      return 2;
  }
}

async function migrate(config: Config): Promise<number> {
  const owner = readOwner(config.dataDir);
  if (owner) {
    process.stdout.write(`Tollgate (pid ${owner.pid}) owns ${config.dataDir} and applied migrations when it started; nothing to do.\n`);
    return 0;
  }
  const claim = claimDataDir(config.dataDir);
  try {
    const stores = await openStores(config, createLogger(config));
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
  const owner = readOwner(config.dataDir);
  if (owner) {
    // The running server owns the embedded stores: ask it, with the admin token.
    if (!owner.url) throw new Error(`Tollgate (pid ${owner.pid}) is starting; try again in a moment.`);
    const token = config.adminToken ?? (await readFile(path.join(config.dataDir, 'admin-token'), 'utf8')).trim();
    const res = await fetch(`${owner.url}/admin/v1/keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ team, name }),
    });
    if (!res.ok) throw new Error(`server refused to create the key: ${res.status} ${await res.text()}`);
    created = (await res.json()) as typeof created;
  } else {
    const claim = claimDataDir(config.dataDir);
    try {
      const stores = await openStores(config, createLogger({ ...config, logLevel: 'warn' }));
      try {
        const t = await stores.adminStore.ensureTeam(team);
        const k = await stores.adminStore.createApiKey({ teamId: t.id, name });
        created = { id: k.apiKey.id, teamId: k.apiKey.teamId, secret: k.secret };
      } finally {
        await stores.close();
      }
    } finally {
      claim.release();
    }
  }
  if (values.json) process.stdout.write(JSON.stringify(created) + '\n');
  else {
    process.stdout.write(
      `Created API key ${created.id} for team '${team}'. The secret is shown once:\n\n  ${created.secret}\n\n` +
        `Use it with any OpenAI SDK: base_url=<tollgate>/v1, api_key=<the secret>.\n`,
    );
  }
  return 0;
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
