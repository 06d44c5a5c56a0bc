// What every resolver receives. Built per HTTP request and per websocket operation from the
// same function, so auth is identical on both transports.
import type { ClickHouseClient } from '@clickhouse/client';
import type { PrismaClient } from '@prisma/client';
import type { Principal, TokenVerifier } from '../gateway/tokens.js';
import type { LiveBus, LiveStreamOpener } from '../live/events.js';
import type { BudgetStatus } from '../budgets/enforcer.js';
import type { Receipt } from '../receipts/receipt.js';
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
  /** Live spend of a budget in its current period; absent when budgets are not enforced. */
  budgetStatus?: (budgetId: string) => Promise<BudgetStatus | null>;
}

export interface GraphQLContext extends GraphQLServices {
  principal: Principal | null;
  /**
   * Set only for the one shared execution of a websocket fan-out group (src/live/fanout.ts):
   * subscription resolvers open their event stream through it instead of `bus.stream`.
   */
  openLiveStream?: LiveStreamOpener;
}

export async function createContext(services: GraphQLServices, authorization: string | undefined): Promise<GraphQLContext> {
  const principal = await services.tokens.verify(authorization);
  return { ...services, principal };
}
