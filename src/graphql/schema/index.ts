// Assembles the schema: one builder, one file per domain.
import { type GraphQLSchema, isObjectType } from 'graphql';
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
  return resolveExposedFieldsByDefault(builder.toSchema({ sortSchema: true }));
}

/**
 * A field made with `t.expose…` reads its parent's property of the same name, which is what
 * graphql's default resolver does; Pothos still gives it a resolver function. Without one,
 * graphql-jit (graphql/jit.ts) reads the property inline instead of calling a resolver with
 * its own resolve info per value: a 2,100-row timeSeries has ~17,000 such values. Fields
 * whose resolver a plugin wrapped (auth scopes) keep it.
 */
function resolveExposedFieldsByDefault(schema: GraphQLSchema): GraphQLSchema {
  for (const type of Object.values(schema.getTypeMap())) {
    if (!isObjectType(type)) continue;
    for (const field of Object.values(type.getFields())) {
      const { pothosExposedField, pothosResolveWrapped } = field.extensions as { pothosExposedField?: string; pothosResolveWrapped?: boolean };
      if (pothosExposedField === field.name && !pothosResolveWrapped) field.resolve = undefined;
    }
  }
  return schema;
}
