/**
 * The registry proper, with no sockets: instances of services under leases, cyclic lookup,
 * versioned changes and tombstones, and the merge of changes from other binders (last writer
 * wins by {@link Stamp}).
 *
 * Every change of an entry gets a new stamp from the binder's hybrid logical clock: a
 * registration, a renewal (so a renewal made on one side of a partition beats an expiry decided
 * on the other side earlier), a deregistration, an expiry (stamped just after the version it ended), a
 * verified failure. A removal leaves a tombstone, so an older registration arriving late cannot
 * bring the instance back; a tombstone is collected after `tombstoneMs` and its lease, by which
 * time every reachable binder has it (and an instance that did come back with no one renewing it
 * has expired on its own). Live instances and tombstones have budgets of their own (review r47
 * R11): `maxEntries` live instances, `maxTombstones` tombstones, the latter shared between the
 * sources that registered the instances (tombstones.ts), so a flood of registrations that
 * deregister or expire forgets its own tombstones and cannot lock servers out.
 */
import { DistError } from "../../wire/mod.ts";
import { MAX_TTL_MS } from "../../clients/contracts/mod.ts";
import { compareStamps, type HybridClock, MAX_LOGICAL, type Stamp } from "./clock.ts";
import { Digest } from "./digest.ts";
import { Rings } from "./rings.ts";
import { newCounters, type RegistryCounters } from "./counters.ts";
import { Tombstones } from "./tombstones.ts";

export type { RegistryCounters };

/** Why an instance left the registry. */
export type RemovalReason = "deregistered" | "expired" | "down";

export const REMOVAL_REASONS: readonly RemovalReason[] = ["deregistered", "expired", "down"];

/** What a server registers. */
export interface Registration {
  service: string;
  host: string;
  port: number;
  ttlMs: number;
  meta?: Record<string, unknown>;
  /** Length of `meta` as JSON text, when known (else measured once, on registration). */
  metaSize?: number;
}

/** One instance at one version: live, or a tombstone when `removed` is set. */
export interface Entry extends Registration {
  /** `service@host:port`: the same instance always has the same id. */
  readonly id: string;
  readonly stamp: Stamp;
  readonly removed?: RemovalReason;
  /** When the lease ends, in this process's monotonic milliseconds (0 for tombstones). */
  readonly expiresAt: number;
}

/** An entry as another binder sent it: the lease is what was left of it there. */
export type Incoming = Omit<Entry, "expiresAt"> & { leftMs: number };

/**
 * Called for every change of an entry: `local` is true for changes made
 * here (to be pushed to peers), false for changes merged from a peer.
 */
export type ChangeListener = (entry: Entry, previous: Entry | undefined, local: boolean) => void;

export interface RegistryOptions {
  clock: HybridClock;
  /** Monotonic milliseconds, for leases (default `performance.now`). */
  now?: () => number;
  /** Wall-clock milliseconds, for the age of tombstones (default `Date.now`). */
  wallNow?: () => number;
  /** How long a tombstone is kept (ms). */
  tombstoneMs?: number;
  /**
   * Most live instances; a new registration beyond is OVERLOADED. Live
   * instances new to this binder that come from peers may fill it only up to
   * `maxEntries` less a tenth (see {@link Registry.mergeLimit}).
   */
  maxEntries?: number;
  /**
   * Most tombstones (default `maxEntries`); one more takes the place of one
   * of the source holding the most (tombstones.ts), counted `tombstones_evicted`.
   */
  maxTombstones?: number;
  /**
   * How far ahead of this machine's clock a peer's version may be (ms); a
   * version further ahead is refused, so one bad clock (or a forged version)
   * cannot drag every binder's clock into the future.
   */
  maxSkewMs?: number;
}

export const DEFAULT_TOMBSTONE_MS = 60_000;
export const DEFAULT_MAX_ENTRIES = 100_000;
export const DEFAULT_MAX_SKEW_MS = 60_000;

/** The id of an instance: `service@host:port` (IPv6 hosts in brackets). */
export function instanceId(service: string, host: string, port: number): string {
  return `${service}@${host.includes(":") ? `[${host}]` : host}:${port}`;
}

/** A binder's registry. See the module comment. */
export class Registry {
  readonly clock: HybridClock;
  readonly tombstoneMs: number;
  readonly maxEntries: number;
  readonly maxTombstones: number;
  readonly maxSkewMs: number;
  /**
   * Most live instances that merging from peers may bring the registry to:
   * `maxEntries` less a reserve of a tenth (at least one) that only
   * registrations made here can take. So peers (or anything that speaks as
   * one) can never lock servers out of registering with this binder.
   */
  readonly mergeLimit: number;
  readonly counters: RegistryCounters = newCounters();
  #now: () => number;
  #wallNow: () => number;
  #entries = new Map<string, Entry>();
  #tombstones: Tombstones;
  #rings = new Rings((id) => this.#entries.get(id)!);
  #digest = new Digest();
  #listeners: ChangeListener[] = [];
  #collectListeners: ((tombstone: Entry) => void)[] = [];
  #suspects = new Set<string>();
  #live = 0;
  /** Who registered each live instance (`peer:ADDRESS` for a peer's), charged its tombstone. */
  #sourceOf = new Map<string, string>();

  constructor(options: RegistryOptions) {
    this.clock = options.clock;
    this.#now = options.now ?? (() => performance.now());
    this.#wallNow = options.wallNow ?? Date.now;
    this.tombstoneMs = options.tombstoneMs ?? DEFAULT_TOMBSTONE_MS;
    this.#tombstones = new Tombstones(this.tombstoneMs);
    this.maxEntries = options.maxEntries ?? DEFAULT_MAX_ENTRIES;
    this.maxTombstones = options.maxTombstones ?? this.maxEntries;
    this.maxSkewMs = options.maxSkewMs ?? DEFAULT_MAX_SKEW_MS;
    this.mergeLimit = this.maxEntries - Math.max(1, Math.ceil(this.maxEntries / 10));
  }

  /** Calls `listener` on every change (see {@link ChangeListener}). */
  onChange(listener: ChangeListener): void {
    this.#listeners.push(listener);
  }

  /** Calls `listener` for every tombstone collected (see {@link sweep}). */
  onCollect(listener: (tombstone: Entry) => void): void {
    this.#collectListeners.push(listener);
  }

  get digest(): Digest {
    return this.#digest;
  }

  /** Live instances (leases not yet collected by {@link sweep}). */
  get liveCount(): number {
    return this.#live;
  }

  get tombstoneCount(): number {
    return this.#tombstones.size;
  }

  /** The source a tombstone is counted for (see tombstones.ts). */
  tombstoneSource(id: string): string | undefined {
    return this.#tombstones.sourceOf(id);
  }

  get serviceCount(): number {
    return this.#rings.size;
  }

  /** The entry with this id, live or tombstone. */
  get(id: string): Entry | undefined {
    return this.#entries.get(id);
  }

  /** Whether an entry is live and its lease has not run out. */
  isLive(entry: Entry): boolean {
    return entry.removed === undefined && entry.expiresAt > this.#now();
  }

  /**
   * Registers an instance, or refreshes it (a new version, a new lease) when it exists.
   * @param source who registers it (the tombstone it may leave is counted for them)
   * @throws {DistError} OVERLOADED when `maxEntries` instances are live (tombstones count not)
   */
  register(reg: Registration, source = ""): Entry {
    const id = instanceId(reg.service, reg.host, reg.port);
    const previous = this.#entries.get(id);
    if (
      (previous === undefined || previous.removed !== undefined) && this.#live >= this.maxEntries
    ) {
      throw new DistError("OVERLOADED", `Registry full: ${this.maxEntries} live instances`);
    }
    if (previous === undefined || previous.removed !== undefined) this.#sourceOf.set(id, source);
    const entry: Entry = {
      id,
      service: reg.service,
      host: reg.host,
      port: reg.port,
      ttlMs: reg.ttlMs,
      ...(reg.meta !== undefined
        ? { meta: reg.meta, metaSize: reg.metaSize ?? JSON.stringify(reg.meta).length }
        : {}),
      stamp: this.clock.now(),
      expiresAt: this.#now() + reg.ttlMs,
    };
    this.counters.registrations++;
    this.#apply(entry, true);
    return entry;
  }

  /**
   * Extends a live instance's lease by its TTL.
   * @throws {DistError} NOT_FOUND when the instance is unknown, removed or
   *   its lease already ran out: the server must register again
   */
  renew(id: string): Entry {
    const previous = this.#entries.get(id);
    if (previous === undefined || !this.isLive(previous)) {
      const why = previous === undefined ? "unknown" : previous.removed ?? "expired";
      throw new DistError("NOT_FOUND", `Instance ${id} is ${why}: register again`);
    }
    const entry: Entry = {
      ...previous,
      stamp: this.clock.now(),
      expiresAt: this.#now() + previous.ttlMs,
    };
    this.counters.renewals++;
    this.#apply(entry, true);
    return entry;
  }

  /**
   * Removes an instance, leaving a tombstone.
   * @returns the tombstone (the existing one if it was removed already), or
   *   undefined when the id was never known
   */
  remove(id: string, reason: RemovalReason): Entry | undefined {
    const previous = this.#entries.get(id);
    if (previous === undefined || previous.removed !== undefined) return previous;
    const { expiresAt: _, ...rest } = previous;
    // An expiry is versioned as of the lease's end, not of the sweep that found it: a binder
    // that ran late (frozen, paused, its loop blocked) must not outdate the renewals its peers
    // took meanwhile (hostile47 Q1: its tombstones removed live instances everywhere).
    const stamp = reason === "expired" ? this.#expiryStamp(previous.stamp) : this.clock.now();
    const entry: Entry = { ...rest, stamp, removed: reason, expiresAt: 0 };
    if (reason === "expired") this.counters.expirations++;
    else this.counters.removals++;
    this.#apply(entry, true);
    return entry;
  }

  /**
   * The next live instance of `service`, cyclically in id order. Instances
   * under verification (see {@link setSuspect}) are handed out only when no
   * other is live.
   * @throws {DistError} NOT_FOUND when the service has no live instance
   */
  lookup(service: string): Entry {
    this.counters.lookups++;
    const entry = this.#rings.next(service, this.#now(), this.#suspects);
    if (entry !== undefined) return entry;
    throw new DistError("NOT_FOUND", `No instance of service ${JSON.stringify(service)}`);
  }

  /** Live instances of `service` (of every service when undefined), in id order. */
  instances(service?: string): Entry[] {
    return this.page(service, undefined, Infinity, Infinity).entries;
  }

  /**
   * Live instances of one service (of every service when undefined) in
   * service, then id order, from just after the instance `after`: at most
   * `limit` of them, and no more than fit `budget` by `entryWeight` (rings.ts)
   * (at least one).
   * @returns the entries, and the id to pass as `after` for the rest (none: no more)
   */
  page(
    service: string | undefined,
    after: string | undefined,
    limit: number,
    budget: number,
  ): { entries: Entry[]; next?: string } {
    return this.#rings.page(service, after, limit, budget, this.#now());
  }

  /** The total `entryWeight` of `service`'s live instances, stopping once past `max`. */
  weightOf(service: string, max: number): number {
    return this.#rings.weightOf(service, max, this.#now());
  }

  /** Every entry, tombstones included (for a full snapshot). */
  entries(): IterableIterator<Entry> {
    return this.#entries.values();
  }

  /** Marks an instance as being verified (or not any more). */
  setSuspect(id: string, suspect: boolean): void {
    if (suspect) this.#suspects.add(id);
    else this.#suspects.delete(id);
  }

  /**
   * Merges an entry from another binder: taken if its version is newer than
   * ours (last writer wins), ignored otherwise; refused if its version is
   * more than `maxSkewMs` ahead of this machine's clock, and skipped (counted
   * as `overflow`) if it is new here and the registry holds `mergeLimit`
   * entries already.
   * @returns whether it changed the registry
   */
  merge(incoming: Incoming, from = "peer"): boolean {
    if (incoming.stamp[0] > this.#wallNow() + this.maxSkewMs) {
      this.counters.skewed++;
      return false;
    }
    this.clock.observe(incoming.stamp);
    const previous = this.#entries.get(incoming.id);
    if (previous !== undefined && compareStamps(incoming.stamp, previous.stamp) <= 0) {
      this.counters.stale++;
      return false;
    }
    if (previous === undefined && incoming.removed !== undefined && this.#collectable(incoming)) {
      // A tombstone so old that it would be collected at once; nothing to remove here.
      return false;
    }
    const wasLive = previous !== undefined && previous.removed === undefined;
    if (incoming.removed === undefined && !wasLive && this.#live >= this.mergeLimit) {
      // Tombstones count not: one client's short leases left a minute's tombstones each, filled
      // the peers, and hid every server registered elsewhere meanwhile (hostile46c F9).
      this.counters.overflow++;
      return false;
    }
    // Counted for the peer: a tombstone new here, or a lease it may later leave one of.
    if (previous === undefined || (incoming.removed === undefined && !wasLive)) {
      this.#sourceOf.set(incoming.id, `peer:${from}`);
    }
    const { leftMs, ...rest } = incoming;
    const entry: Entry = {
      ...rest,
      expiresAt: incoming.removed !== undefined ? 0 : this.#now() + Math.max(0, leftMs),
    };
    this.counters.merged++;
    this.#apply(entry, false);
    return true;
  }

  /**
   * Puts back an entry this binder held before a restart (read from its data
   * directory): as a merge, without the checks meant for peers, and counted
   * as nothing. A tombstone old enough to be collected is left out.
   * @returns whether it was put back
   */
  restore(incoming: Incoming): boolean {
    if (incoming.removed !== undefined && this.#collectable(incoming)) return false;
    this.clock.observe(incoming.stamp);
    const previous = this.#entries.get(incoming.id);
    if (previous !== undefined && compareStamps(incoming.stamp, previous.stamp) <= 0) return false;
    const { leftMs, ...rest } = incoming;
    const entry: Entry = {
      ...rest,
      expiresAt: incoming.removed !== undefined ? 0 : this.#now() + Math.max(0, leftMs),
    };
    this.#apply(entry, false);
    return true;
  }

  /** Milliseconds left of a live entry's lease (0 when run out or removed). */
  leftMs(entry: Entry): number {
    return entry.removed !== undefined ? 0 : Math.max(0, Math.round(entry.expiresAt - this.#now()));
  }

  /**
   * Expires instances whose lease ran out (each becomes a tombstone, a local
   * change) and collects tombstones older than `tombstoneMs`.
   * @returns the number of instances expired
   */
  sweep(): number {
    const now = this.#now();
    let expired = 0;
    for (const entry of this.#entries.values()) {
      if (entry.removed === undefined) {
        if (entry.expiresAt <= now) {
          this.remove(entry.id, "expired");
          expired++;
        }
      } else if (this.#collectable(entry)) {
        this.#collect(entry);
      }
    }
    return expired;
  }

  /**
   * An expiry's version: just after the version whose lease it ended, whatever the clocks (a
   * binder that ran late, or whose clock runs ahead, cannot outdate renewals taken elsewhere
   * since: hostile47 Q1, review r47 R1).
   */
  #expiryStamp(last: Stamp): Stamp {
    if (last[1] < MAX_LOGICAL) return [last[0], last[1] + 1, this.clock.node];
    return [last[0] + 1, 0, this.clock.node];
  }

  /** Forgets a tombstone. */
  #collect(entry: Entry): void {
    this.#sourceOf.delete(entry.id);
    this.#entries.delete(entry.id);
    this.#tombstones.delete(entry.id);
    this.#digest.remove(entry.id, entry.stamp, entry.removed);
    for (const listener of this.#collectListeners) listener(entry);
  }

  /** Kept its lease and `tombstoneMs` past its version (hostile47 Q6: a lease outlived it). */
  #collectable(entry: { stamp: Stamp; ttlMs: number }): boolean {
    return entry.stamp[0] + Math.min(entry.ttlMs, MAX_TTL_MS) + this.tombstoneMs < this.#wallNow();
  }

  #apply(entry: Entry, local: boolean): void {
    const previous = this.#entries.get(entry.id);
    this.#entries.set(entry.id, entry);
    if (previous !== undefined) {
      this.#digest.remove(previous.id, previous.stamp, previous.removed);
    }
    this.#digest.add(entry.id, entry.stamp, entry.removed);
    const wasLive = previous !== undefined && previous.removed === undefined;
    const isLive = entry.removed === undefined;
    // Kept in order of removal: a tombstone changed again moves to the end. A new one past the
    // budget takes the place of one of the source holding the most (perhaps its own).
    if (!isLive && (previous === undefined || wasLive)) {
      const source = this.#sourceOf.get(entry.id) ?? "";
      this.#sourceOf.delete(entry.id);
      if (this.#tombstones.size >= this.maxTombstones) {
        const evicted = this.#tombstones.evictable();
        if (evicted !== undefined) {
          this.#collect(evicted);
          this.counters.tombstones_evicted++;
        }
      }
      this.#tombstones.set(entry.id, entry, source);
    } else this.#tombstones.set(entry.id, isLive ? undefined : entry, "");
    if (wasLive && !isLive) {
      this.#live--;
      this.#suspects.delete(entry.id);
      this.#rings.delete(entry);
    } else if (!wasLive && isLive) {
      this.#live++;
      this.#rings.add(entry);
    }
    for (const listener of this.#listeners) listener(entry, previous, local);
  }
}
