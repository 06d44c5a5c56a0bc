// What a proxied request passes before its key is believed: it is not Tollgate calling itself
// (508 loop_detected, checked first so that a looped request never counts as a failed
// authentication), and its address is not over the failed-authentication limit (429).
// Both refusals are thrown inside the pipeline, so each still ends in one receipt.
import type { IncomingMessage } from 'node:http';
import { carriesMarker } from '../net/hop.js';
import type { AuthThrottle } from './auth-throttle.js';
import { loopDetected } from './errors.js';

export class Ingress {
  constructor(
    private readonly marker: string,
    private readonly throttle: AuthThrottle,
  ) {}

  async admit<T>(req: IncomingMessage, authenticate: () => Promise<T>): Promise<T> {
    if (carriesMarker(req.headers, this.marker)) throw loopDetected();
    return this.throttle.guard(req, authenticate);
  }
}
