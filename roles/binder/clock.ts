/**
 * Versions of registry changes: a hybrid logical clock (physical milliseconds
 * plus a logical counter) with the id of the binder that made the change as
 * the tie-break. Stamps from different binders compare in one total order, a
 * stamp made after seeing another is always greater than it, and stamps stay
 * close to wall time (so "older than a minute" means something).
 */

/** A version: `[wall ms, logical counter, binder id]`, compared in that order. */
export type Stamp = readonly [wall: number, logical: number, node: string];

/** Negative, zero or positive as `a` is older than, the same as or newer than `b`. */
export function compareStamps(a: Stamp, b: Stamp): number {
  if (a[0] !== b[0]) return a[0] - b[0];
  if (a[1] !== b[1]) return a[1] - b[1];
  return a[2] < b[2] ? -1 : a[2] > b[2] ? 1 : 0;
}

/**
 * Largest logical counter. The counter only breaks ties within one
 * millisecond, so 2^32 of them is plenty; at the limit the clock carries into
 * the next millisecond instead. A bound far below 2^53 keeps every stamp a
 * safe integer however high a peer set the counter, so one forged version
 * cannot make this binder's later stamps unsendable (or equal to each other).
 */
export const MAX_LOGICAL = 2 ** 32 - 1;

/** Whether `value` is a well-formed stamp (peer data is checked before use). */
export function isStamp(value: unknown): value is Stamp {
  return Array.isArray(value) && value.length === 3 && Number.isSafeInteger(value[0]) &&
    value[0] >= 0 && Number.isInteger(value[1]) && value[1] >= 0 && value[1] <= MAX_LOGICAL &&
    typeof value[2] === "string" && value[2].length > 0 && value[2].length <= 200;
}

/**
 * A hybrid logical clock for one binder. `now()` stamps a local change;
 * `observe()` takes in a stamp received from a peer, so that every later
 * local stamp is newer than it (a change made after learning of another
 * wins over it, whatever the two machines' clocks say).
 */
export class HybridClock {
  readonly node: string;
  #physical: () => number;
  #wall = 0;
  #logical = 0;

  /** @param physical wall-clock milliseconds (injectable for tests) */
  constructor(node: string, physical: () => number = Date.now) {
    this.node = node;
    this.#physical = physical;
  }

  /** A stamp newer than every stamp made or observed so far. */
  now(): Stamp {
    const pt = Math.floor(this.#physical());
    if (pt > this.#wall) {
      this.#wall = pt;
      this.#logical = 0;
    } else if (this.#logical < MAX_LOGICAL) {
      this.#logical++;
    } else {
      // The counter is spent: carry into the next millisecond (still newer than all before).
      this.#wall++;
      this.#logical = 0;
    }
    return [this.#wall, this.#logical, this.node];
  }

  /** Moves the clock past `stamp` (a version received from a peer, checked by isStamp). */
  observe(stamp: Stamp): void {
    if (stamp[0] > this.#wall || (stamp[0] === this.#wall && stamp[1] > this.#logical)) {
      this.#wall = stamp[0];
      this.#logical = stamp[1];
    }
  }

  /** How far the clock runs ahead of physical time (ms): large after observing a fast peer. */
  get drift(): number {
    return Math.max(0, this.#wall - Math.floor(this.#physical()));
  }
}
