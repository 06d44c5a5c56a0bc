// What every resolver receives. Built per HTTP request and per websocket operation from the
// same function, so auth is identical on both transports.
import type { IncomingMessage } from 'node:http';
import type { ClickHouseClient } from '@clickhouse/client';
import type { PrismaClient } from '@prisma/client';
import { GraphQLError } from 'graphql';
import type { BudgetStatus } from '../budgets/enforcer.js';
import { GatewayError } from '../gateway/errors.js';
import type { Principal, TokenVerifier } from '../gateway/tokens.js';
import type { LiveBus, LiveStreamOpener } from '../live/events.js';
import type { Endpoint } from '../protocols/protocol.js';
import type { Receipt } from '../receipts/receipt.js';
import type { RouteExplanation } from '../routing/explain.js';
import type { AdminStore } from '../store/admin-store.js';

export interface GraphQLServices {
  prisma: PrismaClient;
  admin: AdminStore;
  clickhouse: ClickHouseClient;
  /** Table to read receipts from (`receipts`, or `receipts_distributed` on a cluster). */
  receiptsTable: string;
  bus: LiveBus;
  tokens: TokenVerifier;
  jwks: () => { keys: Array<Record<string, string>> };
  findReceipt: (id: string) => Promise<Receipt | null>;
  /** Called after a mutation that changes what the proxy routes or who it admits. */
  configChanged: () => Promise<void>;
  /** Upper bound for one analytics query in ClickHouse. */
  analyticsTimeoutMs: number;
  analyticsMaxRows: number;
  analyticsMaxMemoryBytes: number;
  /** The receipts store is the embedded engine (see AnalyticsContext). */
  analyticsEmbedded?: boolean;
  /** A dry run of the router for a request body (absent: not offered). */
  explainRoute?: (input: {
    body: Record<string, unknown>;
    endpoint: Endpoint;
    headers: Record<string, string>;
    team: { id: string; name: string } | null;
    apiKey: { id: string; name: string } | null;
  }) => Promise<RouteExplanation>;
  /** Live spend of a budget in its current period; absent when budgets are not enforced. */
  budgetStatus?: (budgetId: string) => Promise<BudgetStatus | null>;
}

export interface GraphQLContext extends GraphQLServices {
  principal: Principal | null;
  /** The admin store, naming this principal as the actor of every change in the audit log. */
  admin: AdminStore;
  /**
   * Set only for the one shared execution of a websocket fan-out group (src/live/fanout.ts):
   * subscription resolvers open their event stream through it instead of `bus.stream`.
   */
  openLiveStream?: LiveStreamOpener;
}

/**
 * `req`: the HTTP request (or the websocket's upgrade request), whose client address an access
 * token's allowlist is checked against; a token used from elsewhere is a FORBIDDEN error.
 */
export async function createContext(services: GraphQLServices, authorization: string | undefined, req: IncomingMessage | undefined): Promise<GraphQLContext> {
  let principal: Principal | null;
  try {
    principal = await services.tokens.verify(authorization, req);
  } catch (err) {
    if (err instanceof GatewayError && err.code === 'ip_not_allowed') {
      throw new GraphQLError(err.message, { extensions: { code: 'FORBIDDEN', http: { status: 403 } } });
    }
    throw err;
  }
  return { ...services, principal, admin: principal ? services.admin.as(principal.actor) : services.admin };
}
