// Attribution (DESIGN §4): the feature, task, task type and end user a request is billed to,
// from Tollgate's headers or, failing those, the body. Shared by the pipeline and explainRoute.
import type { IncomingHttpHeaders } from 'node:http';
import type { ParsedRequest } from '../protocols/protocol.js';
import { badRequest } from './errors.js';

export interface Attribution {
  feature: string | null;
  taskId: string | null;
  taskType: string | null;
  endUser: string | null;
}

/** The body's attribution keys: Tollgate's, never sent upstream (upstreamMetadata). */
const ATTRIBUTION_KEYS = ['feature', 'task_id', 'task_type'];

/**
 * A request's `metadata` as an upstream gets it: without Tollgate's attribution keys, and
 * absent when nothing else is in it. (Chat metadata without `store` is Tollgate's alone, for
 * attribution and rules: OpenAI refuses it; the caller decides that.)
 */
export function upstreamMetadata(metadata: unknown): Record<string, unknown> | undefined {
  if (!metadata || typeof metadata !== 'object' || Array.isArray(metadata)) return undefined;
  const rest = { ...(metadata as Record<string, unknown>) };
  for (const key of ATTRIBUTION_KEYS) delete rest[key];
  for (const _ in rest) return rest;
  return undefined;
}

/** Attribution (DESIGN §4): headers win over the body. Empty strings count as absent. */
export function attributionOf(headers: IncomingHttpHeaders, parsed: ParsedRequest): Attribution {
  const { metadata } = parsed;
  return {
    feature: pick(headers, 'x-tollgate-feature', metadata.feature, 'metadata.feature'),
    taskId: pick(headers, 'x-tollgate-task-id', metadata.task_id, 'metadata.task_id'),
    taskType: pick(headers, 'x-tollgate-task-type', metadata.task_type, 'metadata.task_type'),
    endUser: pick(headers, 'x-tollgate-user', parsed.endUser, 'user'),
  };
}

function pick(headers: IncomingHttpHeaders, name: string, fallback: unknown, bodyParam: string): string | null {
  const header = headers[name];
  const h = Array.isArray(header) ? header[0] : header;
  if (h?.trim()) return attribution(h, name);
  if (typeof fallback === 'string' && fallback.trim()) return attribution(fallback, bodyParam);
  return null;
}

const CONTROL = /\p{Cc}/u;

/**
 * Attribution values are names (features, task ids, end users): one with a control character
 * (a tab in a header, anything in the body) could not be named back where names are checked
 * (a FEATURE budget, a task outcome), so it is refused (400, param: where it came from).
 */
function attribution(value: string, param: string): string {
  const v = value.trim();
  if (CONTROL.test(v)) throw badRequest(`'${param}' must not contain control characters.`, param);
  return v.slice(0, 256);
}
