/**
 * The retained store: the last value of each topic, within a byte budget.
 * Past the budget the least recently updated values go first (an LRU by
 * update, kept as a doubly linked list so that an update and an eviction
 * are O(1)), and every eviction is counted.
 *
 * With authentication, each user's values are a pool of their own (its own
 * update order), and past the budget the pool that holds the most bytes
 * loses its least recently updated value: one user's retained flood evicts
 * that user's values, not another's (hostile review H17), as long as the
 * others hold less than it. Values of no one in particular (authentication
 * off, wills, read back from a data file that kept no user) are one pool,
 * the only one without authentication; a value read back from a file that
 * kept its user (durable.ts) is that user's again. And a user's pool has a
 * share of the budget (`perOwner`: the broker gives each user an eighth, as
 * of the topics: topic_shares.ts),
 * past which that user's own least recently updated values go: one user
 * could otherwise hold the whole budget (and what `--max-memory` counts of
 * it), so that any value another user retained then evicted one of its.
 * The shared token's holders are no one user: their pool has no share.
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

import { TOKEN_USER } from "../../auth/mod.ts";

/** Bytes a value costs beyond itself and its key: its fields and list links, roughly. */
export const ENTRY_OVERHEAD = 64;

/** What the store did with a value. */
export type RetainOutcome = "stored" | "too_large";

/** One owner's values in update order (least recent first), and what they cost. */
interface Pool<K> {
  oldest: K | undefined;
  newest: K | undefined;
  bytes: number;
  /**
   * The newest value put back by {@link RetainedStore.restore}: the next
   * goes just after it, so values read back from a file stay older than
   * every value set since the start (see restore).
   */
  restored: K | undefined;
}

function newPool<K>(): Pool<K> {
  return { oldest: undefined, newest: undefined, bytes: 0, restored: undefined };
}

export class RetainedStore<K extends RetainedHolder<K>> {
  readonly budget: number;
  /** Most bytes one user's values may take (see the module comment). */
  readonly perOwner: number;
  /** Values removed to keep their user within its share (counted in `evicted` too). */
  ownerEvicted = 0;
  #bytes = 0;
  #count = 0;
  #evicted = 0;
  /** The values of no one in particular (see the module comment). */
  readonly #shared: Pool<K> = newPool();
  /** Each owner's values, while it has some. */
  readonly #owned = new Map<string, Pool<K>>();
  /** Whose each owned value is (a value of no one is not here). */
  readonly #ownerOf = new Map<K, string>();
  readonly #onChange: ((holder: K, delta: 1 | -1) => void) | undefined;
  /** Told of every value set or cleared (evictions too): the data file's hook. */
  onWrite: ((holder: K) => void) | undefined;

  /**
   * @param budget bytes the values (with their keys and overhead) may take in all
   * @param onChange told when a holder gains (+1) or loses (-1) its value
   * (not when a value replaces another)
   * @param perOwner bytes one user's values may take (default: the whole budget)
   */
  constructor(
    budget: number,
    onChange?: (holder: K, delta: 1 | -1) => void,
    perOwner = Infinity,
  ) {
    this.budget = budget;
    this.perOwner = perOwner;
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
   * evicts values until the store fits its budget (see the module comment).
   * A value larger than the whole budget, or than its user's share, is not
   * stored (and the old one is cleared, since it is no longer the last value).
   * @param bytes what the value costs (its key and encoded value)
   * @param owner the user who published it (undefined: no one in particular)
   */
  set(holder: K, value: unknown, bytes: number, now: number, owner?: string): RetainOutcome {
    const cost = bytes + ENTRY_OVERHEAD;
    const share = owner === undefined || owner === TOKEN_USER ? Infinity : this.perOwner;
    if (cost > this.budget || cost > share) {
      this.clear(holder);
      return "too_large";
    }
    const pool = this.#pool(owner);
    if (holder.retained === undefined) {
      holder.retained = value;
      holder.retainedBytes = cost;
      holder.retainedAt = now;
      this.#count++;
      this.#bytes += cost;
      this.#append(pool, holder);
      if (owner !== undefined) this.#ownerOf.set(holder, owner);
      this.#onChange?.(holder, 1);
    } else {
      const was = this.#poolOf(holder);
      this.#bytes += cost - holder.retainedBytes;
      was.bytes -= holder.retainedBytes;
      holder.retained = value;
      holder.retainedBytes = cost;
      holder.retainedAt = now;
      if (was !== pool) {
        // Another owner's now.
        this.#unlink(was, holder);
        this.#leave(was, holder);
        this.#append(pool, holder);
        if (owner !== undefined) this.#ownerOf.set(holder, owner);
      } else if (pool.newest !== holder) {
        this.#unlink(pool, holder);
        this.#append(pool, holder);
      } else {
        pool.bytes += cost;
        // Newest already, but set now: what is put back later goes before it.
        if (holder === pool.restored) pool.restored = holder.retainedOlder;
      }
    }
    this.onWrite?.(holder);
    // Past its user's share, that user's own least recently updated values go (never `holder`).
    while (pool.bytes > share && pool.oldest !== holder) {
      this.#evicted++;
      this.ownerEvicted++;
      this.clear(pool.oldest!);
    }
    this.#evict();
    return "stored";
  }

  /**
   * Puts back a value read from a data file (`holder` has none), of `owner`
   * (none: no one in particular): as {@link set}, but placed in its pool's
   * update order after the values put back before it and before every
   * value set since the start, which are newer whatever order the file is
   * read in. Past the budget, or past its user's share, values go as for
   * set (`holder` too, when it is the oldest).
   */
  restore(holder: K, value: unknown, bytes: number, at: number, owner?: string): RetainOutcome {
    const cost = bytes + ENTRY_OVERHEAD;
    const share = owner === undefined || owner === TOKEN_USER ? Infinity : this.perOwner;
    if (cost > this.budget || cost > share || holder.retained !== undefined) {
      return this.set(holder, value, bytes, at, owner);
    }
    const pool = this.#pool(owner);
    holder.retained = value;
    holder.retainedBytes = cost;
    holder.retainedAt = at;
    this.#count++;
    this.#bytes += cost;
    pool.bytes += cost;
    const before = pool.restored;
    const after = before === undefined ? pool.oldest : before.retainedNewer;
    holder.retainedOlder = before;
    holder.retainedNewer = after;
    if (before !== undefined) before.retainedNewer = holder;
    else pool.oldest = holder;
    if (after !== undefined) after.retainedOlder = holder;
    else pool.newest = holder;
    pool.restored = holder;
    if (owner !== undefined) this.#ownerOf.set(holder, owner);
    this.#onChange?.(holder, 1);
    this.onWrite?.(holder);
    while (pool.bytes > share) {
      this.#evicted++;
      this.ownerEvicted++;
      this.clear(pool.oldest!);
    }
    this.#evict();
    return "stored";
  }

  /** Removes `holder`'s retained value, if any. */
  clear(holder: K): void {
    if (holder.retained === undefined) return;
    const pool = this.#poolOf(holder);
    holder.retained = undefined;
    this.#count--;
    this.#bytes -= holder.retainedBytes;
    pool.bytes -= holder.retainedBytes;
    holder.retainedBytes = 0;
    this.#unlink(pool, holder);
    this.#leave(pool, holder);
    this.#onChange?.(holder, -1);
    this.onWrite?.(holder);
  }

  /** Past the budget: the least recently updated value of the pool that holds the most goes. */
  #evict(): void {
    while (this.#bytes > this.budget) {
      let most = this.#shared;
      for (const pool of this.#owned.values()) if (pool.bytes > most.bytes) most = pool;
      if (most.oldest === undefined) return;
      this.#evicted++;
      this.clear(most.oldest);
    }
  }

  #pool(owner: string | undefined): Pool<K> {
    if (owner === undefined) return this.#shared;
    let pool = this.#owned.get(owner);
    if (pool === undefined) {
      pool = newPool<K>();
      this.#owned.set(owner, pool);
    }
    return pool;
  }

  #poolOf(holder: K): Pool<K> {
    // Without authentication no value has an owner: no lookup.
    if (this.#ownerOf.size === 0) return this.#shared;
    const owner = this.#ownerOf.get(holder);
    return owner === undefined ? this.#shared : this.#owned.get(owner)!;
  }

  /** Puts `holder` last in `pool`'s order, its bytes counted there. */
  #append(pool: Pool<K>, holder: K): void {
    holder.retainedOlder = pool.newest;
    holder.retainedNewer = undefined;
    if (pool.newest !== undefined) pool.newest.retainedNewer = holder;
    else pool.oldest = holder;
    pool.newest = holder;
    pool.bytes += holder.retainedBytes;
  }

  /** `holder` (unlinked) is no longer in `pool`: an owner without values keeps no pool. */
  #leave(pool: Pool<K>, holder: K): void {
    const owner = this.#ownerOf.get(holder);
    if (owner === undefined) return;
    this.#ownerOf.delete(holder);
    if (pool.oldest === undefined) this.#owned.delete(owner);
  }

  /** Takes `holder` out of `pool`'s order (its bytes are the caller's to take off). */
  #unlink(pool: Pool<K>, holder: K): void {
    if (holder === pool.restored) pool.restored = holder.retainedOlder;
    if (holder.retainedOlder !== undefined) {
      holder.retainedOlder.retainedNewer = holder.retainedNewer;
    } else pool.oldest = holder.retainedNewer;
    if (holder.retainedNewer !== undefined) {
      holder.retainedNewer.retainedOlder = holder.retainedOlder;
    } else pool.newest = holder.retainedOlder;
    holder.retainedOlder = holder.retainedNewer = undefined;
  }
}
