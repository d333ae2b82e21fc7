/**
 * Sources whose dial-in worker was closed for answers to requests never
 * sent (backends.ts onStray, hostile34 Z12): such a worker could dial again
 * at once and register under a new name, a fresh backend each time, and
 * send more (workers in a loop, each with a 1 MB answer: about 30
 * registrations a second each, raising a legit client's p99 from 15–100 to
 * 90–150 ms). Its name's backoff (outlier.ts) does not hold a new name, so
 * the bound is by source: its user once its hello proves one, else its
 * address (auth's clientSource, IPv6 by /64). A source whose worker was
 * closed so has its next registrations refused for {@link BENCH_MS}, twice
 * as long after each closure (up to {@link BENCH_MAX_MS}); a closure
 * {@link FORGET_MS} after the last starts again from the first wait.
 *
 * Workers behind one address (every worker of `dist up` on one machine)
 * share the wait: a legit worker starting meanwhile retries with its own
 * backoff and registers once the wait ends; workers already registered are
 * not touched.
 */
import { DistError, truncate } from "../../wire/mod.ts";

/** The first wait of a source whose worker was closed for stray answers (ms). */
export const BENCH_MS = 10_000;
/** The longest wait (ms). */
export const BENCH_MAX_MS = 5 * 60_000;
/** A closure this long after the last one starts again from {@link BENCH_MS} (ms). */
export const FORGET_MS = 10 * 60_000;
/** Most sources remembered at once (the oldest go first). */
export const BENCH_SOURCES = 10_000;

/** One source on the bench. */
interface Benched {
  /** Until when its registrations are refused (ms, its clock). */
  until: number;
  /** Closures in a row (each within FORGET_MS of the last). */
  strikes: number;
  /** When the last one was. */
  at: number;
  /** The worker closed last, for the message. */
  name: string;
}

/** The sources whose worker was closed for stray answers; see the module comment. */
export class StrayBench {
  readonly #bySource = new Map<string, Benched>();
  readonly #now: () => number;

  /** @param now the clock (ms; default performance.now) */
  constructor(now: () => number = () => performance.now()) {
    this.#now = now;
  }

  /**
   * `source`'s worker `name` was closed for answers to requests never sent.
   * @returns how long the source's registrations are refused now (ms)
   */
  strayed(source: string, name: string): number {
    const now = this.#now();
    const last = this.#bySource.get(source);
    const strikes = last !== undefined && now - last.at < FORGET_MS ? last.strikes + 1 : 1;
    const ms = Math.min(BENCH_MAX_MS, BENCH_MS * 2 ** (strikes - 1));
    this.#bySource.delete(source); // last in the map's order: the oldest go first
    this.#bySource.set(source, { until: now + ms, strikes, at: now, name });
    if (this.#bySource.size > BENCH_SOURCES) {
      this.#bySource.delete(this.#bySource.keys().next().value!);
    }
    return ms;
  }

  /**
   * The error a registration from `source` is refused with while it waits.
   * @returns undefined when it may register
   */
  refusal(source: string): DistError | undefined {
    const b = this.#bySource.get(source);
    if (b === undefined) return undefined;
    const left = b.until - this.#now();
    if (left <= 0) return undefined;
    const what = b.strikes === 1 ? "" : ` (${b.strikes} times in a row)`;
    return new DistError(
      "UNAVAILABLE",
      `Worker registrations from ${truncate(source, 80)} are refused for ` +
        `${Math.ceil(left / 1000)} s more: its worker ${truncate(b.name, 80)} was closed for ` +
        `answers to requests never sent${what}`,
    );
  }

  /** Sources on the bench now or remembered. */
  get size(): number {
    return this.#bySource.size;
  }
}
