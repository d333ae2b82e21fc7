/**
 * A session's subscriptions by MQTT filter. Most sessions hold one (a sensor,
 * a dashboard's topic): that one is kept in two fields, and a Map is made
 * only at the second — a Map and its table cost an idle connection about
 * 350 bytes (issue 18: memory per idle connection).
 */
import type { Subscription } from "../subscriber.ts";

export class SubsByFilter {
  #filter = "";
  #sub: Subscription | undefined;
  #map: Map<string, Subscription> | undefined;

  get size(): number {
    return this.#map?.size ?? (this.#sub === undefined ? 0 : 1);
  }

  get(filter: string): Subscription | undefined {
    if (this.#map !== undefined) return this.#map.get(filter);
    return filter === this.#filter ? this.#sub : undefined;
  }

  set(filter: string, sub: Subscription): void {
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
    if (this.#map !== undefined) return this.#map.delete(filter);
    if (this.#sub === undefined || filter !== this.#filter) return false;
    this.#filter = "";
    this.#sub = undefined;
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
