// Loop protection: every upstream request carries this deployment's marker in `x-tollgate-hop`;
// a proxied request that arrives with it came from this Tollgate itself (a provider's base URL
// points back at it) and is refused with 508. The marker is derived from the admin token, so
// every instance of one deployment shares it, another deployment (Tollgate in front of
// Tollgate) has its own, and the token cannot be recovered from it.
import { createHmac } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';

export const HOP_HEADER = 'x-tollgate-hop';

export function deploymentMarker(adminToken: string): string {
  return createHmac('sha256', adminToken).update('tollgate hop marker').digest('base64url').slice(0, 22);
}

/** Whether `headers` carry `marker` (a repeated header arrives joined with commas). */
export function carriesMarker(headers: IncomingHttpHeaders, marker: string): boolean {
  const value = headers[HOP_HEADER];
  if (typeof value !== 'string') return false;
  return value === marker || value.split(',').some((v) => v.trim() === marker);
}
