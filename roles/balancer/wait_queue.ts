/**
 * A FIFO ring buffer with a hard limit (queue.ts: the retries' line, and
 * each flow's line of the fair queue). Overflow policy: `push` refuses (the
 * caller answers OVERLOADED at once); `unshift` may pass the limit.
 */

/** Slots a {@link WaitQueue} starts with (it doubles when full). */
const INITIAL_SLOTS = 8;

export class WaitQueue<T> {
  readonly limit: number;
  #items: (T | undefined)[];
  #head = 0;
  #size = 0;

  constructor(limit: number) {
    this.limit = limit;
    // Small at first: a client's line is made each time it begins to wait (1,024 slots
    // each time were 6 % of the balancer's time, and as much again in GC, under attack).
    this.#items = new Array(Math.min(Math.max(limit, 1), INITIAL_SLOTS));
  }

  get length(): number {
    return this.#size;
  }

  /** Appends at the tail. @returns false (and keeps nothing) when full. */
  push(item: T): boolean {
    if (this.#size >= this.limit) return false;
    this.#grow();
    this.#items[(this.#head + this.#size) % this.#items.length] = item;
    this.#size++;
    return true;
  }

  /** Puts an item back at the head, limit or not (see the module note). */
  unshift(item: T): void {
    this.#grow();
    this.#head = (this.#head - 1 + this.#items.length) % this.#items.length;
    this.#items[this.#head] = item;
    this.#size++;
  }

  /** The head, without taking it. */
  peek(): T | undefined {
    return this.#size === 0 ? undefined : this.#items[this.#head];
  }

  /** Takes the head. */
  shift(): T | undefined {
    if (this.#size === 0) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head] = undefined;
    this.#head = (this.#head + 1) % this.#items.length;
    this.#size--;
    return item;
  }

  /** Takes the tail. */
  pop(): T | undefined {
    if (this.#size === 0) return undefined;
    const at = (this.#head + this.#size - 1) % this.#items.length;
    const item = this.#items[at];
    this.#items[at] = undefined;
    this.#size--;
    return item;
  }

  /** Takes every item, head first. */
  drain(): T[] {
    const out: T[] = [];
    for (let item = this.shift(); item !== undefined; item = this.shift()) out.push(item);
    return out;
  }

  /** Doubles the ring when full; the ring starts small and grows with use only. */
  #grow(): void {
    const items = this.#items;
    if (this.#size < items.length) return;
    const grown: (T | undefined)[] = new Array(items.length * 2);
    for (let i = 0; i < this.#size; i++) grown[i] = items[(this.#head + i) % items.length];
    this.#items = grown;
    this.#head = 0;
  }
}
