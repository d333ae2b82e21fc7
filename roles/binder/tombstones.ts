/**
 * The tombstones of a registry, in order of removal, for making room when it is full: those kept
 * `tombstoneMs` alone go first, oldest first; those kept for a lease still running (hostile47 Q6:
 * a binder that missed the removal must meet them) only when no other is left (hostile47b N6:
 * short leases filling the registry evicted the hour-long ones first, and a deregistered instance
 * came back from a peer).
 */
import type { Entry } from "./registry.ts";

export class Tombstones {
  #short = new Map<string, Entry>();
  #long = new Map<string, Entry>();
  readonly #tombstoneMs: number;

  constructor(tombstoneMs: number) {
    this.#tombstoneMs = tombstoneMs;
  }

  /** Keeps `entry` (a tombstone) last in its order, or forgets `id` where `entry` is live. */
  set(id: string, entry: Entry | undefined): void {
    this.delete(id);
    if (entry === undefined) return;
    (entry.ttlMs > this.#tombstoneMs ? this.#long : this.#short).set(id, entry);
  }

  delete(id: string): void {
    this.#short.delete(id);
    this.#long.delete(id);
  }

  /** The tombstone to forget for room. */
  evictable(): Entry | undefined {
    return this.#short.values().next().value ?? this.#long.values().next().value;
  }
}
