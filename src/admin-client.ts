// How a CLI command reaches a Tollgate server over its admin API: the server that owns the
// data dir (DESIGN §3: the embedded stores are single-process, so commands go through it),
// or one the command started itself. GraphQL with the admin token, and the loopback key
// endpoint the CLI uses.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Config } from './config.js';
import { describeOwner, findOwner } from './store/data-dir.js';

export interface ServerAccess {
  /** The main port: /v1, /admin/v1/keys. */
  url: string;
  /** /graphql (on TOLLGATE_ADMIN_PORT when set); the console is served beside it. */
  graphqlUrl: string;
  adminToken: string;
}

// biome-ignore lint/suspicious/noExplicitAny: each caller reads the fields its own query selected
export type GraphQLCall = (query: string, variables?: Record<string, unknown>) => Promise<Record<string, any>>;

/** Where GraphQL is for a server listening on `url`. */
export function graphqlUrlFor(url: string, config: Config): string {
  const endpoint = new URL('/graphql', url);
  if (config.adminPort) endpoint.port = String(config.adminPort);
  return endpoint.toString();
}

/** The server that owns the data dir, or null when none runs. Throws while it is starting. */
export async function owningServer(config: Config): Promise<ServerAccess | null> {
  const owner = await findOwner(config.dataDir);
  if (!owner) return null;
  if (!owner.url) throw new Error(`Tollgate (${describeOwner(owner)}) is starting; try again in a moment.`);
  const adminToken = config.adminToken ?? (await readFile(path.join(config.dataDir, 'admin-token'), 'utf8')).trim();
  return { url: owner.url, graphqlUrl: graphqlUrlFor(owner.url, config), adminToken };
}

export function graphqlClient(server: ServerAccess): GraphQLCall {
  return async (query, variables = {}) => {
    const res = await fetch(server.graphqlUrl, {
      method: 'POST',
      headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ query, variables }),
    });
    // biome-ignore lint/suspicious/noExplicitAny: as GraphQLCall
    const body = (await res.json().catch(() => null)) as { data?: Record<string, any>; errors?: Array<{ message: string }> } | null;
    if (!body?.data || body.errors?.length) {
      throw new Error(`server refused: ${body?.errors?.map((e) => e.message).join('; ') ?? `HTTP ${res.status}`}`);
    }
    return body.data;
  };
}

/** An API key for `team` (made if missing), through the server's loopback key endpoint. */
export async function createKeyThrough(server: ServerAccess, team: string, name: string): Promise<{ id: string; teamId: string; secret: string }> {
  const res = await fetch(`${server.url}/admin/v1/keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ team, name }),
  });
  if (!res.ok) throw new Error(`server refused to create the key: ${res.status} ${await res.text()}`);
  return (await res.json()) as { id: string; teamId: string; secret: string };
}
