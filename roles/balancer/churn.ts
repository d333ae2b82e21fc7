/**
 * Registrations of a worker name that end young, remembered across
 * registrations (hostile46a G5: 16 workers that served every task but
 * dropped their connection every 100–300 ms and registered again each came
 * back as a fresh backend, and the requests their drops lost failed a legit
 * client's idempotent calls "tried 3 times", 48–80 in 10 s). A registration
 * that ends (its connection closed, or taken over) less than
 * {@link CHURN_YOUNG_MS} after it came into rotation, or before it ever did,
 * counts against its name; one that stayed that long clears the count. From
 * the name's {@link CHURN_FREE}th such end within {@link CHURN_FORGET_MS} of
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

export class Churn {
  #byName = new Map<string, Ends>();

  /**
   * A registration of `name` ended at `now`, `lived` ms after it came into
   * rotation (0 when it never did: it counts as young).
   */
  ended(name: string, lived: number, now: number): void {
    if (lived >= CHURN_YOUNG_MS) {
      this.#byName.delete(name);
      return;
    }
    const ends = this.#byName.get(name);
    const young = ends !== undefined && now - ends.at < CHURN_FORGET_MS ? ends.young + 1 : 1;
    this.#byName.delete(name); // kept in the order of their last end: the oldest go first
    this.#byName.set(name, { young, at: now });
    if (this.#byName.size > REMEMBER_MAX) this.#byName.delete(this.#byName.keys().next().value!);
  }

  /** Young ends of `name` in a row, as of `now` (0 once forgotten). */
  youngEnds(name: string, now: number): number {
    const ends = this.#byName.get(name);
    return ends === undefined || now - ends.at >= CHURN_FORGET_MS ? 0 : ends.young;
  }

  /** How long a registration of `name` now is held out of rotation (ms; 0: not at all). */
  hold(name: string, now: number): number {
    const n = this.youngEnds(name, now);
    if (n < CHURN_FREE) return 0;
    return Math.min(CHURN_MAX_MS, CHURN_FIRST_MS * 2 ** Math.min(n - CHURN_FREE, 20));
  }
}
