/**
 * Registrations of a worker name that end young, remembered across
 * registrations (hostile46a G5: 16 workers that served every task but
 * dropped their connection every 100–300 ms and registered again each came
 * back as a fresh backend, and the requests their drops lost failed a legit
 * client's idempotent calls "tried 3 times", 48–80 in 10 s). A registration
 * that ends (its connection closed, or taken over) less than
 * {@link CHURN_YOUNG_MS} after it came into rotation counts against its name
 * and source (its user once its hello proves one, else its address); one
 * that stayed that long clears the count. One that ends before it ever came
 * into rotation served nobody: it keeps the count alive, but adds nothing,
 * and makes no record of its own (hostile h47b N1: a stranger's 8
 * registrations of "w1" closed at once held the real w1 out for 64 s). A
 * registration of the name from another source has a record of its own.
 * From the pair's {@link CHURN_FREE}th such end within {@link CHURN_FORGET_MS} of
 * the last, its next registration is held out of rotation (health checks
 * bring it in after that) for {@link CHURN_FIRST_MS}, twice that the next
 * time, up to {@link CHURN_MAX_MS}: HAProxy's and Envoy's ejections that
 * grow with each one. A backend of a name with such ends is not where a
 * request lost with a dropped connection is sent again (redispatch.ts).
 */
import { BACKOFF_MAX_MS, REMEMBER_MAX, REMEMBER_MS } from "./outlier.ts";

/** A registration that ends sooner than this after it came into rotation counts (ms). */
export const CHURN_YOUNG_MS = 10_000;
/** Young ends a name may have before its registrations are held out: a restart or two. */
export const CHURN_FREE = 2;
/** The first hold (ms), doubled at each young end after it. */
export const CHURN_FIRST_MS = 1_000;
/** The longest hold (ms): the outliers' longest backoff. */
export const CHURN_MAX_MS = BACKOFF_MAX_MS;
/** A name with no young end for this long starts again from none (ms). */
export const CHURN_FORGET_MS = REMEMBER_MS;

interface Ends {
  /** Young ends in a row. */
  young: number;
  /** When the last was (performance.now() ms). */
  at: number;
}

/** The record of `name` registered from `source`. */
function keyOf(name: string, source: string): string {
  return JSON.stringify([name, source]);
}

export class Churn {
  #byKey = new Map<string, Ends>();

  /**
   * A registration of `name` from `source` ended at `now`, `lived` ms after
   * it came into rotation (undefined when it never did: it adds no end).
   */
  ended(name: string, source: string, lived: number | undefined, now: number): void {
    const key = keyOf(name, source);
    if (lived !== undefined && lived >= CHURN_YOUNG_MS) {
      this.#byKey.delete(key);
      return;
    }
    const ends = this.#byKey.get(key);
    const kept = ends !== undefined && now - ends.at < CHURN_FORGET_MS;
    if (lived === undefined && !kept) return;
    const young = kept ? ends.young + (lived === undefined ? 0 : 1) : 1;
    this.#byKey.delete(key); // kept in the order of their last end: the oldest go first
    this.#byKey.set(key, { young, at: now });
    if (this.#byKey.size > REMEMBER_MAX) this.#byKey.delete(this.#byKey.keys().next().value!);
  }

  /** Young ends of `name` from `source` in a row, as of `now` (0 once forgotten). */
  youngEnds(name: string, source: string, now: number): number {
    const ends = this.#byKey.get(keyOf(name, source));
    return ends === undefined || now - ends.at >= CHURN_FORGET_MS ? 0 : ends.young;
  }

  /** How long a registration of `name` from `source` now is held out of rotation (ms; 0: not at all). */
  hold(name: string, source: string, now: number): number {
    const n = this.youngEnds(name, source, now);
    if (n < CHURN_FREE) return 0;
    return Math.min(CHURN_MAX_MS, CHURN_FIRST_MS * 2 ** Math.min(n - CHURN_FREE, 20));
  }
}
