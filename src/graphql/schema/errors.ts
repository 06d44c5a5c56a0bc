// Admin store errors as GraphQL errors, shared by the schema files whose mutations go
// through the AdminStore (teams, providers, routing, pricing, audit): a stable
// `extensions.code` for each, the offending field named for invalid input, and 503 when the
// configuration store cannot be reached.
import { GraphQLError } from 'graphql';
import { AdminStoreError } from '../../store/admin/validators.js';
import { Prisma } from '../../store/prisma.js';

export function notFound(what: string): GraphQLError {
  return new GraphQLError(`${what} not found`, { extensions: { code: 'NOT_FOUND' } });
}

export function forbidden(message: string): GraphQLError {
  return new GraphQLError(message, { extensions: { code: 'FORBIDDEN' } });
}

/**
 * AdminStoreError → GraphQLError with a stable `extensions.code`; anything else as is.
 * INVALID_INPUT names the offending field as a path in the operation's arguments
 * (`extensions.field`, e.g. `input.targets.0.model`): the store reports it relative to the
 * value it validated, which the caller passed as `argument` (`input`, or `input.name` when the
 * store was given that one string; '' when its paths are the field's arguments themselves).
 */
function toGraphQLError(err: unknown, argument = 'input'): unknown {
  if (err instanceof AdminStoreError) {
    switch (err.code) {
      case 'INVALID_INPUT': {
        const { path, reason } = invalidInputParts(err);
        const field = path === null ? argument : argument ? `${argument}.${path}` : path;
        return new GraphQLError(`${field}: ${reason}`, { extensions: { code: 'BAD_USER_INPUT', field } });
      }
      case 'NOT_FOUND':
        return new GraphQLError(err.message, { extensions: { code: 'NOT_FOUND' } });
      case 'CONFLICT':
        return new GraphQLError(err.message, { extensions: { code: 'CONFLICT' } });
      case 'FORBIDDEN':
        return forbidden(err.message);
      default:
        return new GraphQLError('Internal error.', { extensions: { code: 'INTERNAL_SERVER_ERROR' } });
    }
  }
  if (isStoreUnreachable(err)) {
    return new GraphQLError('The configuration store is unreachable; try again shortly.', {
      extensions: { code: 'SERVICE_UNAVAILABLE', http: { status: 503 } },
    });
  }
  return err;
}

// Prisma's codes for "cannot reach / lost the database" (P1001 unreachable, P1002 timed out,
// P1008 operation timed out, P1017 server closed the connection), and the driver's own errors.
const UNREACHABLE_CODES = new Set(['P1001', 'P1002', 'P1008', 'P1017']);

function isStoreUnreachable(err: unknown): boolean {
  if (err instanceof Prisma.PrismaClientInitializationError) return true;
  if (err instanceof Prisma.PrismaClientKnownRequestError && UNREACHABLE_CODES.has(err.code)) return true;
  const message = err instanceof Error ? err.message : '';
  return /closed the connection|ECONNREFUSED|ECONNRESET|Connection terminated|Can't reach database/i.test(message);
}

/**
 * The store's INVALID_INPUT messages read `<path>: <reason>`, the path relative to the value it
 * validated (`input` when that value was a single string).
 */
function invalidInputParts(err: AdminStoreError): { path: string | null; reason: string } {
  const match = /^([\w.[\]]+): ([\s\S]*)$/.exec(err.message);
  if (!match) return { path: null, reason: err.message };
  // `rules[1].when` → `rules.1.when`, the form of GraphQL argument paths.
  const path = match[1]!.replace(/\[(\d+)\]/g, '.$1');
  return { path: path === 'input' ? null : path, reason: match[2]! };
}

/** Runs an AdminStore call, translating its errors (see toGraphQLError for `argument`). */
export async function store<T>(fn: () => Promise<T>, argument?: string): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw toGraphQLError(err, argument);
  }
}
