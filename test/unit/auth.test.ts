// KeyAuthenticator against a fake KeyLookup and an injected clock.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { type ApiKeyRecord, assertCredentialsOnce, bearer, KeyAuthenticator, type KeyLookup } from '../../src/gateway/auth.js';
import { GatewayError, invalidApiKey } from '../../src/gateway/errors.js';

const SECRET = 'tg-' + 'a1B2c3D4e5F6g7H8i9J0kL';
const OTHER = `tg-${'Z'.repeat(30)}`;
const sha = (s: string) => createHash('sha256').update(s).digest('hex');

const record = (over: Partial<ApiKeyRecord> = {}): ApiKeyRecord => ({
  id: 'key_1',
  teamId: 'team_1',
  name: 'test',
  rpmLimit: null,
  tpmLimit: null,
  allowedRoutes: [],
  allowedCidrs: [],
  expiresAt: null,
  revokedAt: null,
  ...over,
});

class FakeLookup implements KeyLookup {
  calls: string[] = [];
  keys = new Map<string, ApiKeyRecord>();
  fail: Error | null = null;
  touchApiKey?: (id: string, at: Date) => Promise<void>;
  gate: Promise<void> | null = null;
  async findApiKeyBySecretHash(hash: string): Promise<ApiKeyRecord | null> {
    this.calls.push(hash);
    if (this.gate) await this.gate;
    if (this.fail) throw this.fail;
    return this.keys.get(hash) ?? null;
  }
}

function setup(ttlMs = 1_000) {
  const c = { t: 1_000_000 };
  const lookup = new FakeLookup();
  lookup.keys.set(sha(SECRET), record());
  const auth = new KeyAuthenticator(
    lookup,
    ttlMs,
    (s) => /^tg-[A-Za-z0-9_-]{20,200}$/.test(s),
    () => c.t,
  );
  return { c, lookup, auth };
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

const MESSAGE = invalidApiKey().message;

async function expect401(p: Promise<unknown>) {
  const err = await rejection(p);
  expect(err).toBeInstanceOf(GatewayError);
  const e = err as GatewayError;
  expect(e.status).toBe(401);
  expect(e.code).toBe('invalid_api_key');
  expect(e.message).toBe(MESSAGE);
}

describe('KeyAuthenticator', () => {
  it('authenticates a valid bearer key, looking it up by its SHA-256 hash only', async () => {
    const { auth, lookup } = setup();
    const key = await auth.authenticate(`Bearer ${SECRET}`);
    expect(key.id).toBe('key_1');
    expect(lookup.calls).toEqual([sha(SECRET)]);
    expect(lookup.calls[0]).not.toContain(SECRET);
  });

  it('missing, malformed and non-Bearer headers are one 401 with no store lookup', async () => {
    const { auth, lookup } = setup();
    const headers = [
      undefined,
      '',
      'Bearer',
      'Bearer ',
      SECRET, // no scheme
      `Basic ${Buffer.from(`user:${SECRET}`).toString('base64')}`,
      `Basic ${SECRET}`,
      'Bearer sk-proj-0123456789abcdefghijkl', // not our key shape
      'Bearer tg-short',
      `Bearer ${SECRET} extra`,
      `Bearer ${SECRET}!`,
      `Token ${SECRET}`,
    ];
    for (const h of headers) await expect401(auth.authenticate(h));
    expect(lookup.calls).toEqual([]);
  });

  it('unknown, revoked and expired keys are the same 401', async () => {
    const { auth, lookup, c } = setup();
    await expect401(auth.authenticate(`Bearer ${OTHER}`)); // unknown
    const revoked = `tg-${'r'.repeat(24)}`;
    const expired = `tg-${'e'.repeat(24)}`;
    const expiresNow = `tg-${'n'.repeat(24)}`;
    const future = `tg-${'f'.repeat(24)}`;
    lookup.keys.set(sha(revoked), record({ revokedAt: new Date(c.t - 10) }));
    lookup.keys.set(sha(expired), record({ expiresAt: new Date(c.t - 1) }));
    lookup.keys.set(sha(expiresNow), record({ expiresAt: new Date(c.t) }));
    lookup.keys.set(sha(future), record({ id: 'future', expiresAt: new Date(c.t + 60_000) }));
    await expect401(auth.authenticate(`Bearer ${revoked}`));
    await expect401(auth.authenticate(`Bearer ${expired}`));
    await expect401(auth.authenticate(`Bearer ${expiresNow}`));
    expect((await auth.authenticate(`Bearer ${future}`)).id).toBe('future');
  });

  it('a cached key that expires meanwhile is refused even within the TTL', async () => {
    const { auth, lookup, c } = setup(60_000);
    lookup.keys.set(sha(SECRET), record({ expiresAt: new Date(c.t + 500) }));
    await auth.authenticate(`Bearer ${SECRET}`);
    c.t += 500;
    await expect401(auth.authenticate(`Bearer ${SECRET}`));
    expect(lookup.calls).toHaveLength(1);
  });

  it('caches for the TTL: one lookup within it, another after it', async () => {
    const { auth, lookup, c } = setup(1_000);
    await auth.authenticate(`Bearer ${SECRET}`);
    c.t += 999;
    await auth.authenticate(`Bearer ${SECRET}`);
    expect(lookup.calls).toHaveLength(1);
    c.t += 1;
    await auth.authenticate(`Bearer ${SECRET}`);
    expect(lookup.calls).toHaveLength(2);
  });

  it('revocation is seen after the TTL', async () => {
    const { auth, lookup, c } = setup(1_000);
    await auth.authenticate(`Bearer ${SECRET}`);
    lookup.keys.set(sha(SECRET), record({ revokedAt: new Date(c.t) }));
    await auth.authenticate(`Bearer ${SECRET}`); // still cached
    c.t += 1_000;
    await expect401(auth.authenticate(`Bearer ${SECRET}`));
  });

  it('unknown keys are cached too (a flood of bad keys does not hammer the store)', async () => {
    const { auth, lookup } = setup(1_000);
    for (let i = 0; i < 5; i++) await expect401(auth.authenticate(`Bearer ${OTHER}`));
    expect(lookup.calls).toHaveLength(1);
  });

  it('invalidate(hash) and invalidate() force a fresh lookup', async () => {
    const { auth, lookup } = setup(60_000);
    await auth.authenticate(`Bearer ${SECRET}`);
    auth.invalidate(sha(SECRET));
    await auth.authenticate(`Bearer ${SECRET}`);
    expect(lookup.calls).toHaveLength(2);
    auth.invalidate();
    await auth.authenticate(`Bearer ${SECRET}`);
    expect(lookup.calls).toHaveLength(3);
  });

  it('concurrent authentications of the same key make one lookup', async () => {
    const { auth, lookup } = setup();
    let open!: () => void;
    lookup.gate = new Promise<void>((r) => (open = r));
    const all = Promise.all(Array.from({ length: 20 }, () => auth.authenticate(`Bearer ${SECRET}`)));
    const other = auth.authenticate(`Bearer ${OTHER}`).catch((e) => e);
    await new Promise((r) => setImmediate(r));
    open();
    const keys = await all;
    expect(keys.every((k) => k.id === 'key_1')).toBe(true);
    expect(await other).toBeInstanceOf(GatewayError);
    expect(lookup.calls.filter((h) => h === sha(SECRET))).toHaveLength(1);
    expect(lookup.calls).toHaveLength(2);
  });

  it('store down with a cached (stale) entry: the key keeps working', async () => {
    const { auth, lookup, c } = setup(1_000);
    await auth.authenticate(`Bearer ${SECRET}`);
    c.t += 5_000;
    lookup.fail = new Error('connection refused');
    const key = await auth.authenticate(`Bearer ${SECRET}`);
    expect(key.id).toBe('key_1');
    expect(lookup.calls).toHaveLength(2); // it did try the store
  });

  it('store down while a revoked key is looked up: the old answer is not used', async () => {
    const { auth, lookup, c } = setup(1_000);
    await auth.authenticate(`Bearer ${SECRET}`);
    c.t += 5_000; // the cached answer is stale: the next request looks the key up again
    let release!: () => void;
    lookup.gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    lookup.fail = new Error('connection refused');
    const running = auth.authenticate(`Bearer ${SECRET}`);
    await new Promise((resolve) => setImmediate(resolve));
    auth.invalidate(sha(SECRET)); // revoked meanwhile
    release();
    await expect(running).rejects.toThrow('connection refused');
  });

  it('store down with a stale negative entry: still a 401', async () => {
    const { auth, lookup, c } = setup(1_000);
    await expect401(auth.authenticate(`Bearer ${OTHER}`));
    c.t += 5_000;
    lookup.fail = new Error('down');
    await expect401(auth.authenticate(`Bearer ${OTHER}`));
  });

  it('store down with nothing cached: rejects with the store error, not a 401', async () => {
    const { auth, lookup } = setup();
    const boom = new Error('connection refused');
    lookup.fail = boom;
    const err = await rejection(auth.authenticate(`Bearer ${SECRET}`));
    expect(err).toBe(boom);
    expect(err).not.toBeInstanceOf(GatewayError);
    // The failure is not cached: once the store is back the key works.
    lookup.fail = null;
    expect((await auth.authenticate(`Bearer ${SECRET}`)).id).toBe('key_1');
  });

  it('a revocation during a lookup: nobody joins the lookup begun before it, and its answer is not kept', async () => {
    const { auth, lookup } = setup();
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    // The first lookup reads the row, then its answer is slow to come back.
    const read = lookup.findApiKeyBySecretHash.bind(lookup);
    lookup.findApiKeyBySecretHash = async (hash) => {
      const row = await read(hash);
      if (lookup.calls.length === 1) await held;
      return row;
    };
    const before = auth.authenticate(`Bearer ${SECRET}`);
    await new Promise((resolve) => setImmediate(resolve));
    lookup.keys.set(sha(SECRET), record({ revokedAt: new Date() }));
    auth.invalidate();
    const after = rejection(auth.authenticate(`Bearer ${SECRET}`));
    release();
    expect((await before).id).toBe('key_1'); // it arrived before the revocation
    expect((await after) as GatewayError).toMatchObject({ status: 401 });
    await expect401(auth.authenticate(`Bearer ${SECRET}`));
    expect(lookup.calls).toHaveLength(2);
  });

  it("invalidating one key drops only that key's lookup in flight: another's answer is still kept", async () => {
    const { auth, lookup } = setup();
    let release!: () => void;
    lookup.gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const running = auth.authenticate(`Bearer ${SECRET}`);
    await new Promise((resolve) => setImmediate(resolve));
    auth.invalidate(sha(OTHER)); // another key revoked meanwhile
    release();
    expect((await running).id).toBe('key_1');
    lookup.gate = null;
    await auth.authenticate(`Bearer ${SECRET}`);
    expect(lookup.calls).toHaveLength(1); // kept: no second lookup
    // Its own invalidation while it runs: not kept, and not joined.
    auth.invalidate(sha(SECRET));
    lookup.gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const again = auth.authenticate(`Bearer ${SECRET}`);
    await new Promise((resolve) => setImmediate(resolve));
    auth.invalidate(sha(SECRET));
    const joined = auth.authenticate(`Bearer ${SECRET}`);
    release();
    await Promise.all([again, joined]);
    lookup.gate = null;
    await auth.authenticate(`Bearer ${SECRET}`);
    // 1 + the one invalidated + the one begun after it (kept: the last call needed none).
    expect(lookup.calls).toHaveLength(3);
  });

  it('remembers when keys were touched for a minute only, not every key ever used', async () => {
    const { auth, lookup, c } = setup();
    lookup.touchApiKey = async () => undefined;
    const secrets = ['b', 'c', 'd'].map((ch) => `tg-${ch.repeat(24)}`);
    for (const [i, secret] of secrets.entries()) {
      lookup.keys.set(sha(secret), record({ id: `key_${i + 2}` }));
      await auth.authenticate(`Bearer ${secret}`);
    }
    expect((auth as unknown as { lastTouched: Map<string, number> }).lastTouched.size).toBe(3);
    c.t += 61_000;
    await auth.authenticate(`Bearer ${SECRET}`);
    expect([...(auth as unknown as { lastTouched: Map<string, number> }).lastTouched.keys()]).toEqual(['key_1']);
  });

  it('records when a key was last used, at most once a minute per key', async () => {
    const { auth, lookup, c } = setup();
    const touched: Array<[string, number]> = [];
    lookup.touchApiKey = async (id, at) => {
      touched.push([id, at.getTime()]);
    };
    const start = c.t;
    await auth.authenticate(`Bearer ${SECRET}`);
    c.t += 30_000;
    await auth.authenticate(`Bearer ${SECRET}`);
    c.t += 30_000;
    await auth.authenticate(`Bearer ${SECRET}`);
    expect(touched).toEqual([
      ['key_1', start],
      ['key_1', start + 60_000],
    ]);
    await expect401(auth.authenticate(`Bearer ${OTHER}`)); // an unknown key touches nothing
    expect(touched).toHaveLength(2);
  });

  it('accepts a custom well-formedness check', async () => {
    const lookup = new FakeLookup();
    lookup.keys.set(sha('custom-key'), record({ id: 'custom' }));
    const auth = new KeyAuthenticator(lookup, 1_000, (s) => s.startsWith('custom-'));
    expect((await auth.authenticate('Bearer custom-key')).id).toBe('custom');
    await expect401(auth.authenticate(`Bearer ${SECRET}`));
  });
});

describe('bearer()', () => {
  it('extracts the token, case-insensitive scheme, tolerating surrounding whitespace after', () => {
    expect(bearer('Bearer abc')).toBe('abc');
    expect(bearer('bearer abc')).toBe('abc');
    expect(bearer('BEARER   abc  ')).toBe('abc');
    expect(bearer('Bearer a b')).toBeNull();
    expect(bearer('Basic abc')).toBeNull();
    expect(bearer(undefined)).toBeNull();
  });
});

describe('assertCredentialsOnce', () => {
  const refusal = (raw: string[]) => {
    try {
      assertCredentialsOnce(raw);
    } catch (err) {
      expect(err).toBeInstanceOf(GatewayError);
      return (err as GatewayError).body().error;
    }
    return null;
  };

  it('refuses a repeated Authorization or x-api-key, in any case, naming it', () => {
    expect(refusal(['Authorization', 'Bearer a', 'Host', 'x', 'authorization', 'Bearer b'])).toMatchObject({
      type: 'invalid_request_error',
      param: 'authorization',
    });
    expect(refusal(['X-Api-Key', 'a', 'x-api-key', 'a'])).toMatchObject({ param: 'x-api-key' });
  });

  it('lets each come once, together too', () => {
    expect(refusal(['Authorization', 'Bearer a', 'x-api-key', 'b', 'X-Tollgate-Feature', 'f', 'X-Tollgate-Feature', 'g'])).toBeNull();
    expect(refusal([])).toBeNull();
  });
});
