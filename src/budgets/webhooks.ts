// Budget alerts to an HTTP endpoint: the same JSON as the budgetEvents subscription, signed,
// retried with exponential backoff. Delivery runs in the background; the proxy never waits.
//
// Signature (like Stripe's): `x-tollgate-signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`
// over `<t>.<body>`, keyed with the webhook secret; receivers check the HMAC and reject old
// timestamps, so a captured delivery cannot be replayed later.
import { createHmac } from 'node:crypto';
import type { BudgetEvent } from '../live/events.js';
import { redactSecrets } from '../redact.js';

const ATTEMPTS = 5;
const ATTEMPT_TIMEOUT_MS = 5_000;

export interface WebhookOptions {
  secret: string;
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

  /** Waits for deliveries under way (shutdown, tests). */
  async drain(): Promise<void> {
    await Promise.all([...this.inFlight]);
  }

  private async deliver(url: string, body: string): Promise<void> {
    const base = this.opts.backoffMs ?? 500;
    let last = '';
    for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
      const t = Math.floor(Date.now() / 1000);
      try {
        const res = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'user-agent': 'tollgate-webhooks/1', 'x-tollgate-signature': signWebhook(this.opts.secret, t, body) },
          body,
          redirect: 'manual',
          signal: AbortSignal.timeout(ATTEMPT_TIMEOUT_MS),
        });
        await res.arrayBuffer().catch(() => undefined);
        if (res.ok) return;
        last = `HTTP ${res.status}`;
        // The receiver rejected the request itself: sending it again will not help.
        if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) break;
      } catch (err) {
        last = err instanceof Error ? err.message : String(err);
      }
      if (attempt < ATTEMPTS) await new Promise((r) => setTimeout(r, base * 2 ** (attempt - 1) * (0.5 + Math.random() / 2)));
    }
    // fetch's own errors quote the URL too: mask credentials in the whole message.
    this.opts.onError(new Error(redactSecrets(`${url}: ${last}`)), 'budget webhook delivery');
  }
}
