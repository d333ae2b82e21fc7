/**
 * Wills (the MQTT front end's): a client that vanishes has its will
 * published, at once or (MQTT 5) after its Will Delay Interval or when its
 * session ends, whichever comes first; a client back in that session
 * before cancels it.
 */
import { getLogger } from "@logtape/logtape";
import { DistError } from "../../../wire/mod.ts";
import { cut } from "../../../wire/_log.ts";
import type { BrokerCore } from "../core.ts";
import { MqttPayload } from "./mapping.ts";
import type { Will } from "./connect.ts";

const log = getLogger(["dist", "broker", "mqtt"]);

export class Wills {
  readonly #core: BrokerCore;
  /** Wills published. */
  published = 0;
  /** Delayed wills not sent: their client came back within the delay. */
  cancelled = 0;
  /** MQTT 5 wills waiting for their Will Delay Interval, by client id. */
  readonly #delayed = new Map<string, { timer: ReturnType<typeof setTimeout>; will: Will }>();

  constructor(core: BrokerCore) {
    this.#core = core;
  }

  /** Wills waiting for their delay (at most one per client id). */
  get delayed(): number {
    return this.#delayed.size;
  }

  /**
   * A connection went without DISCONNECT: its will goes out now, or (MQTT 5)
   * after its Will Delay Interval or when its session ends, whichever comes
   * first; unless its client is back in that session before (MqttFront.register).
   * At most one waits per client id, so no more than the sessions.
   */
  leave(clientId: string, will: Will, sessionExpiryS: number): void {
    const delay = Math.min(will.delay, sessionExpiryS);
    if (delay <= 0) return this.#publish(will);
    this.drop(clientId, true);
    const timer = setTimeout(() => {
      this.#delayed.delete(clientId);
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
    if (send) this.#publish(waiting.will);
    else this.cancelled++;
  }

  #publish(will: Will): void {
    const value = MqttPayload.borrow(will.payload);
    value.retain = will.retain;
    value.properties = will.properties;
    if (will.expiry >= 0) value.expiresAt = Date.now() + will.expiry * 1000;
    try {
      this.#core.publish(will.topic, value, will.retain, will.qos);
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
    for (const { timer } of this.#delayed.values()) clearTimeout(timer);
    this.#delayed.clear();
  }
}
