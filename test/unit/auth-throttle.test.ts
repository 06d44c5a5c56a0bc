// The failed-authentication throttle (src/gateway/auth-throttle.ts) with a fake clock: per
// address, per minute from the first failure, successes not counted, memory bounded.
import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { KeyAuthenticator } from '../../src/gateway/auth.js';
import { AuthThrottle } from '../../src/gateway/auth-throttle.js';
import { GatewayError, invalidApiKey } from '../../src/gateway/errors.js';
import { CidrList } from '../../src/net/ip.js';
import { generateApiKeySecret } from '../../src/store/credentials.js';

const from = (remoteAddress: string) => ({ socket: { remoteAddress }, headers: {} }) as unknown as IncomingMessage;
const refuse = async (): Promise<never> => {
  throw invalidApiKey();
};
const accept = async () => 'ok';

function throttle(limit: number, maxAddresses?: number) {
  const clock = { now: 1_000_000 };
  const t = new AuthThrottle({ limit, trustedProxies: CidrList.parse([]), now: () => clock.now, maxAddresses });
  return { t, clock };
}

async function statusOf(p: Promise<unknown>): Promise<number | 'ok'> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    return err instanceof GatewayError ? err.status : -1;
  }
}

describe('AuthThrottle', () => {
  it('refuses an address after `limit` failures in its minute, a correct credential included, with Retry-After', async () => {
    const { t, clock } = throttle(3);
    const a = from('198.51.100.1');
    for (let i = 0; i < 3; i++) expect(await statusOf(t.guard(a, refuse))).toBe(401);
    const err = await t.guard(a, accept).catch((e: GatewayError) => e);
    expect(err).toBeInstanceOf(GatewayError);
    expect((err as GatewayError).body().error).toMatchObject({ type: 'rate_limit_error', code: 'auth_rate_limited' });
    expect((err as GatewayError).headers['retry-after']).toBe('60');
    clock.now += 45_000;
    expect(((await t.guard(a, accept).catch((e: GatewayError) => e)) as GatewayError).headers['retry-after']).toBe('15');
    // Its minute over, it may try again (and fail again up to the limit).
    clock.now += 15_000;
    expect(await statusOf(t.guard(a, accept))).toBe('ok');
  });

  it('does not count successes or errors other than 401', async () => {
    const { t } = throttle(2);
    const a = from('198.51.100.2');
    for (let i = 0; i < 50; i++) expect(await statusOf(t.guard(a, accept))).toBe('ok');
    const storeDown = async (): Promise<never> => {
      throw new GatewayError(503, 'api_error', 'service_unavailable', 'down');
    };
    for (let i = 0; i < 5; i++) expect(await statusOf(t.guard(a, storeDown))).toBe(503);
    expect(await statusOf(t.guard(a, refuse))).toBe(401);
    expect(await statusOf(t.guard(a, accept))).toBe('ok');
  });

  it('keeps addresses apart, and counts IPv6 per /64', async () => {
    const { t } = throttle(1);
    await statusOf(t.guard(from('198.51.100.3'), refuse));
    expect(await statusOf(t.guard(from('198.51.100.3'), accept))).toBe(429);
    expect(await statusOf(t.guard(from('198.51.100.4'), accept))).toBe('ok');
    await statusOf(t.guard(from('2001:db8:1:2::1'), refuse));
    expect(await statusOf(t.guard(from('2001:db8:1:2:ffff::9'), accept))).toBe(429);
    expect(await statusOf(t.guard(from('2001:db8:1:3::1'), accept))).toBe('ok');
  });

  it('holds at most maxAddresses windows, forgetting the least recent', async () => {
    const { t } = throttle(1, 100);
    for (let i = 0; i < 1_000; i++) await statusOf(t.guard(from(`10.0.${i >> 8}.${i & 255}`), refuse));
    expect((t as unknown as { windows: { size: number } }).windows.size).toBe(100);
    expect(await statusOf(t.guard(from('10.0.3.231'), accept))).toBe(429); // the last one is remembered
    expect(await statusOf(t.guard(from('10.0.0.0'), accept))).toBe('ok'); // the first is forgotten
  });

  it('limit 0 throttles nothing', async () => {
    const { t } = throttle(0);
    for (let i = 0; i < 100; i++) await statusOf(t.guard(from('198.51.100.5'), refuse));
    expect(await statusOf(t.guard(from('198.51.100.5'), accept))).toBe('ok');
  });

  it('refuses a key whose checksum is wrong without a lookup', async () => {
    let lookups = 0;
    const keys = new KeyAuthenticator(
      {
        findApiKeyBySecretHash: async () => {
          lookups++;
          return null;
        },
      },
      1_000,
    );
    const good = generateApiKeySecret();
    const typo = `${good.slice(0, 10)}${good[10] === 'a' ? 'b' : 'a'}${good.slice(11)}`;
    expect(await statusOf(keys.authenticate(`Bearer ${typo}`))).toBe(401);
    expect(await statusOf(keys.authenticate(`Bearer tg-${'a'.repeat(49)}`))).toBe(401);
    expect(lookups).toBe(0);
    expect(await statusOf(keys.authenticate(`Bearer ${good}`))).toBe(401);
    expect(lookups).toBe(1);
  });
});
