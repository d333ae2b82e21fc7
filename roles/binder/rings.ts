/**
 * The live instances of each service, in id order: what lookups go round
 * (a cursor per service) and what lists are paged from. The registry keeps
 * every version and tombstone; this index holds only the ids of live
 * instances and is told of each change by the registry.
 */
import type { Entry } from "./registry.ts";

/**
 * About how many bytes an entry takes in an answer or a record (JSON text,
 * with room for its fields' names): for cutting lists into pages that fit a
 * frame without encoding them first.
 */
export function entryWeight(entry: Entry): number {
  const meta = entry.metaSize ?? (entry.meta === undefined ? 0 : JSON.stringify(entry.meta).length);
  return 100 + entry.id.length + entry.service.length + entry.host.length + meta;
}

/** The live instances of one service, in id order, and the lookup cursor. */
class Ring {
  ids = new Set<string>();
  #sorted: string[] | undefined;
  next = 0;

  add(id: string): void {
    this.ids.add(id);
    this.#sorted = undefined;
  }

  delete(id: string): void {
    this.ids.delete(id);
    this.#sorted = undefined;
  }

  get sorted(): string[] {
    return this.#sorted ??= [...this.ids].sort();
  }
}

/** The rings of every service with a live instance; see the module comment. */
export class Rings {
  #rings = new Map<string, Ring>();
  /** The services with a live instance, sorted (undefined: to be sorted again). */
  #services: string[] | undefined;
  #get: (id: string) => Entry;

  /** @param get the registry's entry of an id this index holds */
  constructor(get: (id: string) => Entry) {
    this.#get = get;
  }

  /** Services with a live instance. */
  get size(): number {
    return this.#rings.size;
  }

  /** An instance became live. */
  add(entry: Entry): void {
    let ring = this.#rings.get(entry.service);
    if (ring === undefined) {
      this.#rings.set(entry.service, ring = new Ring());
      this.#services = undefined;
    }
    ring.add(entry.id);
  }

  /** An instance is live no more. */
  delete(entry: Entry): void {
    const ring = this.#rings.get(entry.service)!;
    ring.delete(entry.id);
    if (ring.ids.size === 0) {
      this.#rings.delete(entry.service);
      this.#services = undefined;
    }
  }

  /**
   * The next instance of `service` whose lease runs past `now`, cyclically
   * in id order; one in `avoid` only when no other is left.
   */
  next(service: string, now: number, avoid: ReadonlySet<string>): Entry | undefined {
    const ring = this.#rings.get(service);
    if (ring === undefined) return undefined;
    const ids = ring.sorted;
    const n = ids.length;
    let fallback = -1;
    for (let k = 0; k < n; k++) {
      const i = (ring.next + k) % n;
      const entry = this.#get(ids[i]);
      if (entry.expiresAt <= now) continue;
      if (avoid.size > 0 && avoid.has(entry.id)) {
        if (fallback < 0) fallback = i;
        continue;
      }
      ring.next = (i + 1) % n;
      return entry;
    }
    if (fallback < 0) return undefined;
    ring.next = (fallback + 1) % n;
    return this.#get(ids[fallback]);
  }

  /**
   * Instances of one service (of every service when undefined) whose lease
   * runs past `now`, in service, then id order, from just after the
   * instance `after`: at most `limit` of them, and no more than fit
   * `budget` by {@link entryWeight} (at least one).
   * @returns the entries, and the id to pass as `after` for the rest (none: no more)
   */
  page(
    service: string | undefined,
    after: string | undefined,
    limit: number,
    budget: number,
    now: number,
  ): { entries: Entry[]; next?: string } {
    const services = service === undefined
      ? (this.#services ??= [...this.#rings.keys()].sort())
      : this.#rings.has(service)
      ? [service]
      : [];
    // The id is service@host:port, and a service name has no "@".
    const at = after?.indexOf("@") ?? -1;
    const afterService = after === undefined ? undefined : at < 0 ? after : after.slice(0, at);
    const out: Entry[] = [];
    let used = 0;
    for (
      let s = afterService === undefined ? 0 : searchSorted(services, afterService);
      s < services.length;
      s++
    ) {
      const ids = this.#rings.get(services[s])!.sorted;
      const from = services[s] === afterService ? searchSorted(ids, after!, true) : 0;
      for (let i = from; i < ids.length; i++) {
        const entry = this.#get(ids[i]);
        if (entry.expiresAt <= now) continue;
        const w = entryWeight(entry);
        if (out.length >= limit || (out.length > 0 && used + w > budget)) {
          return { entries: out, next: out[out.length - 1].id };
        }
        out.push(entry);
        used += w;
      }
    }
    return { entries: out };
  }

  /** The total {@link entryWeight} of `service`'s live instances, stopping once past `max`. */
  weightOf(service: string, max: number, now: number): number {
    const ring = this.#rings.get(service);
    if (ring === undefined) return 0;
    let total = 0;
    for (const id of ring.ids) {
      const entry = this.#get(id);
      if (entry.expiresAt > now) total += entryWeight(entry);
      if (total > max) break;
    }
    return total;
  }
}

/**
 * The first index of sorted `xs` whose item is past `x`: at least `x`, or
 * with `after`, greater than `x` (a binary search).
 */
function searchSorted(xs: readonly string[], x: string, after = false): number {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (xs[mid] < x || (after && xs[mid] === x)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
