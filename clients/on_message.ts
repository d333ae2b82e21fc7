/**
 * The `onMessage` calls of one connection's subscriptions: deliveries read
 * as bytes wait here, their values kept as bytes (HeldValues), until the
 * frames of the read that brought them are handled, and then are parsed a
 * run at a time and handed over, in the order they came, across
 * subscriptions. A read of small deliveries so costs one UTF-8 decode and
 * one `JSON.parse` per 32 KiB of values instead of one of each per value.
 * Made and used by pubsub.ts.
 */
import type { RawDelivery } from "../wire/mod.ts";
import { HeldValues } from "./held_values.ts";
import type { Message, Subscription } from "./subscription.ts";

/** Deliveries waiting for their subscriptions' `onMessage` (see the module comment). */
export class MessageCalls {
  #values = new HeldValues();
  /** The subscription of each waiting message, and the message (its value set when called). */
  #subs: Subscription[] = [];
  #messages: Message[] = [];
  #scheduled = false;
  readonly #run = (): void => {
    this.#scheduled = false;
    this.flush();
  };

  /**
   * Keeps `d` (a view of a frame, copied here) for `sub`'s `onMessage`,
   * called once the read's frames are handled: a microtask, which runs
   * before the connection reads again (its frames are views of that read).
   */
  add(sub: Subscription, d: RawDelivery): void {
    this.#values.add(d.value);
    this.#subs.push(sub);
    this.#messages.push({ topic: d.topic, value: undefined, retained: d.retained, sid: d.sid });
    if (!this.#scheduled) {
      this.#scheduled = true;
      queueMicrotask(this.#run);
    }
  }

  /**
   * Calls `onMessage` with every message waiting, in order. Also called
   * before a message that does not wait (one decoded by the ordinary path),
   * so that it does not overtake them.
   */
  flush(): void {
    const subs = this.#subs;
    const messages = this.#messages;
    if (subs.length === 0) return;
    this.#subs = [];
    this.#messages = [];
    for (let i = 0; i < subs.length; i++) {
      const sub = subs[i];
      const m = messages[i];
      try {
        m.value = this.#values.take();
      } catch (err) {
        sub.notJson(m.topic, err);
        continue;
      }
      sub.call(m);
    }
  }
}
