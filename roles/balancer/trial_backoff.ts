/**
 * How long a backend that failed a trial waits for its next (trials.ts):
 * plain data, kept by its backend (backends.ts).
 */
import { BACKOFF_MAX_MS, BACKOFF_MS } from "./outlier.ts";
import { turnClock } from "../../wire/turn.ts";

/** Read once a turn: a policy asks every backend of a pick whether it is available. */
const turnNow = turnClock(() => performance.now());

export class TrialBackoff {
  /** Trials failed: held past their bound while a proven backend answered the same request within it. */
  failed = 0;
  /** No trial before this (performance.now() ms). */
  after = -Infinity;

  /** Whether it may have no trial now. */
  get waiting(): boolean {
    return this.after !== -Infinity && turnNow() < this.after;
  }

  /**
   * A trial failed at `now`: no trial for {@link BACKOFF_MS}, twice that the
   * next time, up to {@link BACKOFF_MAX_MS}; the backend stays connected
   * and untried. @returns that time in ms
   */
  fail(now: number): number {
    const ms = Math.min(BACKOFF_MAX_MS, BACKOFF_MS * 2 ** this.failed++);
    this.after = now + ms;
    return ms;
  }

  /** A trial held until `until` has no verdict yet: no other trial before then. */
  pause(until: number): void {
    this.after = Math.max(this.after, until);
  }
}
