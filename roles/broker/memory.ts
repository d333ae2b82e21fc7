/**
 * The broker's process-wide memory budget (max-memory) kept: what the
 * subscribers' transports hold is sampled into the core's count, and past
 * the budget the subscribers with the most pending are cut off, whatever
 * their policy, on every front end (dist protocol and MQTT alike: they are
 * all sinks of the core's subscriptions).
 */
import { DistError } from "../../wire/mod.ts";
import type { BrokerCore } from "./core.ts";
import type { Sink } from "./subscriber.ts";

export class MemoryGuard {
  readonly #core: BrokerCore;
  /** Subscribers cut off to keep within max-memory. */
  shed = 0;
  /** Set when a shed found nobody to cut: no new search until the next sample. */
  #searched = false;

  constructor(core: BrokerCore) {
    this.#core = core;
  }

  /**
   * Samples every `everyMs` and sheds past the budget (checked there and
   * after each publish). Returns the function that stops it.
   */
  watch(everyMs = 100): () => void {
    const timer = setInterval(() => {
      this.#sample();
      this.#searched = false;
      if (this.#core.overBudget) this.#shed();
    }, everyMs);
    Deno.unrefTimer(timer);
    this.#core.onOverBudget = () => this.#shed();
    return () => {
      clearInterval(timer);
      this.#core.onOverBudget = undefined;
    };
  }

  /** `memory` of sys.stats. */
  stats(): { bytes: number; budget: number | null; shed: number } {
    const core = this.#core;
    return {
      bytes: core.memoryBytes,
      budget: core.maxMemory === Infinity ? null : core.maxMemory,
      shed: this.shed,
    };
  }

  #sample(): void {
    let n = 0;
    for (const sink of this.#core.sinks()) if (!sink.closed) n += sink.pendingBytes;
    this.#core.outboundBytes = n;
  }

  /** Cuts off the subscribers with the most pending until the broker is within its budget. */
  #shed(): void {
    if (this.#searched) return;
    const core = this.#core;
    this.#sample();
    const cut = new Set<Sink>();
    while (core.overBudget) {
      let worst: Sink | undefined;
      let most = 0;
      for (const sink of core.sinks()) {
        const pending = sink.queued.bytes + sink.pendingBytes;
        if (!sink.closed && !cut.has(sink) && pending > most) {
          worst = sink;
          most = pending;
        }
      }
      const sub = worst === undefined ? undefined : core.subscriptionOf(worst);
      if (worst === undefined || sub === undefined) {
        // What is over is not pending deliveries: subscribes and new topics are refused meanwhile.
        this.#searched = true;
        return;
      }
      cut.add(worst);
      this.shed++;
      worst.slow(
        sub,
        new DistError(
          "SLOW_CONSUMER",
          `Cut off to keep the broker within its memory budget (max-memory ${core.maxMemory}): ` +
            `this connection had the most pending (${most} bytes)`,
        ),
      );
      this.#sample();
    }
  }
}
