/**
 * The tombstones of a registry, with their own budget (review r47 R11): they count against no
 * live-instance cap, and when the budget is full a new tombstone takes the place of one of the
 * source holding the most of them (who registered the instance here; `peer:ADDRESS` for one a
 * peer sent), so a flood of register + deregister from one source forgets its own first and can
 * neither lock other servers out of registering nor make their removals forgotten before its own.
 * Within a source: those kept `tombstoneMs` alone go first, oldest first; those kept for a lease
 * still running (hostile47 Q6: a binder that missed the removal must meet them) only when that
 * source has no other (hostile47b N6). Consul keeps its tombstones for a fixed reap interval and
 * Serf its left members in a bounded list; here the bound is a count, shared fairly.
 */
import type { Entry } from "./registry.ts";

/** One source's tombstones, in order of removal. */
interface Held {
  short: Map<string, Entry>;
  long: Map<string, Entry>;
}

export class Tombstones {
  readonly #tombstoneMs: number;
  #bySource = new Map<string, Held>();
  #sourceOf = new Map<string, string>();
  /** Sources by how many tombstones they hold, for the largest at once. */
  #byCount = new Map<number, Set<string>>();
  #most = 0;

  constructor(tombstoneMs: number) {
    this.#tombstoneMs = tombstoneMs;
  }

  get size(): number {
    return this.#sourceOf.size;
  }

  /** The source a tombstone is counted for (undefined: no tombstone of that id). */
  sourceOf(id: string): string | undefined {
    return this.#sourceOf.get(id);
  }

  /**
   * Keeps `entry` (a tombstone) last in its source's order, or forgets `id` where `entry` is
   * live. A tombstone changed again stays counted for the source it had.
   */
  set(id: string, entry: Entry | undefined, source: string): void {
    const kept = this.#sourceOf.get(id);
    this.delete(id);
    if (entry === undefined) return;
    const owner = kept ?? source;
    let held = this.#bySource.get(owner);
    if (held === undefined) this.#bySource.set(owner, held = { short: new Map(), long: new Map() });
    (entry.ttlMs > this.#tombstoneMs ? held.long : held.short).set(id, entry);
    this.#sourceOf.set(id, owner);
    this.#recount(owner, held.short.size + held.long.size - 1);
  }

  delete(id: string): void {
    const source = this.#sourceOf.get(id);
    if (source === undefined) return;
    this.#sourceOf.delete(id);
    const held = this.#bySource.get(source)!;
    held.short.delete(id);
    held.long.delete(id);
    const n = held.short.size + held.long.size;
    if (n === 0) this.#bySource.delete(source);
    this.#recount(source, n + 1);
  }

  /** The tombstone to forget for room: the oldest short one of the source holding the most. */
  evictable(): Entry | undefined {
    const source = this.#byCount.get(this.#most)?.values().next().value;
    if (source === undefined) return undefined;
    const held = this.#bySource.get(source)!;
    return held.short.values().next().value ?? held.long.values().next().value;
  }

  /** Moves `source` from the sources holding `was` tombstones to those holding what it holds. */
  #recount(source: string, was: number): void {
    const held = this.#bySource.get(source);
    const now = held === undefined ? 0 : held.short.size + held.long.size;
    if (was > 0) {
      const set = this.#byCount.get(was)!;
      set.delete(source);
      if (set.size === 0) this.#byCount.delete(was);
    }
    if (now > 0) {
      let set = this.#byCount.get(now);
      if (set === undefined) this.#byCount.set(now, set = new Set());
      set.add(source);
    }
    if (now > this.#most) this.#most = now;
    while (this.#most > 0 && !this.#byCount.has(this.#most)) this.#most--;
  }
}
