/**
 * What a subscription is, apart from how it delivers (subscriber.ts): its
 * options, and what the core, the fan-out and the front ends keep on it.
 */
import type { Policy, Sink, SubscriptionOptions } from "./message.ts";
import { NOT_PARKED } from "./parking.ts";

export class SubscriptionInfo {
  readonly sid: number;
  readonly pattern: string;
  readonly segments: readonly string[];
  readonly group: string | undefined;
  readonly policy: Policy;
  readonly exact: boolean;
  readonly maxPending: number;
  readonly sink: Sink;
  /** Deliveries handed to the sink. */
  delivered = 0;
  /** Deliveries dropped or superseded by the policy. */
  dropped = 0;
  /** Free for the front end (e.g. the subscription's encoded sid). */
  data: unknown = undefined;
  /** Deliveries of publishes waiting in the fan-out still owed to it (kept by the FanOut). */
  owed = 0;
  /** Whose share of subscriptions it counts in, and at how many bytes (kept by the core: shares.ts). */
  source: string | undefined = undefined;
  sourceBytes = 0;
  /** Left out of QoS 0 publishes' targets, and why (parking.ts). */
  parked = NOT_PARKED;

  constructor(sink: Sink, options: SubscriptionOptions) {
    this.sink = sink;
    this.sid = options.sid;
    this.pattern = options.pattern;
    this.segments = options.segments;
    this.group = options.group;
    this.policy = options.policy ?? "disconnect";
    this.exact = options.exact === true;
    this.maxPending = options.maxPending;
  }
}
