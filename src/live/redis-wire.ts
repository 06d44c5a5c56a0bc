// What the Redis bridge's instances say to each other (src/live/redis-bridge.ts): one channel
// per kind of message under a shared prefix, each message JSON and tagged with its sender.
import type { BudgetEvent, RoutingDecision } from './events.js';

export type TopicName = 'decisions' | 'budgets';
export const TOPICS: readonly TopicName[] = ['decisions', 'budgets'];

export interface LiveMessage {
  from: string;
  d?: RoutingDecision[];
  b?: BudgetEvent[];
}
export interface CtlMessage {
  from: string;
  /** `interest`: the topics the sender has subscribers on now; `query`: please announce. */
  type: 'interest' | 'query';
  topics?: TopicName[];
}
export interface CooldownMessage {
  from: string;
  target: string;
  ms: number;
}

/** Upstreams' Retry-After is capped where it is read (gateway/upstream.ts); so is a peer's. */
export const MAX_COOLDOWN_MS = 60_000;

export interface KeysMessage {
  from: string;
  keyIds: string[];
}

/** The channels of the instances sharing `prefix`. */
export function channels(prefix: string) {
  return {
    /** Decisions and budget events made on one instance, in batches (LiveMessage). */
    liveChannel: `${prefix}:live`,
    /** Which topics each instance has subscribers on (CtlMessage). */
    ctlChannel: `${prefix}:ctl`,
    /** API-key revocations (KeysMessage). */
    keysChannel: `${prefix}:keys`,
    /** Upstream Retry-After cooldowns (CooldownMessage). */
    cooldownsChannel: `${prefix}:cooldowns`,
  };
}
