// Per-key and per-token IP allowlists (`allowedCidrs`, DESIGN §4): a key or token that has
// one may only be used from a client address inside it (the address as client-address.ts
// resolves it, X-Forwarded-For believed only from TOLLGATE_TRUSTED_PROXIES). Empty = anywhere.
import type { IncomingMessage } from 'node:http';
import ipaddr from 'ipaddr.js';
import { CidrList, parseCidr } from '../net/ip.js';
import { clientAddress } from './client-address.js';
import { ipNotAllowed } from './errors.js';

/**
 * The stored form of an allowlist entry: the network address and prefix (`10.0.0.0/8`,
 * `2001:db8::/32`; a single address becomes a /32 or /128). Null when `text` is neither.
 */
export function normalizeCidr(text: string): string | null {
  const range = parseCidr(text.trim());
  if (!range) return null;
  const [ip, bits] = range;
  const cidr = `${ip.toString()}/${bits}`;
  const network = ip.kind() === 'ipv4' ? ipaddr.IPv4.networkAddressFromCIDR(cidr) : ipaddr.IPv6.networkAddressFromCIDR(cidr);
  return `${network.toString()}/${bits}`;
}

// Key and token records stay cached for the auth cache window, so each list is parsed once
// per window, not once per request.
const parsed = new WeakMap<readonly string[], CidrList>();

/** Whether a request may use a key or token with this allowlist. */
export function isAllowedFrom(allowedCidrs: readonly string[], req: IncomingMessage, trustedProxies: CidrList): boolean {
  if (allowedCidrs.length === 0) return true;
  let list = parsed.get(allowedCidrs);
  if (!list) parsed.set(allowedCidrs, (list = CidrList.parse(allowedCidrs)));
  const address = clientAddress(req, trustedProxies);
  return address !== null && list.has(address);
}

/** Throws the 403 `ip_not_allowed` when the request comes from outside the allowlist. */
export function assertAllowedFrom(allowedCidrs: readonly string[], req: IncomingMessage, trustedProxies: CidrList): void {
  if (!isAllowedFrom(allowedCidrs, req, trustedProxies)) throw ipNotAllowed();
}
