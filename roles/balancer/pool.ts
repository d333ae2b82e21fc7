/**
 * The backend pool: its backends in rotation order (backends.ts has the
 * rules of each).
 */
import { type Backend, stateChanges } from "./backends.ts";

/** How long a count of the slots stands while the list is the same (ms; see Pool.slots). */
const SLOTS_MS = 1;

/**
 * Whether a proven backend is in rotation in `pool`: one not untried (it
 * has answered, or it is a `--backends` server of an unguarded pool), as
 * policies.ts `Guarded` counts them when it gives trials.
 */
export function provenUp(pool: Pool | undefined): boolean {
  if (pool === undefined) return false;
  for (const b of pool.list) if (!b.untried && b.state === "up") return true;
  return false;
}

/**
 * The backends in rotation order. Policies read `list`; adding and removing
 * keep the order of the others, so round-robin stays a strict rotation.
 */
export class Pool {
  #list: Backend[] = [];
  /**
   * A `--service` has more instances than `--max-backends` places, so some
   * of those dialed may be fakes that answer their handshake and health
   * checks and no request (hostile35 H4): backends that have answered go
   * first, the untried get trials (policies.ts), and a place is kept by
   * serving (sources.ts). Set by the servers' set (sources.ts).
   */
  guarded = false;
  /** Health checks missed by backends no longer here (a counter never goes back). */
  #checksFailedGone = 0;

  get list(): readonly Backend[] {
    return this.#list;
  }

  add(backend: Backend): void {
    this.#list = [...this.#list, backend];
    backend.pool = this;
  }

  /** Told of each backend that leaves (reclaim.ts collects after many). */
  onRemoved: (() => void) | undefined;

  remove(backend: Backend): void {
    const before = this.#list.length;
    this.#list = this.#list.filter((b) => b !== backend);
    if (this.#list.length < before) {
      backend.pool = undefined;
      this.#checksFailedGone += backend.checksFailed;
      this.onRemoved?.();
    }
  }

  /** Health checks missed, all time, by every backend there has been. */
  get checksFailed(): number {
    let n = this.#checksFailedGone;
    for (const b of this.#list) n += b.checksFailed;
    return n;
  }

  #slotCount = 0;
  #slotsAt = -Infinity;
  #slotsOf: readonly Backend[] | undefined;

  /**
   * Slots of the backends in rotation at `now` (slots.ts), counted again
   * when the list changes and at most every SLOTS_MS: a count per turn
   * walked 1,000 idle registered workers once per read of a client (4x the
   * balancer's CPU per call beside them, a third of the client's rate).
   */
  slots(now: number): number {
    if (now - this.#slotsAt >= SLOTS_MS || now < this.#slotsAt || this.#list !== this.#slotsOf) {
      this.#slotsAt = now;
      this.#slotsOf = this.#list;
      let n = 0;
      for (const b of this.#list) {
        if (b.state === "up") n += Math.min(b.capacity, b.outlier.ramp);
      }
      this.#slotCount = n;
    }
    return this.#slotCount;
  }

  #healthyCount = 0;
  #healthyAt = -1;
  #healthyOf: readonly Backend[] | undefined;

  /**
   * Backends in rotation, counted again only when a backend's state or the
   * list changed (read per request and per turn: a walk each time cost a
   * walk of 1,000 idle registered workers per call).
   */
  get healthy(): number {
    if (this.#healthyAt !== stateChanges || this.#list !== this.#healthyOf) {
      this.#healthyAt = stateChanges;
      this.#healthyOf = this.#list;
      let n = 0;
      for (const b of this.#list) if (b.state === "up") n++;
      this.#healthyCount = n;
    }
    return this.#healthyCount;
  }
}
