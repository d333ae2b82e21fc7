/**
 * `$SYS/broker/…` statistics, as Mosquitto publishes them: retained values
 * on the shared topic tree, refreshed every interval (`--mqtt-sys-interval`)
 * and published only when they changed. `#` and `+/…` filters (and native
 * subscriptions to `/`) do not reach `$` topics; `$SYS/#` does, and native
 * clients read them as `/$SYS/broker/…`. Names follow Mosquitto's where it
 * has one without a space (dist topics hold none): its "retained messages"
 * is `retained/count` here.
 */
import denoJson from "../../../deno.json" with { type: "json" };
import type { BrokerCore } from "../core.ts";
import { MqttPayload } from "./mapping.ts";
import type { MqttFront } from "./front.ts";

const encoder = new TextEncoder();

export class SysTopics {
  readonly #front: MqttFront;
  readonly #core: BrokerCore;
  readonly #intervalMs: number;
  readonly #started = Date.now();
  /** What was last published, by topic. */
  readonly #last = new Map<string, string>();
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(front: MqttFront, core: BrokerCore, intervalMs: number) {
    this.#front = front;
    this.#core = core;
    this.#intervalMs = intervalMs;
  }

  /** Publishes now, then every interval (0: never). */
  start(): void {
    if (this.#intervalMs <= 0) return;
    this.publish();
    this.#timer = setInterval(() => this.publish(), this.#intervalMs);
    // Statistics do not keep the process up.
    Deno.unrefTimer(this.#timer);
  }

  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** The values, by name under `$SYS/broker/`. */
  values(): [string, string][] {
    const f = this.#front;
    const core = this.#core;
    const s = f.stats() as Record<string, number>;
    return [
      ["version", `dist ${denoJson.version}`],
      ["uptime", `${Math.floor((Date.now() - this.#started) / 1000)} seconds`],
      ["clients/connected", String(s.connections)],
      ["clients/disconnected", String(s.sessions_away)],
      ["clients/total", String(s.connections + s.sessions_away)],
      ["clients/expired", String(s.sessions_expired)],
      ["publish/messages/received", String(s.messages_in)],
      ["publish/messages/dropped", String(s.session_dropped + s.undeliverable + s.expired)],
      ["messages/received", String(core.messagesIn)],
      ["messages/sent", String(core.messagesOut)],
      ["subscriptions/count", String(core.subscriptions.size)],
      ["retained/count", String(core.retained.count)],
    ];
  }

  /** Publishes what changed since the last time, retained. */
  publish(): void {
    for (const [name, value] of this.values()) {
      const topic = `/$SYS/broker/${name}`;
      if (this.#last.get(topic) === value) continue;
      this.#last.set(topic, value);
      const payload = MqttPayload.borrow(encoder.encode(value));
      try {
        this.#core.publishSystem(topic, payload);
      } finally {
        payload.release();
      }
    }
  }
}
