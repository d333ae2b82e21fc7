/**
 * A session's subscriptions by MQTT filter. Most sessions hold one (a sensor,
 * a dashboard's topic): that one is kept in two fields, and a Map is made
 * only at the second — a Map and its table cost an idle connection about
 * 350 bytes (issue 18: memory per idle connection). What its filters' text
 * takes is counted ({@link bytes}): a persistent session counts it in
 * max-memory (hostile review 38 L3).
 */
import type { Subscription } from "../subscriber.ts";

/** What a filter's text takes (V8 strings: at most 2 bytes a UTF-16 unit). */
function filterBytes(filter: string): number {
  return 2 * filter.length;
}

export class SubsByFilter {
  #filter = "";
  #sub: Subscription | undefined;
  #map: Map<string, Subscription> | undefined;
  /** With the map: each subscription's filter (the journal's lookup, O(1): hostile review 39b Q3). */
  #filters: Map<Subscription, string> | undefined;
  /** What the filters' text takes, in all. */
  bytes = 0;
  /** Unsubscribed ones still delivering what they queued (session.ts unsubscribeFilters). */
  leaving: Set<Subscription> | undefined;
  /** Told when `bytes` changes. */
  readonly #onBytes: () => void;

  constructor(onBytes: () => void = () => {}) {
    this.#onBytes = onBytes;
  }

  #count(filter: string, sign: 1 | -1): void {
    this.bytes += sign * filterBytes(filter);
    this.#onBytes();
  }

  /** `sub`, deleted from these, delivers what it queued until `cut` is told it is cut; then `done`. */
  drainOut(sub: Subscription, cut: (drained: () => void) => void, done: () => void): void {
    (this.leaving ??= new Set()).add(sub);
    cut(() => {
      this.leaving!.delete(sub);
      done();
      // The others waited behind it (Sink.draining): they go on.
      if (this.leaving!.size === 0) { for (const other of this.values()) other.goOn(); }
    });
  }

  /** Whether one of them, unsubscribed, still delivers what it queued (see drainOut). */
  get draining(): boolean {
    return (this.leaving?.size ?? 0) > 0;
  }

  get size(): number {
    return this.#map?.size ?? (this.#sub === undefined ? 0 : 1);
  }

  get(filter: string): Subscription | undefined {
    if (this.#map !== undefined) return this.#map.get(filter);
    return filter === this.#filter ? this.#sub : undefined;
  }

  /** The filter `sub` is held under, if it is one of these. */
  filterOf(sub: Subscription): string | undefined {
    if (this.#filters !== undefined) return this.#filters.get(sub);
    return sub === this.#sub ? this.#filter : undefined;
  }

  set(filter: string, sub: Subscription): void {
    const old = this.get(filter);
    if (old === undefined) this.#count(filter, 1);
    if (this.#map !== undefined) {
      this.#map.set(filter, sub);
      if (old !== undefined) this.#filters!.delete(old);
      this.#filters!.set(sub, filter);
    } else if (this.#sub === undefined || filter === this.#filter) {
      this.#filter = filter;
      this.#sub = sub;
    } else {
      this.#map = new Map([[this.#filter, this.#sub], [filter, sub]]);
      this.#filters = new Map([[this.#sub, this.#filter], [sub, filter]]);
      this.#filter = "";
      this.#sub = undefined;
    }
  }

  /**
   * UNSUBSCRIBE's filters: each one held is deleted and `cut` (`drain`:
   * another is left, which its queue's copies may be for: one_copy.ts,
   * H-B1). Returns the UNSUBACK codes (0x11: there was no such subscription).
   */
  unsubscribe(
    filters: readonly string[],
    cut: (sub: Subscription, drain: boolean) => void,
  ): number[] {
    return filters.map((filter) => {
      const sub = this.get(filter);
      if (sub === undefined) return 0x11;
      this.delete(filter);
      cut(sub, this.size > 0);
      return 0;
    });
  }

  delete(filter: string): boolean {
    if (this.#map !== undefined) {
      const sub = this.#map.get(filter);
      if (sub === undefined) return false;
      this.#map.delete(filter);
      this.#filters!.delete(sub);
    } else {
      if (this.#sub === undefined || filter !== this.#filter) return false;
      this.#filter = "";
      this.#sub = undefined;
    }
    this.#count(filter, -1);
    return true;
  }

  /**
   * Drops the oldest of what its subscriptions hold, subscription by
   * subscription, until `bytes` are freed (the memory guard's trim of a
   * kept session); `trimmed` is told of each subscription trimmed.
   * @returns the bytes freed
   */
  trim(bytes: number, trimmed: (sub: Subscription) => void): number {
    let freed = 0;
    for (const sub of this.values()) {
      freed += freed < bytes ? sub.trim(bytes - freed) : 0;
      trimmed(sub);
    }
    return freed;
  }

  *values(): IterableIterator<Subscription> {
    for (const [, sub] of this) yield sub;
  }

  *[Symbol.iterator](): IterableIterator<[string, Subscription]> {
    if (this.#map !== undefined) yield* this.#map;
    else if (this.#sub !== undefined) yield [this.#filter, this.#sub];
  }
}
