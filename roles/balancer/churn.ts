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

/** Most records of one source (its user, else its address): past that its lightest go first. */
export const CHURN_PER_SOURCE = 256;

interface Ends {
  /** Young ends in a row. */
  young: number;
  /** When the last was (performance.now() ms). */
  at: number;
  source: string;
}

/** The record of `name` registered from `source`. */
function keyOf(name: string, source: string): string {
  return JSON.stringify([name, source]);
}

/**
 * The records, kept so that a flood of made-up names cannot flush a held one (review N11: past
 * REMEMBER_MAX records the oldest went first, so 10,000 names registered and dropped once each
 * undid G5's hold of a flapping name): a source keeps at most {@link CHURN_PER_SOURCE} (past it,
 * its record with the fewest young ends goes, the oldest among equals), and when all are full,
 * a record that holds nothing (fewer than {@link CHURN_FREE} ends) goes before one that holds.
 */
export class Churn {
  /** Records that hold nothing yet, and those that hold, each in the order of their last end. */
  #light = new Map<string, Ends>();
  #holding = new Map<string, Ends>();
  #bySource = new Map<string, Set<string>>();

  /**
   * A registration of `name` from `source` ended at `now`, `lived` ms after
   * it came into rotation (undefined when it never did: it adds no end).
   */
  ended(name: string, source: string, lived: number | undefined, now: number): void {
    const key = keyOf(name, source);
    if (lived !== undefined && lived >= CHURN_YOUNG_MS) {
      this.#delete(key);
      return;
    }
    const ends = this.#get(key);
    const kept = ends !== undefined && now - ends.at < CHURN_FORGET_MS;
    if (lived === undefined && !kept) return;
    const young = kept ? ends.young + (lived === undefined ? 0 : 1) : 1;
    this.#set(key, { young, at: now, source });
  }

  /** Young ends of `name` from `source` in a row, as of `now` (0 once forgotten). */
  youngEnds(name: string, source: string, now: number): number {
    const ends = this.#get(keyOf(name, source));
    return ends === undefined || now - ends.at >= CHURN_FORGET_MS ? 0 : ends.young;
  }

  /** How long a registration of `name` from `source` now is held out of rotation (ms; 0: not at all). */
  hold(name: string, source: string, now: number): number {
    const n = this.youngEnds(name, source, now);
    if (n < CHURN_FREE) return 0;
    return Math.min(CHURN_MAX_MS, CHURN_FIRST_MS * 2 ** Math.min(n - CHURN_FREE, 20));
  }

  /** How many records are kept (of `source`, or in all). */
  size(source?: string): number {
    if (source !== undefined) return this.#bySource.get(source)?.size ?? 0;
    return this.#light.size + this.#holding.size;
  }

  #get(key: string): Ends | undefined {
    return this.#light.get(key) ?? this.#holding.get(key);
  }

  #delete(key: string): void {
    const ends = this.#get(key);
    if (ends === undefined) return;
    this.#light.delete(key);
    this.#holding.delete(key);
    const mine = this.#bySource.get(ends.source)!;
    mine.delete(key);
    if (mine.size === 0) this.#bySource.delete(ends.source);
  }

  #set(key: string, ends: Ends): void {
    this.#delete(key); // Kept in the order of their last end.
    (ends.young >= CHURN_FREE ? this.#holding : this.#light).set(key, ends);
    let mine = this.#bySource.get(ends.source);
    if (mine === undefined) this.#bySource.set(ends.source, mine = new Set());
    mine.add(key);
    if (mine.size > CHURN_PER_SOURCE) this.#delete(this.#lightest(mine));
    if (this.size() > REMEMBER_MAX) {
      this.#delete((this.#light.size > 0 ? this.#light : this.#holding).keys().next().value!);
    }
  }

  /** Of `keys`, the record with the fewest young ends, the oldest among equals. */
  #lightest(keys: Set<string>): string {
    let best: string | undefined;
    let bestEnds: Ends | undefined;
    for (const key of keys) {
      const ends = this.#get(key)!;
      if (
        bestEnds === undefined || ends.young < bestEnds.young ||
        (ends.young === bestEnds.young && ends.at < bestEnds.at)
      ) {
        best = key;
        bestEnds = ends;
      }
    }
    return best!;
  }
}
