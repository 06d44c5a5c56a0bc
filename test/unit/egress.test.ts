// Outbound policy (src/net/egress.ts) on real loopback sockets: what webhooks and providers may
// reach, checked on resolved addresses at connection time (a resolver stands in for DNS that
// points a public-looking name at loopback or at a metadata address).

import type { LookupAddress } from 'node:dns';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebhookSender } from '../../src/budgets/webhooks.js';
import { UpstreamClient, UpstreamFailure } from '../../src/gateway/upstream.js';
import type { BudgetEvent } from '../../src/live/events.js';
import { providerBaseUrlProblem, providerPolicy, type Resolver, webhookAgent, webhookPolicy } from '../../src/net/egress.js';
import { CidrList, parseIp } from '../../src/net/ip.js';
import { PRESETS } from '../../src/providers/presets.js';
import type { Provider } from '../../src/routing/catalog.js';

/** A resolver with fixed answers (anything else: ENOTFOUND). */
function resolver(table: Record<string, string[]>): Resolver {
  return (hostname, _options, callback) => {
    const addresses = table[hostname];
    if (!addresses) return callback(Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' }), []);
    callback(
      null,
      addresses.map((address): LookupAddress => ({ address, family: address.includes(':') ? 6 : 4 })),
    );
  };
}

/** A loopback HTTP server that records what reaches it. */
async function receiver(handler: (req: http.IncomingMessage, res: http.ServerResponse) => void = (_q, r) => r.writeHead(204).end(), host = '127.0.0.1') {
  const hits: http.IncomingMessage[] = [];
  let connections = 0;
  const server = http.createServer((req, res) => {
    hits.push(req);
    req.resume();
    req.on('end', () => handler(req, res));
  });
  server.on('connection', () => connections++);
  await new Promise<void>((r) => server.listen(0, host, r));
  return {
    server,
    hits,
    connections: () => connections,
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

const event: BudgetEvent = {
  teamId: 't',
  budgetId: 'b',
  kind: 'THRESHOLD',
  scope: 'TEAM',
  apiKeyId: null,
  feature: null,
  period: 'DAY',
  action: 'ALERT',
  spentUsd: 1,
  limitUsd: 2,
  thresholdPct: 50,
  requestId: null,
  at: new Date(0).toISOString(),
};

const nothingAllowed = { hosts: [] as string[], cidrs: CidrList.parse([]) };
const ip = (s: string) => parseIp(s)!;

describe('webhook policy', () => {
  const policy = webhookPolicy(nothingAllowed);

  it('allows public unicast addresses only', () => {
    for (const ok of ['93.184.216.34', '2606:2800:220:1:248:1893:25c8:1946', '64:ff9b::5db8:d822']) expect(policy.refuseAddress(ip(ok), 443)).toBeNull();
    const refused = {
      '127.0.0.1': 'loopback',
      '::1': 'loopback',
      '10.1.2.3': 'private',
      '172.16.0.1': 'private',
      '192.168.1.1': 'private',
      '100.64.0.1': 'carrierGradeNat',
      'fd12:3456::1': 'uniqueLocal',
      '169.254.169.254': 'linkLocal',
      'fe80::1': 'linkLocal',
      '0.0.0.0': 'unspecified',
      '::': 'unspecified',
      '224.0.0.1': 'multicast',
      'ff02::1': 'multicast',
      '64:ff9b::7f00:1': 'rfc6052', // NAT64 of 127.0.0.1
    };
    for (const [address, range] of Object.entries(refused)) expect(policy.refuseAddress(ip(address), 443)).toContain(`(${range})`);
  });

  it('lets TOLLGATE_EGRESS_ALLOW open CIDRs and trust host names', () => {
    const allowing = webhookPolicy({ hosts: ['hooks.internal'], cidrs: CidrList.parse(['10.20.0.0/16']) });
    expect(allowing.refuseAddress(ip('10.20.3.4'), 80)).toBeNull();
    expect(allowing.refuseAddress(ip('10.21.3.4'), 80)).not.toBeNull();
    expect(allowing.trustsHost('hooks.internal')).toBe(true);
    expect(allowing.trustsHost('other.internal')).toBe(false);
  });
});

describe('provider base URLs', () => {
  it('are free, loopback included, except cloud metadata and Tollgate itself', () => {
    const self = [{ address: '127.0.0.1', port: 8787 }];
    expect(providerBaseUrlProblem('http://127.0.0.1:11434/v1', self)).toBeNull();
    expect(providerBaseUrlProblem('http://localhost:8000/v1', self)).toBeNull();
    expect(providerBaseUrlProblem('https://openrouter.ai/api/v1', self)).toBeNull();
    expect(providerBaseUrlProblem('http://10.0.0.5:8000/v1', self)).toBeNull();
    expect(providerBaseUrlProblem('http://169.254.169.254/latest', self)).toMatch(/metadata/);
    expect(providerBaseUrlProblem('http://[fe80::1]/', self)).toMatch(/metadata/);
    expect(providerBaseUrlProblem('http://[fd00:ec2::254]/', self)).toMatch(/metadata/);
    expect(providerBaseUrlProblem('http://100.100.100.200/', self)).toMatch(/metadata/);
    expect(providerBaseUrlProblem('http://Metadata.Google.Internal./computeMetadata/v1', self)).toMatch(/metadata/);
    // The URL parser normalizes numeric hosts before the check sees them.
    expect(providerBaseUrlProblem('http://2852039166/', self)).toMatch(/metadata/); // 169.254.169.254
    expect(providerBaseUrlProblem('http://127.0.0.1:8787/v1', self)).toMatch(/Tollgate itself/);
    expect(providerBaseUrlProblem('http://localhost:8787/v1', self)).toMatch(/Tollgate itself/);
    expect(providerBaseUrlProblem('http://127.0.0.1:8787/v1', [{ address: '0.0.0.0', port: 8787 }])).toMatch(/Tollgate itself/);
    expect(providerBaseUrlProblem('http://127.0.0.1:8788/v1', self)).toBeNull();
    expect(providerBaseUrlProblem('ftp://example.com/', self)).toMatch(/http/);
    expect(providerBaseUrlProblem('not a url', self)).toMatch(/valid URL/);
  });

  it('at connection time: a wildcard listener is reached through every local address', () => {
    const policy = providerPolicy(() => [{ address: '::', port: 9000 }]);
    expect(policy.refuseAddress(ip('127.0.0.1'), 9000)).toMatch(/Tollgate itself/);
    expect(policy.refuseAddress(ip('::1'), 9000)).toMatch(/Tollgate itself/);
    expect(policy.refuseAddress(ip('127.0.0.1'), 9001)).toBeNull();
    expect(policy.refuseAddress(ip('127.0.0.1'), null)).toBeNull(); // the port is not known while resolving
  });
});

describe('budget webhooks through the egress agent', () => {
  let hook: Awaited<ReturnType<typeof receiver>>;
  let redirectTarget: Awaited<ReturnType<typeof receiver>>;

  beforeAll(async () => {
    hook = await receiver();
    redirectTarget = await receiver();
  });
  afterAll(async () => {
    await hook.close();
    await redirectTarget.close();
  });

  async function deliver(url: string, allow = nothingAllowed, resolve?: Resolver) {
    const errors: string[] = [];
    const sender = new WebhookSender({
      secret: 's',
      dispatcher: webhookAgent(allow, { timeout: 1_000, resolve }),
      onError: (err) => errors.push(String(err)),
      backoffMs: 1,
    });
    sender.send(url, event);
    await sender.drain();
    await sender.close();
    return errors;
  }

  it('refuses loopback by literal address and by a name that resolves to it, at once and without retrying', async () => {
    const before = hook.connections();
    const literal = await deliver(`http://127.0.0.1:${hook.port}/hook`);
    expect(literal).toHaveLength(1);
    expect(literal[0]).toMatch(/refused by the egress policy: 127\.0\.0\.1 is not a public address \(loopback\)/);
    // A public-looking name pointed at 127.0.0.1: only the resolved address tells.
    const named = await deliver(`http://hooks.example.com:${hook.port}/hook`, nothingAllowed, resolver({ 'hooks.example.com': ['127.0.0.1'] }));
    expect(named[0]).toMatch(/refused by the egress policy: hooks\.example\.com: 127\.0\.0\.1 is not a public address/);
    // Real DNS too: localhost.
    expect((await deliver(`http://localhost:${hook.port}/hook`))[0]).toMatch(/refused by the egress policy/);
    expect(hook.connections()).toBe(before); // not even a TCP connection was made
    expect(hook.hits).toHaveLength(0);
  });

  it('connects only to the allowed addresses of a name that resolves to several', async () => {
    // 127.0.0.1 is allowed here; 10.255.255.1 (private) is not, and would not answer anyway.
    const allow = { hosts: [], cidrs: CidrList.parse(['127.0.0.1/32']) };
    const errors = await deliver(`http://mixed.example.com:${hook.port}/hook`, allow, resolver({ 'mixed.example.com': ['10.255.255.1', '127.0.0.1'] }));
    expect(errors).toEqual([]);
    expect(hook.hits).toHaveLength(1);
    hook.hits.length = 0;
  });

  it('delivers where TOLLGATE_EGRESS_ALLOW says (a CIDR, or a host name whatever it resolves to)', async () => {
    expect(await deliver(`http://127.0.0.1:${hook.port}/hook`, { hosts: [], cidrs: CidrList.parse(['127.0.0.0/8']) })).toEqual([]);
    expect(
      await deliver(
        `http://hooks.internal:${hook.port}/hook`,
        { hosts: ['hooks.internal'], cidrs: CidrList.parse([]) },
        resolver({ 'hooks.internal': ['127.0.0.1'] }),
      ),
    ).toEqual([]);
    expect(hook.hits).toHaveLength(2);
    expect(hook.hits[0]!.headers['x-tollgate-signature']).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/);
    hook.hits.length = 0;
  });

  it('does not follow a redirect from an allowed receiver to a refused address, nor send it again', async () => {
    const redirecting = await receiver((_req, res) => res.writeHead(302, { location: `http://127.0.0.1:${redirectTarget.port}/internal` }).end(), '127.0.0.2');
    try {
      const errors = await deliver(`http://127.0.0.2:${redirecting.port}/hook`, { hosts: [], cidrs: CidrList.parse(['127.0.0.2/32']) });
      // Once: a redirect is the receiver's configuration, and a retry gets the same one.
      expect(redirecting.hits).toHaveLength(1);
      expect(errors[0]).toMatch(/HTTP 302/);
      expect(redirectTarget.connections()).toBe(0);
    } finally {
      await redirecting.close();
    }
  });
});

describe('upstream connections', () => {
  let upstream: Awaited<ReturnType<typeof receiver>>;
  beforeAll(async () => {
    upstream = await receiver((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{}'));
  });
  afterAll(() => upstream.close());

  const provider = (baseUrl: string): Provider => {
    const url = new URL(baseUrl);
    return {
      name: 'p',
      kind: 'OPENAI_COMPATIBLE',
      preset: PRESETS.OPENAI_COMPATIBLE,
      origin: url.origin,
      basePath: url.pathname.replace(/\/+$/, ''),
      query: '',
      headers: { 'x-tollgate-hop': 'forged-by-extra-headers' },
      timeoutMs: null,
      modelMap: {},
    };
  };
  const timeouts = { connectMs: 1_000, firstByteMs: 5_000, answerMs: 5_000, idleMs: 5_000, totalMs: 10_000 };

  async function failureOf(client: UpstreamClient, baseUrl: string): Promise<UpstreamFailure | null> {
    try {
      const res = await client.post(provider(baseUrl), '/chat/completions', '{}', new AbortController().signal);
      await res.body.read();
      return null;
    } catch (err) {
      return err as UpstreamFailure;
    }
  }

  it('carries the deployment marker on every request (provider headers cannot replace it)', async () => {
    const client = new UpstreamClient(timeouts, { hopMarker: 'marker-123' });
    try {
      expect(await failureOf(client, `http://127.0.0.1:${upstream.port}/v1`)).toBeNull();
      expect(upstream.hits.at(-1)!.headers['x-tollgate-hop']).toBe('marker-123');
    } finally {
      await client.close();
    }
  });

  it('refuses metadata addresses and names, and Tollgate itself, like a refused connection', async () => {
    const client = new UpstreamClient(timeouts, {
      listeners: () => [{ address: '127.0.0.1', port: upstream.port }],
      resolve: resolver({ 'innocent.example.com': ['169.254.169.254'], 'me.example.com': ['127.0.0.1'] }),
    });
    try {
      const before = upstream.connections();
      for (const url of [
        'http://169.254.169.254/latest',
        'http://[fe80::1]:80/',
        'http://metadata.google.internal/v1',
        'http://innocent.example.com/v1',
        `http://127.0.0.1:${upstream.port}/v1`,
      ]) {
        const failure = await failureOf(client, url);
        expect(failure, url).toBeInstanceOf(UpstreamFailure);
        expect(failure!.kind, url).toBe('connect_refused');
        expect(failure!.message).toBe("Tollgate's egress policy refused the provider's address");
      }
      expect(upstream.connections()).toBe(before);
      // A name that resolves to Tollgate's own socket: the port is known only once connected.
      const named = await failureOf(client, `http://me.example.com:${upstream.port}/v1`);
      expect(named?.kind).toBe('connect_refused');
      expect(upstream.hits.length).toBe(1); // nothing was sent: only the first test's request arrived
    } finally {
      await client.close();
    }
  });
});
