// What the proxy path is built from (app.ts wires it): the stores, limiters and buses each
// stage of the pipeline uses. Its own module so that the stages (attempt, endings,
// stream-relay) can name it without importing the pipeline that imports them.
import type { BudgetEnforcer } from '../budgets/enforcer.js';
import type { Config } from '../config.js';
import type { LiveBus } from '../live/events.js';
import type { Metrics } from '../metrics.js';
import type { ReceiptDraft, UnsignedReceipt } from '../receipts/receipt.js';
import type { Catalog } from '../routing/catalog.js';
import type { DecideHooks } from '../routing/decide.js';
import type { TargetHealth } from '../routing/health.js';
import type { RetryBudgets } from '../routing/retry-budget.js';
import type { Tracing } from '../telemetry/tracing.js';
import type { KeyAuthenticator } from './auth.js';
import type { CacheStage } from './cache.js';
import type { Ingress } from './ingress.js';
import type { RateLimiter } from './limits.js';
import type { UpstreamClient } from './upstream.js';

export interface ReceiptSink {
  append(draft: ReceiptDraft): Promise<UnsignedReceipt>;
}

export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface PipelineDeps {
  config: Config;
  auth: KeyAuthenticator;
  /** Loop marker and failed-authentication throttle, before the key is looked at. */
  ingress: Ingress;
  limiter: RateLimiter;
  catalog: () => Catalog;
  health: TargetHealth;
  retryBudgets: RetryBudgets;
  upstream: UpstreamClient;
  receipts: ReceiptSink;
  /** Absent: no response cache at all. */
  cache?: CacheStage | null;
  /** Absent: budgets are not enforced. */
  budgets?: BudgetEnforcer | null;
  bus: LiveBus;
  metrics: Metrics;
  log: Logger;
  /** The prompt classifier rules may read, and what to do with a rule that fails to evaluate. */
  decide: DecideHooks;
  /** OpenTelemetry spans; absent: tracing is off. */
  tracing?: Tracing | null;
}
