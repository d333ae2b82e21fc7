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
  /** What the filters' text takes, in all. */
  bytes = 0;
  /** Told when `bytes` changes. */
  readonly #onBytes: () => void;

  constructor(onBytes: () => void = () => {}) {
    this.#onBytes = onBytes;
  }

  #count(filter: string, sign: 1 | -1): void {
    this.bytes += sign * filterBytes(filter);
    this.#onBytes();
  }

  get size(): number {
    return this.#map?.size ?? (this.#sub === undefined ? 0 : 1);
  }

  get(filter: string): Subscription | undefined {
    if (this.#map !== undefined) return this.#map.get(filter);
    return filter === this.#filter ? this.#sub : undefined;
  }

  set(filter: string, sub: Subscription): void {
    if (this.get(filter) === undefined) this.#count(filter, 1);
    if (this.#map !== undefined) {
      this.#map.set(filter, sub);
    } else if (this.#sub === undefined || filter === this.#filter) {
      this.#filter = filter;
      this.#sub = sub;
    } else {
      this.#map = new Map([[this.#filter, this.#sub], [filter, sub]]);
      this.#filter = "";
      this.#sub = undefined;
    }
  }

  delete(filter: string): boolean {
    if (this.#map !== undefined) {
      if (!this.#map.delete(filter)) return false;
    } else {
      if (this.#sub === undefined || filter !== this.#filter) return false;
      this.#filter = "";
      this.#sub = undefined;
    }
    this.#count(filter, -1);
    return true;
  }

  *values(): IterableIterator<Subscription> {
    for (const [, sub] of this) yield sub;
  }

  *[Symbol.iterator](): IterableIterator<[string, Subscription]> {
    if (this.#map !== undefined) yield* this.#map;
    else if (this.#sub !== undefined) yield [this.#filter, this.#sub];
  }
}
