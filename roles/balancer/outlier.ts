/**
 * What a backend's answers say about it, beside its health checks
 * (hostile32 X3, X6): slow start, timeouts over a window, and ejections
 * that last longer each time. Plain data: the backend (backends.ts) tells
 * it what happened and asks it what follows.
 *
 * - Slow start: a worker that registers, and any backend that comes back
 *   after being out, may have {@link SLOW_START} requests at once, one more
 *   for each it answers, up to its capacity (TCP's slow start; HAProxy's
 *   `slowstart` ramps by time instead, which lets a backend that answers
 *   nothing fill up all the same). A fake worker that answers pings but
 *   never tasks got a third of the picks and 128 slots; now it holds one
 *   request until `--timeout`.
 * - A request that times out before the backend answered anything since it
 *   joined takes it out at once.
 * - Timeouts and server failures (INTERNAL answers) count over a window of
 *   {@link WINDOW_MS} to twice that, not only in a row: a backend answering
 *   every other request in time never had three timeouts in a row, and one
 *   answering one success between failures never had five failures in a
 *   row. It is out once `fall` or more of its requests timed out (or
 *   {@link SERVER_ERRORS} failed) in the window and its timeouts and
 *   failures together are at least 1 in {@link FAILURE_PART} of the
 *   window's outcomes (Envoy's failure-percentage ejection).
 * - Out for timeouts, it stays out for {@link BACKOFF_MS} at least, twice
 *   that the next time, up to {@link BACKOFF_MAX_MS} (Envoy's ejection time
 *   grows with the ejections the same way); health checks bring it back
 *   only after that. The count starts again once it has answered as many
 *   requests as its capacity since it came back. A worker that registers
 *   again under its name keeps it for {@link REMEMBER_MS} after it left
 *   (sources.ts): a fake worker left and came back for a fresh start, one
 *   client request held until `--timeout` each time (hostile33's review).
 */

import { WindowCounts } from "./window_counts.ts";

export { WINDOW_MS } from "./window_counts.ts";

/** Requests a joining backend may have at once before it answered any. */
export const SLOW_START = 1;
/** Out when at least one in this many of the window's outcomes timed out or failed (see above). */
export const FAILURE_PART = 4;
/**
 * Server failures (`INTERNAL` answers, a code outside the protocol's
 * included) in a row that take a backend out, as Envoy's `consecutive_5xx`
 * (its default too), or that do in the window (see above): one that fails
 * every request at once would otherwise take its share of them for good
 * (hostile34 Z2). Codes that say the request was wrong (`BAD_REQUEST`,
 * `NOT_FOUND`, …) never count.
 */
export const SERVER_ERRORS = 5;
/**
 * Answers to requests never sent (ids its connection does not await) that
 * take a backend out and close its connection (backends.ts onStray), or
 * {@link STRAY_BYTES} of them, whichever comes first: a real backend sends
 * none, and each is read, scanned and dropped for nothing (hostile34 Z12).
 */
export const STRAYS = 3;
export const STRAY_BYTES = 256 * 1024;
/** How long a backend taken out (timeouts, failures, strays) stays out, the first time (ms). */
export const BACKOFF_MS = 10_000;
export const BACKOFF_MAX_MS = 5 * 60_000;
/** How long a worker's backoff is kept by its name after it left (ms). */
export const REMEMBER_MS = 2 * BACKOFF_MAX_MS;
/** Most names whose backoff is kept at once (the oldest go first). */
export const REMEMBER_MAX = 10_000;

/** What the window counts. */
const ANSWERS = 0, TIMEOUTS = 1, FAILURES = 2;

export class Outlier {
  /** Requests it may have at once (Infinity: no slow start). */
  ramp = Infinity;
  /** Until when it may not come back (performance.now() ms). */
  outUntil = -Infinity;
  /** Answers since it joined. */
  #answered = 0;
  /** Ejections since it last served a full ramp. */
  #ejections = 0;
  /** Answers, timeouts and failures over the window. */
  readonly #window = new WindowCounts(3);

  /** It joined (again): slow start. */
  joined(): void {
    this.#answered = 0;
    this.ramp = SLOW_START;
  }

  /** It answered a request at `now`; `capacity` ends the slow start. */
  answered(now: number, capacity: number): void {
    this.#window.add(now, ANSWERS);
    if (++this.#answered >= capacity) this.#ejections = 0;
    if (this.ramp !== Infinity && ++this.ramp >= capacity) this.ramp = Infinity;
  }

  /**
   * A request timed out at `now`. @returns why it should be out now, or
   * undefined
   */
  timedOut(now: number, fall: number): string | undefined {
    const t = this.#window.add(now, TIMEOUTS);
    if (this.ramp !== Infinity && this.#answered === 0) {
      return "no answer to its first request";
    }
    return t < fall ? undefined : this.#tooMany(now);
  }

  /**
   * A request was answered with a server failure at `now`; `least` of them
   * in the window may take it out. @returns why it should be out now, or
   * undefined
   */
  failed(now: number, least: number): string | undefined {
    const f = this.#window.add(now, FAILURES);
    return f < least ? undefined : this.#tooMany(now);
  }

  /** Why it should be out when its timeouts and failures are too large a part of the window's outcomes. */
  #tooMany(now: number): string | undefined {
    const t = this.#window.count(now, TIMEOUTS);
    const f = this.#window.count(now, FAILURES);
    const n = t + f + this.#window.count(now, ANSWERS);
    if ((t + f) * FAILURE_PART < n) return undefined;
    const what = f === 0
      ? "got no answer"
      : t === 0
      ? "answered INTERNAL"
      : "failed or got no answer";
    return `${t + f} of its last ${n} requests ${what}`;
  }

  /** Whether it is in a slow start and has answered nothing since it joined (see timedOut). */
  get answeredNone(): boolean {
    return this.ramp !== Infinity && this.#answered === 0;
  }

  /** Whether it was taken out and has not served a full ramp since. */
  get backedOff(): boolean {
    return this.#ejections > 0;
  }

  /** It was taken out at `now`: how long it stays out. @returns that time in ms */
  ejected(now: number): number {
    const ms = Math.min(BACKOFF_MAX_MS, BACKOFF_MS * 2 ** this.#ejections++);
    this.outUntil = now + ms;
    this.#window.clear();
    return ms;
  }
}
