// The declarative config file: ${VAR} substitution and schema checks.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfigFile, substituteEnv } from '../../src/bootstrap.js';

describe('substituteEnv', () => {
  it('replaces set variables', () => {
    expect(substituteEnv('apiKey: ${OR_KEY}\nurl: ${BASE}/v1', { OR_KEY: 'sk-or-1', BASE: 'http://h' })).toBe('apiKey: sk-or-1\nurl: http://h/v1');
    expect(substituteEnv('${A}${A}', { A: 'x' })).toBe('xx');
  });

  it('an empty-string variable is set (substituted as empty)', () => {
    expect(substituteEnv('k: "${EMPTY}"', { EMPTY: '' })).toBe('k: ""');
  });

  it('an unset variable is an error naming it', () => {
    expect(() => substituteEnv('apiKey: ${MISSING_KEY}', {})).toThrow(/MISSING_KEY/);
    expect(() => substituteEnv('a: ${SET}\nb: ${UNSET}', { SET: '1' })).toThrow(/\$\{UNSET\}/);
  });

  it('leaves text that is not a ${NAME} reference alone', () => {
    const text = 'a: $PLAIN\nb: ${1BAD}\nc: ${}\nd: $ {X}';
    expect(substituteEnv(text, {})).toBe(text);
  });

  it('does not re-expand substituted values', () => {
    expect(substituteEnv('${A}', { A: '${B}', B: 'nope' })).toBe('${B}');
  });
});

describe('loadConfigFile', () => {
  let dir: string;
  let n = 0;
  const write = async (text: string) => {
    const file = path.join(dir, `cfg-${n++}.yaml`);
    await writeFile(file, text);
    return file;
  };

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'tollgate-bootstrap-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const VALID = `
teams:
  - platform
  - name: search
providers:
  - name: openrouter
    kind: OPENROUTER
    apiKey: \${OPENROUTER_API_KEY}
  - name: local
    kind: OPENAI_COMPATIBLE
    baseUrl: http://127.0.0.1:8000/v1
    headers: { x-extra: "1" }
    modelMap: { small: qwen2.5-0.5b }
routes:
  - name: chat-default
    targets:
      - { provider: openrouter, model: openai/gpt-4o-mini, weight: 3, priority: 1 }
      - { provider: local, model: small }
  - name: cheap
    strategy: LOWEST_COST
    retries: 2
    cache: { mode: EXACT, ttlSeconds: 60 }
    targets:
      - { provider: local, model: small }
prices:
  - { provider: openrouter, model: openai/gpt-4o-mini, inputPerMTokUsd: 0.15, outputPerMTokUsd: 0.6 }
`;

  it('loads a valid file, substituting variables and applying defaults', async () => {
    const cfg = await loadConfigFile(await write(VALID), { OPENROUTER_API_KEY: 'sk-or-v1-abc' });
    expect(cfg.teams).toEqual(['platform', { name: 'search' }]);
    expect(cfg.providers).toHaveLength(2);
    expect(cfg.providers[0]).toEqual({ name: 'openrouter', kind: 'OPENROUTER', apiKey: 'sk-or-v1-abc' });
    expect(cfg.providers[1]!.modelMap).toEqual({ small: 'qwen2.5-0.5b' });
    expect(cfg.routes[0]!.strategy).toBe('PRIORITY'); // default
    expect(cfg.routes[0]!.targets[0]).toEqual({ provider: 'openrouter', model: 'openai/gpt-4o-mini', weight: 3, priority: 1 });
    expect(cfg.routes[1]).toMatchObject({ strategy: 'LOWEST_COST', retries: 2, cache: { mode: 'EXACT', ttlSeconds: 60 } });
    expect(cfg.prices[0]).toMatchObject({ inputPerMTokUsd: 0.15, outputPerMTokUsd: 0.6 });
  });

  it('an empty file is an empty config', async () => {
    expect(await loadConfigFile(await write(''), {})).toEqual({ providers: [], routes: [], experiments: [], prices: [], teams: [] });
  });

  it('a referenced but unset variable fails the load', async () => {
    await expect(loadConfigFile(await write(VALID), {})).rejects.toThrow(/OPENROUTER_API_KEY/);
  });

  it('rejects an unknown top-level key', async () => {
    await expect(loadConfigFile(await write('providers: []\nrouters: []\n'), {})).rejects.toThrow(/invalid config file.*routers/);
  });

  it('rejects an unknown key inside a provider (a typo must not be silently ignored)', async () => {
    const text = 'providers:\n  - name: p\n    kind: OPENAI\n    api_key: x\n';
    await expect(loadConfigFile(await write(text), {})).rejects.toThrow(/api_key/);
  });

  it('rejects a bad provider kind, naming the path', async () => {
    const text = 'providers:\n  - name: p\n    kind: GEMINI\n';
    await expect(loadConfigFile(await write(text), {})).rejects.toThrow(/providers\.0\.kind/);
    const anthropic = await loadConfigFile(
      await write(
        'providers:\n  - { name: claude, kind: ANTHROPIC, apiKey: k }\nprices:\n  - { provider: claude, model: m, inputPerMTokUsd: 3, outputPerMTokUsd: 15, cacheWritePerMTokUsd: 3.75 }\n',
      ),
      {},
    );
    expect(anthropic.providers[0]!.kind).toBe('ANTHROPIC');
    expect(anthropic.prices[0]!.cacheWritePerMTokUsd).toBe(3.75);
  });

  it('rejects a bad strategy, a bad provider name and a route without targets', async () => {
    await expect(loadConfigFile(await write('routes:\n  - name: r\n    strategy: RANDOM\n    targets: [{ provider: p, model: m }]\n'), {})).rejects.toThrow(
      /routes\.0\.strategy/,
    );
    await expect(loadConfigFile(await write('providers:\n  - name: "bad name"\n    kind: OPENAI\n'), {})).rejects.toThrow(/providers\.0\.name/);
    await expect(loadConfigFile(await write('routes:\n  - name: r\n    targets: []\n'), {})).rejects.toThrow(/routes\.0\.targets/);
  });

  it('rejects a missing file', async () => {
    await expect(loadConfigFile(path.join(dir, 'does-not-exist.yaml'), {})).rejects.toThrow();
  });

  it('a variable is a value, never YAML: ` #`, a leading @ or a number-like key come through whole, and unparsed text never shows them', async () => {
    const file = await write('providers:\n  - name: p\n    kind: OPENAI\n    apiKey: ${K}\n    timeoutMs: ${T}\n');
    for (const key of ['sk-abc #tail', '@sk-secret-value-123', '`sk-quoted', '12345678']) {
      const loaded = await loadConfigFile(file, { K: key, T: '5000' });
      expect(loaded.providers[0]).toMatchObject({ apiKey: key, timeoutMs: 5000 });
    }
    // A file that does not parse says so without any variable's value in the message.
    const broken = await write('providers:\n  - name: p\n    apiKey: ${K}\n   kind: [\n');
    const err = await loadConfigFile(broken, { K: '@sk-secret-value-123' }).catch((e: Error) => e);
    expect(String(err)).not.toContain('sk-secret-value-123');
  });

  it('references work where YAML takes text (a flow mapping, a key), give numbers and booleans to the fields that take them, and a blank is no number', async () => {
    const file = await write(
      'providers:\n  - { name: p, kind: OPENAI, apiKey: ${K}, modelMap: { ${ALIAS}: real } }\n' +
        'routes:\n  - name: r\n    retries: ${RETRIES}\n    cache: { mode: EXACT, cacheToolCalls: ${TOOLS} }\n    targets: [{ provider: p, model: m }]\n',
    );
    const loaded = await loadConfigFile(file, { K: 'sk-x #y', ALIAS: 'small', RETRIES: '2', TOOLS: 'true' });
    expect(loaded.providers[0]).toMatchObject({ apiKey: 'sk-x #y', modelMap: { small: 'real' } });
    expect(loaded.routes[0]).toMatchObject({ retries: 2, cache: { cacheToolCalls: true } });
    // A blank or non-decimal number is refused, not read as 0 (a 0 threshold makes every lookup a hit).
    for (const RETRIES of ['', ' ', '0x1', 'two']) {
      await expect(loadConfigFile(file, { K: 'k', ALIAS: 'a', RETRIES, TOOLS: 'false' }), RETRIES).rejects.toThrow(/routes\.0\.retries/);
    }
    const nulls = await write('routes:\n  - name: r\n    retries:\n    targets: [{ provider: p, model: m }]\n');
    await expect(loadConfigFile(nulls, {})).rejects.toThrow(/routes\.0\.retries/);
  });
});
