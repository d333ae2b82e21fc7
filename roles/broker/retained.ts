/**
 * The retained store: the last value of each topic, within a byte budget.
 * Past the budget the least recently updated values go first (an LRU by
 * update, kept as a doubly linked list so that an update and an eviction
 * are O(1)), and every eviction is counted.
 *
 * The values and their links live on their holders (`holder.retained`,
 * ...), not in entries of their own: a publish that already found its topic
 * reaches its value without another lookup, and a broker restarted on a
 * million values makes a million fewer objects (the collector's work).
 */

/** Anything that may hold a retained value (a topic): the fields are the store's. */
export interface RetainedHolder<K> {
  /** The retained value; undefined when there is none. */
  retained: unknown;
  /** What the value counts against the budget. */
  retainedBytes: number;
  /** When it was set (the caller's clock; the broker's is epoch seconds). */
  retainedAt: number;
  /** Neighbours in the update order (least recent first). */
  retainedOlder: K | undefined;
  retainedNewer: K | undefined;
}

/** Bytes a value costs beyond itself and its key: its fields and list links, roughly. */
export const ENTRY_OVERHEAD = 64;

/** What the store did with a value. */
export type RetainOutcome = "stored" | "too_large";

export class RetainedStore<K extends RetainedHolder<K>> {
  readonly budget: number;
  #bytes = 0;
  #count = 0;
  #evicted = 0;
  #oldest: K | undefined;
  #newest: K | undefined;
  /**
   * The newest value put back by {@link restore}: the next goes just after
   * it, so values read back from a file stay older than every value set
   * since the start (see restore).
   */
  #restoredNewest: K | undefined;

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
    if (holder.retained === undefined) {
      holder.retained = value;
      holder.retainedBytes = cost;
      holder.retainedAt = now;
      this.#count++;
      this.#bytes += cost;
      this.#append(holder);
      this.#onChange?.(holder, 1);
    } else {
      this.#bytes += cost - holder.retainedBytes;
      holder.retained = value;
      holder.retainedBytes = cost;
      holder.retainedAt = now;
      if (this.#newest !== holder) {
        this.#unlink(holder);
        this.#append(holder);
      } else if (holder === this.#restoredNewest) {
        // Newest already, but set now: what is put back later goes before it.
        this.#restoredNewest = holder.retainedOlder;
      }
    }
    this.onWrite?.(holder);
    while (this.#bytes > this.budget && this.#oldest !== undefined) {
      this.#evicted++;
      this.clear(this.#oldest);
    }
    return "stored";
  }

  /**
   * Puts back a value read from a data file (`holder` has none): as
   * {@link set}, but placed in the update order after the values put back
   * before it and before every value set since the start, which are newer
   * whatever order the file is read in. Past the budget the oldest go, as
   * for set (`holder` too, when it is the oldest).
   */
  restore(holder: K, value: unknown, bytes: number, at: number): RetainOutcome {
    const cost = bytes + ENTRY_OVERHEAD;
    if (cost > this.budget || holder.retained !== undefined) {
      return this.set(holder, value, bytes, at);
    }
    holder.retained = value;
    holder.retainedBytes = cost;
    holder.retainedAt = at;
    this.#count++;
    this.#bytes += cost;
    const before = this.#restoredNewest;
    const after = before === undefined ? this.#oldest : before.retainedNewer;
    holder.retainedOlder = before;
    holder.retainedNewer = after;
    if (before !== undefined) before.retainedNewer = holder;
    else this.#oldest = holder;
    if (after !== undefined) after.retainedOlder = holder;
    else this.#newest = holder;
    this.#restoredNewest = holder;
    this.#onChange?.(holder, 1);
    this.onWrite?.(holder);
    while (this.#bytes > this.budget && this.#oldest !== undefined) {
      this.#evicted++;
      this.clear(this.#oldest);
    }
    return "stored";
  }

  /** Removes `holder`'s retained value, if any. */
  clear(holder: K): void {
    if (holder.retained === undefined) return;
    holder.retained = undefined;
    this.#count--;
    this.#bytes -= holder.retainedBytes;
    holder.retainedBytes = 0;
    this.#unlink(holder);
    this.#onChange?.(holder, -1);
    this.onWrite?.(holder);
  }

  #append(holder: K): void {
    holder.retainedOlder = this.#newest;
    holder.retainedNewer = undefined;
    if (this.#newest !== undefined) this.#newest.retainedNewer = holder;
    else this.#oldest = holder;
    this.#newest = holder;
  }

  #unlink(holder: K): void {
    if (holder === this.#restoredNewest) this.#restoredNewest = holder.retainedOlder;
    if (holder.retainedOlder !== undefined) {
      holder.retainedOlder.retainedNewer = holder.retainedNewer;
    } else this.#oldest = holder.retainedNewer;
    if (holder.retainedNewer !== undefined) {
      holder.retainedNewer.retainedOlder = holder.retainedOlder;
    } else this.#newest = holder.retainedOlder;
    holder.retainedOlder = holder.retainedNewer = undefined;
  }
}
