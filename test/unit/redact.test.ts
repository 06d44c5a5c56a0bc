// Credentials inside URLs are masked wherever Tollgate prints or returns a URL (issue 12 §4).
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { WebhookSender } from '../../src/budgets/webhooks.js';
import { loadConfig } from '../../src/config.js';
import type { BudgetEvent } from '../../src/live/events.js';
import { createLogger, printBanner } from '../../src/main.js';
import { webhookAgent } from '../../src/net/egress.js';
import { CidrList } from '../../src/net/ip.js';
import { redactDeep, redactSecrets } from '../../src/redact.js';
import type { Runtime } from '../../src/runtime.js';

describe('redactSecrets', () => {
  const cases: Array<[string, string]> = [
    ['https://default:s3cret-pw@ch.example.com:8443/?database=receipts', 'https://default:***@ch.example.com:8443/?database=receipts'],
    ['postgresql://tollgate:p@ss@db.internal:5432/tollgate?sslmode=require', 'postgresql://tollgate:***@db.internal:5432/tollgate?sslmode=require'],
    ['redis://:hunter2@redis:6379/0', 'redis://:***@redis:6379/0'],
    ['rediss://worker:pw@cache.example.com:6380', 'rediss://worker:***@cache.example.com:6380'],
    ['https://sk-live-abcdef@api.example.com/v1', 'https://***@api.example.com/v1'],
    ['https://api.example.com/v1?key=AIzaSecret&api-version=2024-06-01', 'https://api.example.com/v1?key=***&api-version=2024-06-01'],
    ['https://hooks.example.com/budget?team=a&token=abc123#frag', 'https://hooks.example.com/budget?team=a&token=***#frag'],
    [
      'https://x.example.com/?api_key=1&apikey=2&access_token=3&client_secret=4&X-Amz-Signature=5&password=6',
      'https://x.example.com/?api_key=***&apikey=***&access_token=***&client_secret=***&X-Amz-Signature=***&password=***',
    ],
    [
      'connect ECONNREFUSED while calling http://admin:topsecret@10.0.0.5:8123/ping (retrying)',
      'connect ECONNREFUSED while calling http://admin:***@10.0.0.5:8123/ping (retrying)',
    ],
  ];
  it.each(cases)('%s', (input, expected) => {
    expect(redactSecrets(input)).toBe(expected);
  });

  it('leaves URLs and text without credentials untouched', () => {
    for (const s of [
      'http://127.0.0.1:8123',
      'https://api.openai.com/v1?api-version=2024-06-01&model=gpt',
      'mail ops@example.com about http://host/path',
      'a=b c=d',
      '',
    ]) {
      expect(redactSecrets(s)).toBe(s);
    }
  });

  it('redactDeep masks strings inside objects, arrays and errors', () => {
    const out = JSON.stringify(
      redactDeep({ url: 'redis://:pw1@r:6379', nested: { list: ['https://u:pw2@h/'] }, err: new Error('bad http://a:pw3@h/?token=pw4') }),
    );
    for (const secret of ['pw1', 'pw2', 'pw3', 'pw4']) expect(out).not.toContain(secret);
    expect(out).toContain('redis://:***@r:6379');
  });
});

describe('where URLs are printed', () => {
  afterEach(() => vi.restoreAllMocks());

  it('log lines never carry URL credentials, in fields or in the message', () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _enc, done) {
        lines.push(String(chunk));
        done();
      },
    });
    const log = createLogger(loadConfig({ TOLLGATE_LOG_LEVEL: 'info' }), sink);
    log.warn({ err: 'connect failed: postgresql://tg:db-pass-1@db:5432/x', target: { url: 'https://hooks.example.com/?token=hook-tok-2' } }, 'store down');
    log.error('while calling https://default:ch-pass-3@clickhouse:8443');
    log.info({ err: new Error('fetch https://u:err-pass-4@h/') }, 'x');
    const text = lines.join('');
    expect(lines).toHaveLength(3);
    for (const secret of ['db-pass-1', 'hook-tok-2', 'ch-pass-3', 'err-pass-4']) expect(text).not.toContain(secret);
    expect(text).toContain('postgresql://tg:***@db:5432/x');
    expect(text).toContain('https://default:***@clickhouse:8443');
  });

  it('the start banner shows the ClickHouse server without its password', () => {
    const config = loadConfig({ CLICKHOUSE_URL: 'https://default:banner-pass@ch.example.com:8443/?password=also-secret', TOLLGATE_DATA_DIR: '/tmp/x' });
    const written: string[] = [];
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      written.push(String(chunk));
      return true;
    });
    // printBanner reads only these parts of the runtime.
    const runtime = {
      configDb: { kind: 'postgres' },
      clickhouse: { kind: 'server' },
      bootstrapped: [],
      adminToken: { token: 't', created: false },
      app: { catalog: { catalog: { providers: new Map() } } },
    } as unknown as Runtime;
    printBanner(config, runtime, 'http://127.0.0.1:8787');
    const banner = written.join('');
    expect(banner).toContain('ClickHouse server (https://default:***@ch.example.com:8443/?password=***)');
    expect(banner).not.toContain('banner-pass');
    expect(banner).not.toContain('also-secret');
  });

  it('a failed budget webhook is reported by its origin only, without the credentials in its URL', async () => {
    const reported: string[] = [];
    const sender = new WebhookSender({
      secret: 's',
      backoffMs: 1,
      dispatcher: webhookAgent({ hosts: ['127.0.0.1'], cidrs: CidrList.parse(['127.0.0.1/32']) }, { timeout: 1_000 }),
      onError: (err) => reported.push(String(err)),
    });
    // fetch refuses a URL with credentials, and quotes it in its own error message.
    sender.send('http://hook-user:hook-pass@127.0.0.1:9/services/T01/hook-path-secret?token=hook-token', { teamId: 't' } as unknown as BudgetEvent);
    await sender.drain();
    expect(reported).toHaveLength(1);
    expect(reported[0]).toContain('http://127.0.0.1:9: ');
    // Slack's and Discord's webhook URLs carry their secret in the path: nothing past the origin.
    expect(reported[0]).not.toMatch(/hook-user|hook-pass|hook-token|hook-path-secret/);
  });
});
