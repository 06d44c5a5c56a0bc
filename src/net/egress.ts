// Where Tollgate's outbound connections may go, decided when each connection is made, on the
// addresses the name actually resolved to: a URL's host says little (a public name can point at
// 127.0.0.1, and can change between a check and the connection). An undici connector refuses a
// denied literal address before connecting, the DNS lookup hands net.connect only the allowed
// addresses, and the connected socket's peer is checked once more.
//
// - Budget webhooks (set by team admins): public unicast addresses only, plus the host names and
//   CIDRs of TOLLGATE_EGRESS_ALLOW. Not loopback, link-local, private (RFC 1918, ULA, CGNAT),
//   unspecified, multicast or reserved ranges. Redirects are never followed.
// - Providers (set by global admins): anywhere (local vLLM/Ollama live on loopback) except cloud
//   metadata services (link-local 169.254.0.0/16 and fe80::/10, a few well-known metadata
//   addresses and names) and Tollgate's own listening sockets.
import dns from 'node:dns';
import type { LookupFunction, Socket } from 'node:net';
import os from 'node:os';
import { Agent, buildConnector } from 'undici';
import { type CidrList, type IP, parseIp } from './ip.js';

/** A connection the policy refused; the upstream client reports it as a refused connection. */
export class EgressDenied extends Error {
  readonly code = 'EGRESS_DENIED';
}

export interface DestinationPolicy {
  /** A reason to refuse this host name whatever it resolves to, or null. */
  refuseHost(hostname: string): string | null;
  /** A host name the operator listed: every address it resolves to is fine. */
  trustsHost(hostname: string): boolean;
  /** A reason to refuse this address (and port, when known), or null. */
  refuseAddress(ip: IP, port: number | null): string | null;
}

/** What a DNS lookup function looks like to us (dns.lookup with `all: true`). */
export type Resolver = (
  hostname: string,
  options: dns.LookupAllOptions,
  callback: (err: NodeJS.ErrnoException | null, addresses: dns.LookupAddress[]) => void,
) => void;

const systemResolver: Resolver = (hostname, options, callback) => dns.lookup(hostname, options, callback);

// ── Webhooks ────────────────────────────────────────────────────────────────────────────

/** Public unicast only; an IPv6 NAT64 address (64:ff9b::/96) is judged by the IPv4 address inside. */
function isPublic(ip: IP): boolean {
  const range = ip.range();
  if (range === 'unicast') return true;
  if (range === 'rfc6052') {
    const bytes = ip.toByteArray();
    const inner = parseIp(bytes.slice(12).join('.'));
    return inner !== null && inner.range() === 'unicast';
  }
  return false;
}

export function webhookPolicy(allow: { hosts: readonly string[]; cidrs: CidrList }): DestinationPolicy {
  return {
    refuseHost: () => null,
    trustsHost: (hostname) => allow.hosts.includes(hostname),
    refuseAddress: (ip) =>
      isPublic(ip) || allow.cidrs.has(ip) ? null : `${ip.toString()} is not a public address (${ip.range()}); TOLLGATE_EGRESS_ALLOW can allow it`,
  };
}

// ── Providers ───────────────────────────────────────────────────────────────────────────

const METADATA_HOSTS = new Set(['metadata', 'metadata.google.internal', 'metadata.goog', 'instance-data', 'instance-data.ec2.internal']);
/** Metadata services outside the link-local ranges: AWS over IPv6, Alibaba Cloud. */
const METADATA_ADDRESSES = new Set(['fd00:ec2::254', '100.100.100.200']);

function isMetadata(ip: IP): boolean {
  return ip.range() === 'linkLocal' || METADATA_ADDRESSES.has(ip.toString());
}

/** A socket Tollgate listens on: an address (or a host name, for the save-time check) and a port. */
export interface Listener {
  address: string;
  port: number;
}

function isLocalInterface(ip: IP): boolean {
  for (const addresses of Object.values(os.networkInterfaces())) {
    for (const a of addresses ?? []) if (parseIp(a.address)?.toString() === ip.toString()) return true;
  }
  return false;
}

/** Whether ip:port reaches one of `listeners` (a wildcard listener is reached by every local address). */
function isSelf(ip: IP, port: number, listeners: readonly Listener[]): boolean {
  for (const listener of listeners) {
    if (listener.port !== port) continue;
    const bound = parseIp(listener.address);
    if (bound === null) continue;
    if (bound.range() === 'unspecified') {
      if (ip.range() === 'loopback' || ip.range() === 'unspecified' || isLocalInterface(ip)) return true;
    } else if (bound.toString() === ip.toString()) return true;
  }
  return false;
}

export function providerPolicy(listeners: () => readonly Listener[]): DestinationPolicy {
  return {
    refuseHost: (hostname) => (METADATA_HOSTS.has(hostname) ? `${hostname} is a cloud metadata service` : null),
    trustsHost: () => false,
    refuseAddress: (ip, port) => {
      if (isMetadata(ip)) return `${ip.toString()} is a link-local or cloud metadata address`;
      if (port !== null && isSelf(ip, port, listeners())) return `${ip.toString()}:${port} is Tollgate itself`;
      return null;
    },
  };
}

/**
 * Why a provider base URL may not be used, or null: the same rules as at connection time, on
 * the URL alone (no DNS; a name is checked again, on its addresses, when it is connected to).
 * For validating a base URL when it is saved. `listeners`: Tollgate's own address(es) and port(s).
 */
export function providerBaseUrlProblem(baseUrl: string, listeners: readonly Listener[] = []): string | null {
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    return 'is not a valid URL';
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'must be an http or https URL';
  const hostname = bareHost(url.hostname);
  const port = Number(url.port) || (url.protocol === 'https:' ? 443 : 80);
  const policy = providerPolicy(() => listeners);
  const refused = policy.refuseHost(hostname);
  if (refused) return refused;
  if (listeners.some((l) => l.port === port && bareHost(l.address) === hostname)) return `${hostname}:${port} is Tollgate itself`;
  const ip = parseIp(hostname === 'localhost' ? '127.0.0.1' : hostname);
  return ip ? policy.refuseAddress(ip, port) : null;
}

// ── Connections ─────────────────────────────────────────────────────────────────────────

/** Lower case, without IPv6 brackets or a trailing dot. */
function bareHost(hostname: string): string {
  return hostname
    .toLowerCase()
    .replace(/^\[(.*)\]$/, '$1')
    .replace(/\.$/, '');
}

/** dns.lookup that answers only the addresses `policy` allows (all of them for a trusted host). */
function policedLookup(policy: DestinationPolicy, resolve: Resolver): LookupFunction {
  return (hostname, options, callback) => {
    resolve(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, '', 0);
      const host = bareHost(hostname);
      let allowed = addresses;
      if (!policy.trustsHost(host)) {
        const reasons: string[] = [];
        allowed = addresses.filter((a) => {
          const ip = parseIp(a.address);
          const reason = ip ? policy.refuseAddress(ip, null) : `${a.address} is not an address`;
          if (reason) reasons.push(reason);
          return reason === null;
        });
        if (allowed.length === 0) return callback(new EgressDenied(`${host}: ${reasons[0] ?? 'no address'}`), '', 0);
      }
      // net.connect asks for every address when it may try several (autoSelectFamily).
      if (options.all) (callback as unknown as (e: null, a: dns.LookupAddress[]) => void)(null, allowed);
      else callback(null, allowed[0]!.address, allowed[0]!.family);
    });
  };
}

/** An undici connector that makes only the connections `policy` allows; refusals are EgressDenied. */
export function policedConnector(policy: DestinationPolicy, options: { timeout: number; resolve?: Resolver }): buildConnector.connector {
  const connect = buildConnector({ timeout: options.timeout, lookup: policedLookup(policy, options.resolve ?? systemResolver) });
  const refuse = (callback: buildConnector.Callback, reason: string) => queueMicrotask(() => callback(new EgressDenied(reason), null));
  return (opts, callback) => {
    const hostname = bareHost(opts.hostname);
    const port = Number(opts.port) || (opts.protocol === 'https:' ? 443 : 80);
    const refusedHost = policy.refuseHost(hostname);
    if (refusedHost) return refuse(callback, refusedHost);
    if (policy.trustsHost(hostname)) return connect(opts, callback);
    const literal = parseIp(hostname);
    const refusedLiteral = literal && policy.refuseAddress(literal, port);
    if (refusedLiteral) return refuse(callback, refusedLiteral);
    connect(opts, (err, socket) => {
      if (err) return callback(err, null);
      // The peer actually reached: the last word, whatever resolved the name.
      const peer = parseIp((socket as Socket).remoteAddress ?? '');
      const refused = peer ? policy.refuseAddress(peer, (socket as Socket).remotePort ?? port) : 'the connection has no peer address';
      if (!refused) return callback(null, socket!);
      socket!.destroy();
      callback(new EgressDenied(refused), null);
    });
  };
}

/** The dispatcher budget webhooks are sent through. */
export function webhookAgent(allow: { hosts: readonly string[]; cidrs: CidrList }, options: { timeout: number; resolve?: Resolver }): Agent {
  return new Agent({ connect: policedConnector(webhookPolicy(allow), options) });
}
