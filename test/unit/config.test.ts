// Configuration errors name the variable and never print a connection URL's credentials.
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';

function refusal(env: Record<string, string>): string {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error(`accepted ${JSON.stringify(env)}`);
}

describe('connection URLs', () => {
  const malformed: Array<[string, string]> = [
    ['DATABASE_URL', 'postgres://tollgate:hunter2-secret@db.internal:99999/tollgate'], // port out of range
    ['DATABASE_URL', 'mysql://tollgate:hunter2-secret@db.internal/tollgate'],
    ['DATABASE_URL', 'tollgate:hunter2-secret@db.internal/tollgate'],
    ['CLICKHOUSE_URL', 'clickhouse.internal:8123?password=hunter2-secret'],
    ['CLICKHOUSE_URL', 'http://default:hunter2-secret@[::1'],
    ['REDIS_URL', 'redis//:hunter2-secret@cache.internal:6379'],
    ['REDIS_URL', 'https://:hunter2-secret@cache.internal'],
  ];
  it.each(malformed)('refuses a malformed %s at start, naming it, without its password', (name, value) => {
    const message = refusal({ [name]: value });
    expect(message).toContain(name);
    expect(message).not.toContain('hunter2');
  });

  it('accepts well-formed ones', () => {
    const config = loadConfig({
      DATABASE_URL: 'postgresql://tollgate:p%40ss@db.internal:5432/tollgate?schema=gw',
      CLICKHOUSE_URL: 'https://default:secret@ch.internal:8443',
      REDIS_URL: 'rediss://:secret@cache.internal:6380/2',
    });
    expect(config.databaseUrl).toBe('postgresql://tollgate:p%40ss@db.internal:5432/tollgate?schema=gw');
    expect(config.clickhouse?.url).toBe('https://default:secret@ch.internal:8443');
    expect(config.redisUrl).toBe('rediss://:secret@cache.internal:6380/2');
    expect(loadConfig({ DATABASE_URL: 'postgres:///tollgate?host=/var/run/postgresql' }).databaseUrl).toBeDefined();
  });
});

describe('TOLLGATE_CORS_ORIGINS', () => {
  it('is empty by default: no cross-origin access', () => {
    expect(loadConfig({}).corsOrigins).toEqual([]);
  });

  it('takes comma-separated origins as browsers send them, or *', () => {
    expect(loadConfig({ TOLLGATE_CORS_ORIGINS: ' https://App.Example.com/ , http://localhost:5173,https://x.example:443' }).corsOrigins).toEqual([
      'https://app.example.com',
      'http://localhost:5173',
      'https://x.example',
    ]);
    expect(loadConfig({ TOLLGATE_CORS_ORIGINS: '*' }).corsOrigins).toEqual(['*']);
  });

  it.each(['null', 'app.example.com', 'https://app.example.com/path', 'file:///tmp/x', 'https://user:pw@app.example.com'])('refuses %s', (value) => {
    expect(refusal({ TOLLGATE_CORS_ORIGINS: value })).toContain('TOLLGATE_CORS_ORIGINS');
  });
});
