// Client address resolution (src/gateway/client-address.ts): the socket's peer, or, behind
// trusted proxies only, the right-most X-Forwarded-For entry that is not a trusted proxy.
import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { clientAddress } from '../../src/gateway/client-address.js';
import { CidrList, parseCidr, parseIp } from '../../src/net/ip.js';

function req(remoteAddress: string | undefined, forwardedFor?: string | string[]): IncomingMessage {
  return { socket: { remoteAddress }, headers: forwardedFor === undefined ? {} : { 'x-forwarded-for': forwardedFor } } as unknown as IncomingMessage;
}

const none = CidrList.parse([]);
const proxies = CidrList.parse(['10.0.0.0/8', '2001:db8:1::/48']);
const addr = (r: IncomingMessage, trusted: CidrList) => clientAddress(r, trusted)?.toString() ?? null;

describe('clientAddress', () => {
  it('is the socket peer when no proxy is trusted, whatever X-Forwarded-For claims', () => {
    expect(addr(req('198.51.100.4', '203.0.113.9'), none)).toBe('198.51.100.4');
    expect(addr(req('10.1.2.3', '203.0.113.9'), none)).toBe('10.1.2.3');
  });

  it('shows an IPv4-mapped IPv6 peer (a dual-stack socket) as IPv4', () => {
    expect(addr(req('::ffff:198.51.100.4'), none)).toBe('198.51.100.4');
    expect(addr(req('::ffff:10.0.0.5', '203.0.113.9'), proxies)).toBe('203.0.113.9');
  });

  it('ignores X-Forwarded-For from a peer that is not a trusted proxy', () => {
    expect(addr(req('198.51.100.4', '203.0.113.9'), proxies)).toBe('198.51.100.4');
  });

  it('takes the right-most untrusted entry behind trusted proxies, not the left-most a client can forge', () => {
    expect(addr(req('10.0.0.1', '1.1.1.1, 203.0.113.9'), proxies)).toBe('203.0.113.9');
    expect(addr(req('10.0.0.1', '1.1.1.1, 203.0.113.9, 10.0.0.7'), proxies)).toBe('203.0.113.9');
    // Repeated headers arrive as an array or joined; both read the same.
    expect(addr(req('10.0.0.1', ['1.1.1.1', '203.0.113.9, 10.0.0.7']), proxies)).toBe('203.0.113.9');
    expect(addr(req('2001:db8:1::5', '2001:db8:ffff::9, 2001:db8:1::6'), proxies)).toBe('2001:db8:ffff::9');
  });

  it('reads entries with a port or in brackets (Azure Application Gateway, IIS ARR)', () => {
    expect(addr(req('10.0.0.4', '203.0.113.9:51234'), proxies)).toBe('203.0.113.9');
    expect(addr(req('10.0.0.4', '[2001:db8:ffff::9]:443'), proxies)).toBe('2001:db8:ffff::9');
    expect(addr(req('10.0.0.4', '[2001:db8:ffff::9]'), proxies)).toBe('2001:db8:ffff::9');
    expect(addr(req('10.0.0.4', '1.1.1.1, 203.0.113.9:51234, 10.0.0.7:80'), proxies)).toBe('203.0.113.9');
  });

  it('is unknown (null) when a trusted hop wrote something that is not an address: never the proxy itself', () => {
    expect(addr(req('10.0.0.1', '203.0.113.9, not-an-ip, 10.0.0.7'), proxies)).toBeNull();
    expect(addr(req('10.0.0.1', 'unknown'), proxies)).toBeNull();
    expect(addr(req('10.0.0.1', '203.0.113.9:99999'), proxies)).toBeNull();
    // No header at all: the trusted proxy is the client (its own health checks).
    expect(addr(req('10.0.0.1', ''), proxies)).toBe('10.0.0.1');
  });

  it('is the left-most entry when every hop is a trusted proxy', () => {
    expect(addr(req('10.0.0.1', '10.0.0.3, 10.0.0.2'), proxies)).toBe('10.0.0.3');
  });

  it('is null for a socket that has no address any more', () => {
    expect(clientAddress(req(undefined), proxies)).toBeNull();
  });
});

describe('addresses and CIDR lists', () => {
  it('accepts only canonical addresses', () => {
    expect(parseIp('127.0.0.1')?.toString()).toBe('127.0.0.1');
    expect(parseIp('::1')?.toString()).toBe('::1');
    for (const junk of ['127.1', '0x7f.0.0.1', '2130706433', '1.2.3.4 ', '', 'localhost']) expect(parseIp(junk)).toBeNull();
  });

  it('parses CIDRs and single addresses, and refuses anything else by name', () => {
    expect(parseCidr('10.0.0.0/8')?.[1]).toBe(8);
    expect(parseCidr('192.0.2.7')?.[1]).toBe(32);
    expect(parseCidr('fd00::/8')?.[1]).toBe(8);
    for (const junk of ['10.0.0.0/33', '10.0.0.0/', '10.0.0.0/x', 'fd00::/129', 'example.com/8']) expect(parseCidr(junk)).toBeNull();
    expect(() => CidrList.parse(['10.0.0.0/8', 'nope'])).toThrow("'nope' is not an IP address or CIDR range");
  });

  it('matches either family without mixing them', () => {
    const list = CidrList.parse(['10.0.0.0/8', 'fd00::/8']);
    expect(list.has(parseIp('10.200.0.1')!)).toBe(true);
    expect(list.has(parseIp('11.0.0.1')!)).toBe(false);
    expect(list.has(parseIp('fd12::1')!)).toBe(true);
    expect(list.has(parseIp('fe80::1')!)).toBe(false);
    expect(list.has(parseIp('::ffff:10.0.0.1')!)).toBe(true);
  });
});
