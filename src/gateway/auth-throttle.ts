// Failed authentications per client address (TOLLGATE_AUTH_FAIL_LIMIT a minute): beyond the
// limit, every credential from that address is refused with 429 until its minute is over,
// a correct one included, so guessing cannot go on at full speed. Successes are not counted.
//
// Counted per address (IPv6 per /64, what one subscriber usually gets), in this process, in a
// fixed window that starts at the address's first failure. Memory is bounded: at most
// MAX_ADDRESSES windows, the least recently failing forgotten first.
import type { IncomingMessage } from 'node:http';
import { LRUCache } from 'lru-cache';
import type { CidrList, IP } from '../net/ip.js';
import { clientAddress } from './client-address.js';
import { authRateLimited, GatewayError } from './errors.js';

const WINDOW_MS = 60_000;
const MAX_ADDRESSES = 100_000;

interface Window {
  startedAt: number;
  failures: number;
}

export interface AuthThrottleOptions {
  /** Failures allowed per address and minute (0: no throttling). */
  limit: number;
  trustedProxies: CidrList;
  now?: () => number;
  maxAddresses?: number;
}

export class AuthThrottle {
  private readonly windows: LRUCache<string, Window>;
  private readonly now: () => number;

  constructor(private readonly opts: AuthThrottleOptions) {
    this.now = opts.now ?? Date.now;
    this.windows = new LRUCache({ max: opts.maxAddresses ?? MAX_ADDRESSES });
  }

  /** Throws 429 auth_rate_limited while the address of `req` is over its limit. */
  check(req: IncomingMessage): void {
    if (this.windows.size === 0) return; // nobody is failing: the hot path costs one comparison
    const window = this.windows.get(this.addressOf(req));
    if (!window || window.failures < this.opts.limit) return;
    const left = window.startedAt + WINDOW_MS - this.now();
    if (left > 0) throw authRateLimited(left / 1000);
  }

  /** Counts one refused credential from the address of `req`. */
  fail(req: IncomingMessage): void {
    if (this.opts.limit === 0) return;
    const address = this.addressOf(req);
    const now = this.now();
    const window = this.windows.get(address);
    if (window && now < window.startedAt + WINDOW_MS) window.failures++;
    else this.windows.set(address, { startedAt: now, failures: 1 });
  }

  /** `check`, then `authenticate`; a 401 it throws counts as a failure. */
  async guard<T>(req: IncomingMessage, authenticate: () => Promise<T>): Promise<T> {
    this.check(req);
    try {
      return await authenticate();
    } catch (err) {
      if (err instanceof GatewayError && err.status === 401) this.fail(req);
      throw err;
    }
  }

  private addressOf(req: IncomingMessage): string {
    return throttleKey(clientAddress(req, this.opts.trustedProxies));
  }
}

/** IPv4 addresses count one by one; IPv6 per /64, since one client usually holds a whole /64. */
function throttleKey(ip: IP | null): string {
  if (!ip) return 'unknown';
  if (ip.kind() === 'ipv4') return ip.toString();
  return `${(ip as { parts: number[] }).parts
    .slice(0, 4)
    .map((p) => p.toString(16))
    .join(':')}::/64`;
}
