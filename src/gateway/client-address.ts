// Which address a request comes from: what failed-auth throttling and per-key IP allowlists
// judge. The socket's peer, unless that peer is one of TOLLGATE_TRUSTED_PROXIES: then the
// right-most X-Forwarded-For entry that is not itself a trusted proxy. Entries further left
// were written by whoever sent the request and prove nothing; only the hops we trust vouch
// for the one to their left.
import type { IncomingMessage } from 'node:http';
import { type CidrList, type IP, parseIp } from '../net/ip.js';

/** The client's address (IPv4-mapped IPv6 shown as IPv4); null only when the socket has none (it is gone). */
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
    const hop = parseIp(hops[i]!.trim());
    // Garbage where an address should be: the last hop we could trust is all we know.
    if (!hop) break;
    client = hop;
    if (!trustedProxies.has(hop)) break;
  }
  return client;
}
