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
 * (fq_codel's drop from the fattest flow). A flow that may not send for a
 * reason it shares with other flows (its source has its slots: shares.ts)
 * is parked out of the rotation until something of that reason changes,
 * so a turn looks only at flows that may go (hostile44a H-A7: 2,000 slow
 * connections of one address made every answer walk ~800 waiting flows).
 */
import { Fatness, Flow } from "./fatness.ts";
import { WaitQueue } from "./wait_queue.ts";

export { Flow, WaitQueue };

/**
 * Heads a new request looks at while no waiting request may go (forward.ts
 * #stalled): the rotation still moves, and what closed connections left
 * waiting is dropped at about the pace requests come.
 */
export const STALLED_STEPS = 4;

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

/** What waits ahead of a new item (see FairQueue.ahead). */
export type Ahead = "none" | "others" | "line";

/** Why the fair queue refused an item. */
export type Refusal = "count" | "bytes";

const SHARED_FLOW = {};

/** Parked groups of which one flow tries again at each `tend` (see park). */
const PROBED_GROUPS = 2;
/** Parked flows looked at for a closed connection at each `tend`. */
const SWEPT_FLOWS = 4;

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
  /** Parked flows, by what they wait for (oldest first), the groups in probing order. */
  #parked = new Map<object, WaitQueue<Flow<T>>>();

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

  /** Flows in the rotation (parked ones not; emptied ones until their turn). */
  get turning(): number {
    return this.#turns.length;
  }

  /** Groups with flows parked (see park). */
  get parkedGroups(): number {
    return this.#parked.size;
  }

  /**
   * The flow whose turn it is leaves the rotation, keeping its items, until
   * `unpark(group)` (their items still expire and are shed as others').
   */
  park(group: object): void {
    if (this.peek() === undefined) return;
    const flow = this.#turns.shift()!;
    flow.parked = group;
    let line = this.#parked.get(group);
    if (line === undefined) this.#parked.set(group, line = new WaitQueue(Infinity));
    line.push(flow);
  }

  /**
   * Up to `n` flows parked for `group` (the oldest first) go back to the
   * rotation's tail. @returns how many did
   */
  unpark(group: object, n = Infinity): number {
    const line = this.#parked.get(group);
    if (line === undefined) return 0;
    let back = 0;
    while (back < n) {
      const flow = line.shift();
      if (flow === undefined) break;
      flow.parked = undefined;
      // An emptied one was dropped from the queue meanwhile: a new item makes a new flow.
      if (flow.items.length === 0) flow.inTurn = false;
      else {
        this.#turns.push(flow);
        back++;
      }
    }
    if (line.length === 0) this.#parked.delete(group);
    return back;
  }

  /**
   * One flow of each of up to `groups` parked groups that `may`, taken in
   * turn (twice as many looked at, at most), goes back to the rotation to
   * try again (what it waits for may have changed with others' answers).
   */
  probe(groups: number, may?: (group: object) => boolean): void {
    let looked = 2 * groups;
    for (const [group, line] of this.#parked) {
      if (groups <= 0 || looked-- <= 0) return;
      if (may === undefined || may(group)) {
        this.unpark(group, 1);
        groups--;
      }
      // To the end of the order, so that the next probe tries the next group.
      if (line.length > 0) {
        this.#parked.delete(group);
        this.#parked.set(group, line);
      }
    }
  }

  /**
   * Looks at up to `n` parked flows (of the first group, which then goes
   * last): one whose head is `gone` (its client left) gives up every item
   * into `out`, and no turn was to come to drop them.
   */
  sweep(n: number, gone: (item: T) => boolean, out: T[]): void {
    const first = this.#parked.entries().next().value;
    if (first === undefined) return;
    const [group, line] = first;
    for (let i = Math.min(n, line.length); i > 0; i--) {
      const flow = line.shift()!;
      const head = flow.items.peek();
      if (head !== undefined && !gone(head)) {
        line.push(flow);
        continue;
      }
      flow.parked = undefined;
      flow.inTurn = false;
      for (let item = flow.items.shift(); item !== undefined; item = flow.items.shift()) {
        this.#left(flow, item);
        out.push(item);
      }
    }
    this.#parked.delete(group);
    if (line.length > 0) this.#parked.set(group, line);
  }

  /**
   * Drops into `out` the items of parked flows whose client left (a few
   * looked at: `sweep`), then puts parked flows back in the rotation: one
   * of each of a few groups `back` lets (`probe`), or all.
   */
  tend(gone: (item: T) => boolean, out: T[], back: "all" | "any" | ((group: object) => boolean)) {
    this.sweep(SWEPT_FLOWS, gone, out);
    if (back === "all") this.unparkAll();
    else this.probe(PROBED_GROUPS, back === "any" ? undefined : back);
  }

  /** Every parked flow goes back to the rotation. */
  unparkAll(): void {
    for (const group of [...this.#parked.keys()]) this.unpark(group);
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
    this.#parked.clear();
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
