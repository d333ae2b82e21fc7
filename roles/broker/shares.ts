/**
 * Each source's share of the broker's subscriptions (hostile review 32
 * X9). `--max-subscriptions` and `--max-memory` bound subscriptions over all
 * connections, and 10,000 a connection: one user with a subscribe grant on
 * one prefix opened 51 connections, took 394,190 subscriptions in 8 s (RSS
 * 687 MiB), and every other user's subscribe was then OVERLOADED for as long
 * as it stayed connected. So a source (a user of its own, else an address)
 * may hold at most `perSource` subscriptions, and their counted bytes (each
 * subscription's SUBSCRIPTION_BYTES and the nodes of the pattern tree it
 * added) at most the same fraction of `--max-memory` (an eighth of each by
 * default: as MQTT sessions and wills, mqtt/sessions.ts USER_SHARE). MQTT
 * subscriptions count in the same share as native ones.
 *
 * Clients on the broker's own machine (every loopback address, one source)
 * that did not log in as a user of their own are not held to a share: a
 * test harness, a benchmark or a one-host `dist up` topology runs all its
 * clients there, and they share the machine with the broker anyway. With
 * `--users` they are held by their user as everyone else.
 */
import { addressSource } from "../../auth/sources.ts";
import { DistError } from "../../wire/mod.ts";

/** The part of --max-subscriptions (and of --max-memory) one source may hold by default. */
export const SOURCE_SHARE = 1 / 8;

/** Every loopback address, as one source (not held to a share: see the module comment). */
export const LOOPBACK = "loopback";

/** Sources listed in stats, those holding the most first. */
const TOP = 10;

/**
 * A subscriber's source for its share: its user when it authenticated as
 * one of its own (not the shared token, which every client may hold), else
 * its address (see auth clientSource, whose `user X` / address
 * form `source` is): every loopback address is one, and an IPv6 address
 * counts as its /64, which one host or site usually holds whole (one
 * address each would give it 2^64 shares).
 */
export function shareSource(source: string): string {
  if (isLoopback(source)) return LOOPBACK;
  return source.startsWith("user ") ? source : addressSource(source);
}

/** 127.0.0.0/8, ::1, and IPv4-mapped 127.x (`::ffff:127.0.0.1`). */
function isLoopback(host: string): boolean {
  return host.startsWith("127.") || host === "::1" || host.startsWith("::ffff:127.");
}

/** What one source holds. */
interface Held {
  subscriptions: number;
  bytes: number;
}

/** What a subscription was counted at, kept on it to be given back when it goes. */
export interface Shared {
  source: string | undefined;
  sourceBytes: number;
}

/** The subscription caps: over all connections, and each source's share. */
export class SubscriptionShares {
  /** Most subscriptions over all connections. */
  readonly maxSubscriptions: number;
  /** Most subscriptions one source may hold. */
  readonly perSource: number;
  /** Most bytes one source's subscriptions may be counted at. */
  readonly perSourceBytes: number;
  /** Subscribes refused for their source's share. */
  refused = 0;
  readonly #held = new Map<string, Held>();

  /**
   * @param caps `maxSubscriptions` over all, `maxSubscriptionsPerSource`
   * one source's (absent: no cap, no share)
   * @param maxMemory the broker's budget: a source's subscriptions may be
   * counted at the fraction `perSource` is of `maxSubscriptions` of it
   */
  constructor(
    caps: { maxSubscriptions?: number; maxSubscriptionsPerSource?: number },
    maxMemory: number,
  ) {
    const { maxSubscriptions = Infinity, maxSubscriptionsPerSource: perSource = Infinity } = caps;
    this.maxSubscriptions = maxSubscriptions;
    this.perSource = Math.min(perSource, maxSubscriptions);
    const fraction = maxSubscriptions === Infinity
      ? (perSource === Infinity ? 1 : SOURCE_SHARE)
      : this.perSource / maxSubscriptions;
    this.perSourceBytes = fraction >= 1 ? Infinity : Math.floor(maxMemory * fraction);
  }

  /**
   * Refuses a new subscription past `maxSubscriptions` (`total` held now),
   * or one of `source` that would pass its share (`adds`: what it is
   * counted at before its pattern's nodes are known, so a source may pass
   * its bytes by one subscription's nodes at most). One read back from disk
   * (`restored`) is not held to the share (it was taken within it), only
   * counted.
   * @throws {DistError} OVERLOADED, naming the limit
   */
  check(total: number, source: string | undefined, adds: number, restored = false): void {
    if (total >= this.maxSubscriptions) {
      throw new DistError(
        "OVERLOADED",
        `The broker holds its most subscriptions (max-subscriptions ${this.maxSubscriptions})`,
      );
    }
    if (restored || source === undefined || source === LOOPBACK) return;
    const held = this.#held.get(source);
    if (held === undefined) return;
    if (held.subscriptions >= this.perSource) {
      this.refused++;
      throw new DistError(
        "OVERLOADED",
        `${whose(source)} holds its share of subscriptions ` +
          `(max-subscriptions-per-source ${this.perSource})`,
      );
    }
    if (held.bytes + adds > this.perSourceBytes) {
      this.refused++;
      throw new DistError(
        "OVERLOADED",
        `${whose(source)} holds its share of the subscriptions' memory ` +
          `(${this.perSourceBytes} bytes of max-memory, as max-subscriptions-per-source is of ` +
          `max-subscriptions)`,
      );
    }
  }

  /** Counts `sub` in its source's share (at `sub.sourceBytes`). */
  add(sub: Shared): void {
    const source = sub.source;
    if (source === undefined) return;
    const held = this.#held.get(source);
    if (held === undefined) {
      this.#held.set(source, { subscriptions: 1, bytes: sub.sourceBytes });
    } else {
      held.subscriptions++;
      held.bytes += sub.sourceBytes;
    }
  }

  /** Gives back what `sub` was counted at. */
  remove(sub: Shared): void {
    const source = sub.source;
    if (source === undefined) return;
    const held = this.#held.get(source);
    if (held === undefined) return;
    if (--held.subscriptions <= 0) this.#held.delete(source);
    else held.bytes -= sub.sourceBytes;
  }

  /** What `source` holds now. */
  heldBy(source: string): Held {
    return this.#held.get(source) ?? { subscriptions: 0, bytes: 0 };
  }

  /** `subscription_shares` of sys.stats: the shares, refusals, and the sources holding the most. */
  stats(): Record<string, unknown> {
    // A pass that keeps the TOP largest (sources are as many as connections and sessions).
    const top: { source: string; subscriptions: number; bytes: number }[] = [];
    for (const [source, { subscriptions, bytes }] of this.#held) {
      if (top.length === TOP && top[TOP - 1].subscriptions >= subscriptions) continue;
      let i = top.length;
      while (i > 0 && top[i - 1].subscriptions < subscriptions) i--;
      top.splice(i, 0, { source, subscriptions, bytes });
      if (top.length > TOP) top.pop();
    }
    return {
      max: finite(this.maxSubscriptions),
      per_source: finite(this.perSource),
      per_source_bytes: finite(this.perSourceBytes),
      refused: this.refused,
      sources: this.#held.size,
      top,
    };
  }
}

function finite(n: number): number | null {
  return n === Infinity ? null : n;
}

/** `User alice` or `Address 10.0.0.7`, for a refusal's message. */
function whose(source: string): string {
  return source.startsWith("user ") ? `User ${source.slice(5)}` : `Address ${source}`;
}
