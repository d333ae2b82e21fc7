/**
 * The retained store: the last value of each topic, within a byte budget.
 * Past the budget the least recently updated values go first (an LRU by
 * update, kept as a doubly linked list so that an update and an eviction
 * are O(1)), and every eviction is counted.
 *
 * Entries hang off their holder (`holder.retained`), so a publish that
 * already found its topic reaches the entry without another lookup.
 */

/** A retained value and its place in the update order. */
export interface RetainedEntry<K> {
  readonly holder: K;
  value: unknown;
  /** What the value counts against the budget. */
  bytes: number;
  /** When it was set (the caller's clock; the broker's is epoch seconds). */
  updatedAt: number;
  older: RetainedEntry<K> | undefined;
  newer: RetainedEntry<K> | undefined;
}

/** Anything that may hold a retained value (a topic node). */
export interface RetainedHolder<K> {
  retained: RetainedEntry<K> | undefined;
}

/** Bytes an entry costs beyond its value and key: the entry and list links, roughly. */
export const ENTRY_OVERHEAD = 64;

/** What the store did with a value. */
export type RetainOutcome = "stored" | "too_large";

export class RetainedStore<K extends RetainedHolder<K>> {
  readonly budget: number;
  #bytes = 0;
  #count = 0;
  #evicted = 0;
  #oldest: RetainedEntry<K> | undefined;
  #newest: RetainedEntry<K> | undefined;

  readonly #onChange: ((holder: K, delta: 1 | -1) => void) | undefined;
  /** Told of every value set or cleared (evictions too): the data file's hook. */
  onWrite: ((holder: K) => void) | undefined;

  /**
   * @param budget bytes the values (with their keys and overhead) may take in all
   * @param onChange told when a holder gains (+1) or loses (-1) its value
   * (not when a value replaces another)
   */
  constructor(budget: number, onChange?: (holder: K, delta: 1 | -1) => void) {
    this.budget = budget;
    this.#onChange = onChange;
  }

  get bytes(): number {
    return this.#bytes;
  }

  get count(): number {
    return this.#count;
  }

  /** Values removed to stay within the budget (not counting clears). */
  get evicted(): number {
    return this.#evicted;
  }

  /**
   * Stores `value` as `holder`'s retained value, replacing the old one, then
   * evicts the least recently updated values until the store fits its
   * budget. A value larger than the whole budget is not stored (and the old
   * one is cleared, since it is no longer the last value).
   * @param bytes what the value costs (its key and encoded value)
   */
  set(holder: K, value: unknown, bytes: number, now: number): RetainOutcome {
    const cost = bytes + ENTRY_OVERHEAD;
    if (cost > this.budget) {
      this.clear(holder);
      return "too_large";
    }
    let entry = holder.retained;
    if (entry === undefined) {
      entry = { holder, value, bytes: cost, updatedAt: now, older: undefined, newer: undefined };
      holder.retained = entry;
      this.#count++;
      this.#bytes += cost;
      this.#append(entry);
      this.#onChange?.(holder, 1);
    } else {
      this.#bytes += cost - entry.bytes;
      entry.value = value;
      entry.bytes = cost;
      entry.updatedAt = now;
      if (this.#newest !== entry) {
        this.#unlink(entry);
        this.#append(entry);
      }
    }
    this.onWrite?.(holder);
    while (this.#bytes > this.budget && this.#oldest !== undefined) {
      this.#evicted++;
      this.clear(this.#oldest.holder);
    }
    return "stored";
  }

  /** Removes `holder`'s retained value, if any. */
  clear(holder: K): void {
    const entry = holder.retained;
    if (entry === undefined) return;
    holder.retained = undefined;
    this.#count--;
    this.#bytes -= entry.bytes;
    this.#unlink(entry);
    this.#onChange?.(holder, -1);
    this.onWrite?.(holder);
  }

  #append(entry: RetainedEntry<K>): void {
    entry.older = this.#newest;
    entry.newer = undefined;
    if (this.#newest !== undefined) this.#newest.newer = entry;
    else this.#oldest = entry;
    this.#newest = entry;
  }

  #unlink(entry: RetainedEntry<K>): void {
    if (entry.older !== undefined) entry.older.newer = entry.newer;
    else this.#oldest = entry.newer;
    if (entry.newer !== undefined) entry.newer.older = entry.older;
    else this.#newest = entry.older;
    entry.older = entry.newer = undefined;
  }
}
