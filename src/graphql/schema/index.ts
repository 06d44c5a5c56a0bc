// Assembles the schema: one builder, one file per domain.
import { createBuilder } from '../builder.js';
import { registerAnalytics } from './analytics.js';
import { registerAudit } from './audit.js';
import { registerCandidate, registerLive } from './live.js';
import { registerPricing } from './pricing.js';
import { registerProviders } from './providers.js';
import { registerReceipts } from './receipts.js';
import { registerRouting } from './routing.js';
import { registerTasks } from './tasks.js';
import { registerTeams } from './teams.js';
import { registerViewer } from './viewer.js';

export function buildSchema() {
  const builder = createBuilder();
  registerViewer(builder);
  registerTeams(builder);
  registerProviders(builder);
  const candidate = registerCandidate(builder);
  registerRouting(builder, candidate);
  registerPricing(builder);
  registerReceipts(builder, registerAnalytics(builder));
  registerAudit(builder);
  registerTasks(builder);
  registerLive(builder, candidate);
  return builder.toSchema({ sortSchema: true });
}
