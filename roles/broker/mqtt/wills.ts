/**
 * Wills (the MQTT front end's): a client that vanishes has its will
 * published, at once or (MQTT 5) after its Will Delay Interval or when its
 * session ends, whichever comes first; a client back in that session
 * before cancels it.
 *
 * A will is counted in max-memory (memory.ts `sessionMemory`) from the
 * CONNECT that brought it until it is published or dropped, and apart, in
 * all and by its user, for the shares sessions.ts `refusal` keeps.
 */
import { getLogger } from "@logtape/logtape";
import { DistError } from "../../../wire/mod.ts";
import { cut } from "../../../wire/_log.ts";
import type { BrokerCore } from "../core.ts";
import { sessionMemory } from "../memory.ts";
import { MqttPayload } from "./mapping.ts";
import type { Will } from "./connect.ts";

const log = getLogger(["dist", "broker", "mqtt"]);

/** A will's objects, its entry and its timer, beside its bytes (~1.1 KB of heap measured). */
const WILL_OVERHEAD = 1024;

/** What `will` is counted at in max-memory (0 for none). */
export function willBytes(will: Will | undefined): number {
  if (will === undefined) return 0;
  return WILL_OVERHEAD + 2 * will.topic.length + will.payload.length + will.properties.length;
}

export class Wills {
  readonly #core: BrokerCore;
  /** Wills published. */
  published = 0;
  /** Delayed wills not sent: their client came back within the delay. */
  cancelled = 0;
  /** MQTT 5 wills waiting for their Will Delay Interval, by client id. */
  readonly #delayed = new Map<string, { timer: ReturnType<typeof setTimeout>; will: Will }>();
  /** What the wills held are counted at, in all. */
  bytes = 0;
  /** And by user (authenticated users only). */
  readonly #byOwner = new Map<string, number>();

  constructor(core: BrokerCore) {
    this.#core = core;
  }

  /** Wills waiting for their delay (at most one per client id). */
  get delayed(): number {
    return this.#delayed.size;
  }

  /** A connection was given CONNACK with `will`: counted until it goes. */
  hold(will: Will | undefined): void {
    if (will !== undefined) this.#count(will, 1);
  }

  /** What the wills `owner` holds are counted at. */
  heldBy(owner: string): number {
    return this.#byOwner.get(owner) ?? 0;
  }

  #count(will: Will, sign: 1 | -1): void {
    const bytes = sign * willBytes(will);
    sessionMemory.bytes += bytes;
    this.bytes += bytes;
    const owner = will.owner;
    if (owner === undefined) return;
    const left = this.heldBy(owner) + bytes;
    if (left > 0) this.#byOwner.set(owner, left);
    else this.#byOwner.delete(owner);
  }

  /**
   * A connection given CONNACK went: without DISCONNECT (`send`) its will
   * goes out now, or (MQTT 5) after its Will Delay Interval or when its
   * session ends, whichever comes first; unless its client is back in that
   * session before (MqttFront.register). At most one waits per client id,
   * so no more than the sessions.
   */
  leave(clientId: string, will: Will | undefined, sessionExpiryS: number, send: boolean): void {
    if (will === undefined) return;
    const delay = Math.min(will.delay, sessionExpiryS);
    if (!send || delay <= 0) this.#count(will, -1);
    if (!send) return;
    if (delay <= 0) return this.#publish(will);
    this.drop(clientId, true);
    const timer = setTimeout(() => {
      this.#delayed.delete(clientId);
      this.#count(will, -1);
      this.#publish(will);
    }, delay * 1000);
    // A will waiting for its delay does not keep the process up.
    Deno.unrefTimer(timer);
    this.#delayed.set(clientId, { timer, will });
  }

  /** A delayed will of `clientId` goes now (`send`), or never (its client is back). */
  drop(clientId: string, send: boolean): void {
    const waiting = this.#delayed.get(clientId);
    if (waiting === undefined) return;
    clearTimeout(waiting.timer);
    this.#delayed.delete(clientId);
    this.#count(waiting.will, -1);
    if (send) this.#publish(waiting.will);
    else this.cancelled++;
  }

  #publish(will: Will): void {
    const value = MqttPayload.borrow(will.payload);
    value.retain = will.retain;
    value.properties = will.properties;
    if (will.expiry >= 0) value.expiresAt = Date.now() + will.expiry * 1000;
    try {
      this.#core.publish(will.topic, value, will.retain, will.qos, undefined, will.owner);
      this.published++;
    } catch (err) {
      log.warn("Will on {topic} not published: {error}", {
        topic: cut(will.topic),
        error: DistError.from(err).message,
      });
    }
  }

  /** The broker stops: wills waiting are not sent. */
  clear(): void {
    for (const { timer, will } of this.#delayed.values()) {
      clearTimeout(timer);
      this.#count(will, -1);
    }
    this.#delayed.clear();
  }
}
