// Assembles the schema: one builder, one file per domain.
import { createBuilder } from '../builder.js';
import { registerAnalytics } from './analytics.js';
import { registerAudit } from './audit.js';
import { registerLive } from './live.js';
import { registerPricing } from './pricing.js';
import { registerProviders } from './providers.js';
import { registerTasks } from './tasks.js';
import { registerTeams } from './teams.js';
import { registerViewer } from './viewer.js';

export function buildSchema() {
  const builder = createBuilder();
  registerViewer(builder);
  registerTeams(builder);
  registerProviders(builder);
  registerPricing(builder);
  registerAnalytics(builder);
  registerAudit(builder);
  registerTasks(builder);
  registerLive(builder);
  return builder.toSchema({ sortSchema: true });
}
