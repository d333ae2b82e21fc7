/**
 * The slots of a pool's backends in rotation (slots.ts), as the shares read
 * them for every request.
 */
import type { Pool } from "./backends.ts";

/** How long a count stands while the pool's list is the same (ms). */
const SLOTS_MS = 1;

/**
 * Counted again when the pool's list changes and at most every SLOTS_MS: a
 * count per turn walked 1,000 idle registered workers once per read of a
 * client (4x the balancer's CPU per call beside them, a third of the
 * client's rate).
 */
export class SlotCount {
  readonly #pool: Pool;
  readonly #now: () => number;
  #n = 0;
  #at = -Infinity;
  #of: unknown;

  constructor(pool: Pool, now: () => number) {
    this.#pool = pool;
    this.#now = now;
  }

  /** Slots of the backends up: each its capacity, within its slow-start ramp. */
  get value(): number {
    const now = this.#now();
    const list = this.#pool.list;
    if (now - this.#at >= SLOTS_MS || now < this.#at || list !== this.#of) {
      this.#at = now;
      this.#of = list;
      let n = 0;
      for (const b of list) if (b.state === "up") n += Math.min(b.capacity, b.outlier.ramp);
      this.#n = n;
    }
    return this.#n;
  }
}
