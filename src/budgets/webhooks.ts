// Budget alerts to an HTTP endpoint: the same JSON as the budgetEvents subscription, signed,
// retried with exponential backoff. Delivery runs in the background; the proxy never waits.
// Deliveries go through the egress policy's dispatcher (src/net/egress.ts: team admins set
// these URLs, so no internal addresses), and redirects are not followed.
//
// Signature (like Stripe's): `x-tollgate-signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`
// over `<t>.<body>`, keyed with the webhook secret; receivers check the HMAC and reject old
// timestamps, so a captured delivery cannot be replayed later.
import { createHmac } from 'node:crypto';
import { type Dispatcher, request } from 'undici';
import type { BudgetEvent } from '../live/events.js';
import { redactSecrets } from '../redact.js';

const ATTEMPTS = 5;
const ATTEMPT_TIMEOUT_MS = 5_000;

export interface WebhookOptions {
  secret: string;
  /** Where connections are made (the egress policy's agent). */
  dispatcher: Dispatcher;
  onError: (err: unknown, what: string) => void;
  /** Base backoff; attempt n waits base * 2^(n-1) with jitter (default 500 ms). */
  backoffMs?: number;
}

export function signWebhook(secret: string, timestamp: number, body: string): string {
  return `t=${timestamp},v1=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

export class WebhookSender {
  private readonly inFlight = new Set<Promise<void>>();

  constructor(private readonly opts: WebhookOptions) {}

  send(url: string, event: BudgetEvent): void {
    const delivery = this.deliver(url, JSON.stringify(event)).finally(() => this.inFlight.delete(delivery));
    this.inFlight.add(delivery);
  }

  /** Waits for deliveries under way (shutdown, tests), at most `timeoutMs`. */
  async drain(timeoutMs = Number.POSITIVE_INFINITY): Promise<void> {
    const all = Promise.all([...this.inFlight]);
    if (!Number.isFinite(timeoutMs)) return void (await all);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([all, new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    clearTimeout(timer);
  }

  /** Closes the connections kept for deliveries (shutdown does not wait for a slow receiver). */
  async close(): Promise<void> {
    await this.opts.dispatcher.destroy();
  }

  private async deliver(url: string, body: string): Promise<void> {
    const base = this.opts.backoffMs ?? 500;
    let last = '';
    for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
      const t = Math.floor(Date.now() / 1000);
      try {
        const res = await request(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'user-agent': 'tollgate-webhooks/1', 'x-tollgate-signature': signWebhook(this.opts.secret, t, body) },
          body,
          dispatcher: this.opts.dispatcher,
          signal: AbortSignal.timeout(ATTEMPT_TIMEOUT_MS),
        });
        await res.body.dump().catch(() => undefined);
        if (res.statusCode >= 200 && res.statusCode < 300) return;
        last = `HTTP ${res.statusCode}`;
        // The receiver rejected the request itself, or sent it elsewhere (redirects are not
        // followed): sending it again will not help.
        if (res.statusCode >= 300 && res.statusCode < 500 && res.statusCode !== 408 && res.statusCode !== 429) break;
      } catch (err) {
        last = err instanceof Error ? err.message : String(err);
        // The egress policy will refuse it again.
        if ((err as { code?: string }).code === 'EGRESS_DENIED') {
          last = `refused by the egress policy: ${last}`;
          break;
        }
      }
      if (attempt < ATTEMPTS) await new Promise((r) => setTimeout(r, base * 2 ** (attempt - 1) * (0.5 + Math.random() / 2)));
    }
    // Only the URL's origin is logged (Slack's and Discord's carry their secret in the path);
    // fetch's own errors quote the URL too.
    const origin = new URL(url).origin;
    this.opts.onError(new Error(redactSecrets(`${origin}: ${last.split(url).join(origin)}`)), 'budget webhook delivery');
  }
}
