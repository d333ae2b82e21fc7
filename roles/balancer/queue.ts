/**
 * The waiting lines of requests that no backend can take yet.
 *
 * {@link WaitQueue} is a FIFO ring buffer with a hard limit (the retries'
 * line). Overflow policy: `push` refuses (the caller answers OVERLOADED at
 * once); `unshift` may pass the limit.
 *
 * {@link FairQueue} is the line of new requests: one FIFO per client
 * connection (a flow), served in turn, one request per flow per turn, so a
 * request waits behind one request of each other client, not behind
 * another client's backlog; when it is full, the client with the most
 * waiting loses its last request rather than another client being refused
 * (fq_codel's drop from the fattest flow).
 */
/**
 * Heads a new request looks at while no waiting request may go (forward.ts
 * #stalled): the rotation still moves, and what closed connections left
 * waiting is dropped at about the pace requests come.
 */
export const STALLED_STEPS = 4;

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

/** What the fair queue needs of an item. */
export interface FairItem {
  /** Whose request it is (the client connection); undefined: one shared flow. */
  readonly flow?: object;
  /** When it stops waiting (ms, the owner's clock); set before `push`. */
  deadline: number;
  /** The bytes it counts against the byte budget; set before `push`. */
  queuedBytes: number;
  /** The line it waits in, while it does (the queue's own mark). */
  line?: Flow<FairItem>;
}

/** One client's waiting requests. */
export class Flow<T> {
  readonly items = new WaitQueue<T>(Infinity);
  bytes = 0;
  /** Whether it is in the rotation (it may be, empty, until its turn comes). */
  inTurn = false;
  /** Its place in the queue's heap by bytes (-1: not there). */
  at = -1;
  constructor(readonly key: object) {}
}

/**
 * The waiting flows by what they hold, so that a full queue finds the
 * fattest in a few steps however many wait (a walk over every flow at each
 * push cost 63 µs with 10,000 flows waiting, hostile42a Y4): by count, a
 * set of flows per length and the longest length; by bytes, a max-heap.
 */
class Fatness<T> {
  #byCount: (Set<Flow<T>> | undefined)[] = [];
  #most = 0;
  #heap: Flow<T>[] = [];

  /** `flow`, which held `before` items, holds what it holds now. */
  moved(flow: Flow<T>, before: number): void {
    const after = flow.items.length;
    if (before !== after) {
      if (before > 0) this.#byCount[before]?.delete(flow);
      if (after > 0) (this.#byCount[after] ??= new Set()).add(flow);
      if (after > this.#most) this.#most = after;
      while (this.#most > 0 && (this.#byCount[this.#most]?.size ?? 0) === 0) this.#most--;
    }
    if (after === 0) this.#remove(flow);
    else if (flow.at < 0) {
      flow.at = this.#heap.length;
      this.#heap.push(flow);
      this.#up(flow.at);
    } else this.#down(this.#up(flow.at));
  }

  /** The flow holding the most items (or bytes), if any holds some. */
  fattest(byBytes: boolean): Flow<T> | undefined {
    if (!byBytes) {
      const most = this.#byCount[this.#most];
      return most === undefined ? undefined : most.values().next().value;
    }
    const top = this.#heap[0];
    return top !== undefined && top.bytes > 0 ? top : undefined;
  }

  clear(): void {
    for (const flow of this.#heap) flow.at = -1;
    this.#byCount = [];
    this.#most = 0;
    this.#heap = [];
  }

  #remove(flow: Flow<T>): void {
    const i = flow.at;
    if (i < 0) return;
    flow.at = -1;
    const last = this.#heap.pop()!;
    if (last === flow) return;
    this.#heap[i] = last;
    last.at = i;
    this.#down(this.#up(i));
  }

  #up(i: number): number {
    const heap = this.#heap;
    const flow = heap[i];
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (heap[p].bytes >= flow.bytes) break;
      heap[i] = heap[p];
      heap[i].at = i;
      i = p;
    }
    heap[i] = flow;
    flow.at = i;
    return i;
  }

  #down(i: number): void {
    const heap = this.#heap;
    const flow = heap[i];
    for (;;) {
      let c = 2 * i + 1;
      if (c >= heap.length) break;
      if (c + 1 < heap.length && heap[c + 1].bytes > heap[c].bytes) c++;
      if (heap[c].bytes <= flow.bytes) break;
      heap[i] = heap[c];
      heap[i].at = i;
      i = c;
    }
    heap[i] = flow;
    flow.at = i;
  }
}

/** What waits ahead of a new item (see FairQueue.ahead). */
export type Ahead = "none" | "others" | "line";

/** Why the fair queue refused an item. */
export type Refusal = "count" | "bytes";

const SHARED_FLOW = {};

export class FairQueue<T extends FairItem> {
  readonly limit: number;
  readonly byteLimit: number;
  #flows = new Map<object, Flow<T>>();
  /** Flows with items, in turn order (lazily: an emptied flow leaves at its turn). */
  #turns = new WaitQueue<Flow<T>>(Infinity);
  /**
   * Every item in arrival order, for expiry (deadlines grow along it). Items
   * that left early stay until they reach the head, where they are dropped:
   * the line holds at most what arrived within one queue timeout.
   */
  #arrivals = new WaitQueue<T>(Infinity);
  #size = 0;
  #bytes = 0;
  #fatness = new Fatness<T>();

  constructor(limit: number, byteLimit: number) {
    this.limit = limit;
    this.byteLimit = byteLimit;
  }

  get length(): number {
    return this.#size;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** Clients with requests waiting. */
  get flows(): number {
    return this.#flows.size;
  }

  /**
   * Appends `item` (its deadline and queuedBytes set) at the tail of its
   * flow. When the queue is full (in count or bytes), the flow holding the
   * most gives up its last items to make room, unless that is the item's own
   * flow: then the item is refused.
   * @param evicted gets each item dropped to make room (the caller fails
   * them once this returns: failing one may queue more)
   * @returns why the item was refused, or undefined when it was queued
   */
  push(item: T, evicted: T[]): Refusal | undefined {
    const key = item.flow ?? SHARED_FLOW;
    const own = this.#flows.get(key);
    const limit = this.limit;
    const byteLimit = this.byteLimit;
    while (this.#size + 1 > limit || this.#bytes + item.queuedBytes > byteLimit) {
      const byBytes = this.#size + 1 <= limit;
      if (item.queuedBytes > byteLimit || limit === 0) return byBytes ? "bytes" : "count";
      const fattest = this.#fatness.fattest(byBytes);
      const mine = byBytes ? (own?.bytes ?? 0) + item.queuedBytes : (own?.items.length ?? 0) + 1;
      const theirs = fattest === undefined ? 0 : byBytes ? fattest.bytes : fattest.items.length;
      if (fattest === undefined || fattest === own || theirs <= mine) {
        return byBytes ? "bytes" : "count";
      }
      const victim = fattest.items.pop()!;
      this.#left(fattest, victim);
      evicted.push(victim);
    }
    let flow = own;
    if (flow === undefined) {
      flow = new Flow<T>(key);
      this.#flows.set(key, flow);
    }
    flow.items.push(item);
    flow.bytes += item.queuedBytes;
    this.#fatness.moved(flow, flow.items.length - 1);
    item.line = flow as Flow<FairItem>;
    this.#size++;
    this.#bytes += item.queuedBytes;
    if (!flow.inTurn) {
      flow.inTurn = true;
      this.#turns.push(flow);
    }
    this.#arrivals.push(item);
    return undefined;
  }

  /** The item whose turn it is, without taking it. */
  peek(): T | undefined {
    for (let flow = this.#turns.peek(); flow !== undefined; flow = this.#turns.peek()) {
      const head = flow.items.peek();
      if (head !== undefined) return head;
      this.#turns.shift();
      flow.inTurn = false;
    }
    return undefined;
  }

  /** Takes the item `peek` gave; its flow's turn passes to the next. */
  shift(): T | undefined {
    const item = this.peek();
    if (item === undefined) return undefined;
    const flow = this.#turns.shift()!;
    flow.items.shift();
    this.#left(flow, item);
    if (flow.items.length > 0) this.#turns.push(flow);
    else flow.inTurn = false;
    this.#trimArrivals();
    return item;
  }

  /**
   * Takes `item`, the only item of its flow, out of turn (the dispatcher
   * found every other flow unable to send: forward.ts). Its flow leaves the
   * rotation at its turn.
   */
  takeAlone(item: T): void {
    const flow = item.line as Flow<T>;
    flow.items.shift();
    this.#left(flow, item);
    this.#trimArrivals();
  }

  /**
   * The flow whose turn it is passes it, keeping its items (its client has
   * its share on the backends already: shares.ts).
   */
  pass(): void {
    if (this.peek() === undefined) return;
    this.#turns.push(this.#turns.shift()!);
  }

  /**
   * What waits ahead of a new item of the flow `key` (undefined: the shared
   * one), with `retries` items in a line served before this one: nothing,
   * items of other flows only, or items of its own flow or retries.
   */
  ahead(key: object | undefined, retries: number): Ahead {
    if (retries > 0) return "line";
    if (this.#size === 0) return "none";
    return this.#flows.has(key ?? SHARED_FLOW) ? "line" : "others";
  }

  /** Whether the flow `key` (undefined: the shared one) has items waiting. */
  waiting(key: object | undefined): boolean {
    return this.#flows.has(key ?? SHARED_FLOW);
  }

  /** The earliest deadline of an item waiting (Infinity when none). */
  get nextDeadline(): number {
    this.#trimArrivals();
    return this.#arrivals.peek()?.deadline ?? Infinity;
  }

  /**
   * Takes the items whose deadline is at or before `now` into `expired`,
   * oldest first (the caller fails them once this returns).
   */
  expire(now: number, expired: T[]): void {
    this.#trimArrivals();
    for (let item = this.#arrivals.peek(); item !== undefined; item = this.#arrivals.peek()) {
      if (item.deadline > now) return;
      this.#arrivals.shift();
      // The oldest waiting item of all is the oldest of its flow: its head.
      const flow = item.line as Flow<T>;
      flow.items.shift();
      this.#left(flow, item);
      expired.push(item);
      this.#trimArrivals();
    }
  }

  /** Takes every item, in arrival order. */
  drain(): T[] {
    const out: T[] = [];
    for (let item = this.#arrivals.shift(); item !== undefined; item = this.#arrivals.shift()) {
      if (item.line === undefined) continue;
      this.#left(item.line as Flow<T>, item);
      out.push(item);
    }
    this.#flows.clear();
    this.#turns.drain();
    this.#fatness.clear();
    return out;
  }

  /** `item` left `flow` (taken, expired or evicted). */
  #left(flow: Flow<T>, item: T): void {
    item.line = undefined;
    flow.bytes -= item.queuedBytes;
    this.#size--;
    this.#bytes -= item.queuedBytes;
    this.#fatness.moved(flow, flow.items.length + 1);
    if (flow.items.length === 0 && this.#flows.get(flow.key) === flow) this.#flows.delete(flow.key);
  }

  /** Drops the items at the head of the arrivals that no longer wait. */
  #trimArrivals(): void {
    const arrivals = this.#arrivals;
    for (
      let item = arrivals.peek();
      item !== undefined && item.line === undefined;
      item = arrivals.peek()
    ) {
      arrivals.shift();
    }
  }
}
