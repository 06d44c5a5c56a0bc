// IP addresses and CIDR lists (ipaddr.js), shared by the client-address resolution, the
// egress policy and per-key allowlists. Only canonical textual forms are accepted: ipaddr.js
// alone also takes "127.1" or "0x7f.1", which nobody writes in a setting on purpose.
import ipaddr from 'ipaddr.js';

export type IP = ipaddr.IPv4 | ipaddr.IPv6;

/**
 * Parses an address in canonical form; an IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, what a
 * dual-stack socket reports for an IPv4 peer) becomes the IPv4 address. Null when `text` is
 * not an address.
 */
export function parseIp(text: string): IP | null {
  if (ipaddr.IPv4.isValidFourPartDecimal(text)) return ipaddr.IPv4.parse(text);
  if (!ipaddr.IPv6.isValid(text)) return null;
  const v6 = ipaddr.IPv6.parse(text);
  return v6.isIPv4MappedAddress() ? v6.toIPv4Address() : v6;
}

/** `10.0.0.0/8`, `fd00::/8`, or a single address (a /32 or /128); null when neither. */
export function parseCidr(text: string): [IP, number] | null {
  const slash = text.indexOf('/');
  if (slash === -1) {
    const ip = parseIp(text);
    return ip ? [ip, ip.kind() === 'ipv4' ? 32 : 128] : null;
  }
  const ip = parseIp(text.slice(0, slash));
  const bitsText = text.slice(slash + 1);
  const bits = Number(bitsText);
  if (!ip || !/^\d{1,3}$/.test(bitsText) || bits > (ip.kind() === 'ipv4' ? 32 : 128)) return null;
  return [ip, bits];
}

/** A set of CIDR ranges, matched against addresses of either family. */
export class CidrList {
  private constructor(private readonly ranges: ReadonlyArray<[IP, number]>) {}

  /** Throws naming the first entry that is not a CIDR or an address. */
  static parse(entries: readonly string[]): CidrList {
    return new CidrList(
      entries.map((entry) => {
        const range = parseCidr(entry);
        if (!range) throw new Error(`'${entry}' is not an IP address or CIDR range`);
        return range;
      }),
    );
  }

  get size(): number {
    return this.ranges.length;
  }

  has(ip: IP): boolean {
    for (const range of this.ranges) if (range[0].kind() === ip.kind() && ip.match(range)) return true;
    return false;
  }

  /** Whether the whole of `cidr` (a range or an address) lies inside one of these ranges. */
  covers(cidr: string): boolean {
    const inner = parseCidr(cidr);
    if (!inner) return false;
    const [ip, bits] = inner;
    for (const range of this.ranges) if (range[0].kind() === ip.kind() && bits >= range[1] && ip.match(range)) return true;
    return false;
  }
}
