// Which address a request comes from: what failed-auth throttling and per-key IP allowlists
// judge. The socket's peer, unless that peer is one of TOLLGATE_TRUSTED_PROXIES: then the
// right-most X-Forwarded-For entry that is not itself a trusted proxy. Entries further left
// were written by whoever sent the request and prove nothing; only the hops we trust vouch
// for the one to their left. An entry may carry a port (`203.0.113.9:51234`, `[2001:db8::1]:443`,
// as Azure Application Gateway and IIS ARR write them); one that is not an address at all makes
// the client unknown (null: no allowlist admits it), never the trusted proxy itself.
import type { IncomingMessage } from 'node:http';
import { type CidrList, type IP, parseIp } from '../net/ip.js';

/** The client's address (IPv4-mapped IPv6 shown as IPv4); null when the socket has none (it is gone) or a trusted hop wrote garbage. */
export function clientAddress(req: IncomingMessage, trustedProxies: CidrList): IP | null {
  const remote = req.socket.remoteAddress;
  const peer = remote === undefined ? null : parseIp(remote);
  if (!peer || trustedProxies.size === 0 || !trustedProxies.has(peer)) return peer;
  // Node joins repeated X-Forwarded-For headers with ", ", in the order they came.
  const forwarded = req.headers['x-forwarded-for'];
  if (!forwarded) return peer;
  const hops = (Array.isArray(forwarded) ? forwarded.join(',') : forwarded).split(',');
  let client = peer;
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = forwardedAddress(hops[i]!.trim());
    if (!hop) return null;
    client = hop;
    if (!trustedProxies.has(hop)) break;
  }
  return client;
}

/** An X-Forwarded-For entry's address, without the port or brackets some proxies add. */
function forwardedAddress(entry: string): IP | null {
  const withPort = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(entry) ?? /^(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$/.exec(entry);
  if (!withPort) return parseIp(entry);
  return withPort[2] === undefined || Number(withPort[2]) <= 65_535 ? parseIp(withPort[1]!) : null;
}
