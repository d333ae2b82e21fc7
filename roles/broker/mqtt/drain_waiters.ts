/**
 * The calls an MQTT session owes its subscriptions' queues (Sink.whenDrained):
 * each once its connection's output is down to the bytes it asked for and
 * its in-flight window has room, or, for a queue whose oldest delivery is
 * QoS 0 (`passes`), whatever the window (MQTT 5 §4.9: QoS 0 is not held by
 * Receive Maximum).
 */
import type { MqttSession } from "./session.ts";

interface Waiter {
  bytes: number;
  fn: () => void;
  passes: (() => boolean) | undefined;
}

export class DrainWaiters {
  readonly #session: MqttSession;
  #waiters: Waiter[] | undefined;
  #armed = false;

  constructor(session: MqttSession) {
    this.#session = session;
  }

  add(bytes: number, fn: () => void, passes: (() => boolean) | undefined): void {
    (this.#waiters ??= []).push({ bytes, fn, passes });
    this.wake();
  }

  /** Calls the waiters whose condition holds; arms a wait on the output for the rest. */
  wake(): void {
    const waiters = this.#waiters;
    if (waiters === undefined) return;
    const s = this.#session;
    let keep: Waiter[] | undefined;
    for (const w of waiters) {
      if (s.closed || (this.#open(w) && s.pendingBytes <= w.bytes)) w.fn();
      else (keep ??= []).push(w);
    }
    this.#waiters = keep;
    const out = s.connection?.out;
    if (keep === undefined || this.#armed || out === undefined) return;
    // While the window is full only output draining can let a QoS 0 go; acks wake the rest.
    if (!keep.some((w) => this.#open(w))) return;
    this.#armed = true;
    out.drained(Math.min(...keep.map((w) => w.bytes))).then(() => {
      this.#armed = false;
      this.wake();
    });
  }

  #open(w: Waiter): boolean {
    return !this.#session.full || w.passes?.() === true;
  }
}
