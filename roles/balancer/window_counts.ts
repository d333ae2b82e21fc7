/**
 * Counts of a few kinds over a window of two buckets, this one and the
 * last, each {@link WINDOW_MS} long: what a count says covers WINDOW_MS to
 * twice that. outlier.ts counts a backend's answers, timeouts and failures
 * in one, success_rate.ts its outcomes and failures in another.
 */

/** A bucket's length (ms): counts cover this to twice this. */
export const WINDOW_MS = 10_000;

export class WindowCounts {
  /** The current bucket (time ÷ WINDOW_MS). */
  #epoch = 0;
  /** The time of the last roll. */
  #rolledAt = NaN;
  /** Each kind's count in the current bucket, and in the last. */
  readonly #current: number[];
  readonly #last: number[];

  constructor(kinds: number) {
    this.#current = new Array(kinds).fill(0);
    this.#last = new Array(kinds).fill(0);
  }

  /** Counts one of `kind` at `now`. @returns that kind's count in the window */
  add(now: number, kind: number): number {
    this.#roll(now);
    return ++this.#current[kind] + this.#last[kind];
  }

  /** The count of `kind` in the window at `now`. */
  count(now: number, kind: number): number {
    this.#roll(now);
    return this.#current[kind] + this.#last[kind];
  }

  /** Forgets both buckets. */
  clear(): void {
    this.#current.fill(0);
    this.#last.fill(0);
  }

  #roll(now: number): void {
    // Read many times a turn at one time (the turn clock): a compare, not a division.
    if (now === this.#rolledAt) return;
    this.#rolledAt = now;
    const e = Math.floor(now / WINDOW_MS);
    if (e === this.#epoch) return;
    const next = e === this.#epoch + 1;
    for (let k = 0; k < this.#current.length; k++) {
      this.#last[k] = next ? this.#current[k] : 0;
      this.#current[k] = 0;
    }
    this.#epoch = e;
  }
}
