/**
 * Fan-out bounded per turn of the event loop. One publish to 200,000
 * subscriptions cost about 256 ms of CPU in one go, during which no other
 * client was served. So at most DELIVERIES_PER_TURN deliveries are made per
 * turn: the rest of a large fan-out waits in a backlog, worked off in later
 * turns (a timer each, so that reads and writes of every connection come in
 * between), and every publish that comes meanwhile waits behind it, so each
 * subscription still gets its messages in publish order. A message that
 * waits is held (it keeps no borrowed buffer of its publisher's frame),
 * and counted in the broker's memory. The backlog is bounded: past
 * MAX_WAITING, the publishers filling it are held back (see there).
 */
import type { Message, Subscription } from "./subscriber.ts";
import type { Group, Targets } from "./subscriptions.ts";
import { valueBytes } from "./values.ts";

/** Deliveries made per turn of the event loop (about 10 ms of a queued fan-out's work). */
export const DELIVERIES_PER_TURN = 8192;

/**
 * Deliveries the backlog may hold before publishers are held back (about
 * 80 ms of work): past it, a connection whose publishes wait in it with
 * at least an even share of what waits stops being read (its input waits
 * in order, see Peer.holdInput), as NATS or HAProxy push back on a
 * producer faster than its consumers, until the backlog is down to half
 * of it. Each publisher adds at most one publish past the bound, so a
 * well-behaved client's publish waits behind at most this and one publish
 * of each flooding connection, however fast they send.
 */
export const MAX_WAITING = 8 * DELIVERIES_PER_TURN;

/**
 * What a publish waiting in the backlog costs beyond its value: its record,
 * the message and its encoded head per codec (measured on V8: about 300).
 */
export const PENDING_BYTES = 320;

/** A connection that publishes, held back while its publishes fill the backlog. */
export interface Publisher {
  /** Deliveries of its publishes still waiting (kept by the FanOut). */
  waiting: number;
  /** Whether it is held back now (kept by the FanOut). */
  heldBack: boolean;
  /** Stops taking its input, from its next frame on. */
  holdBack(): void;
  /** Takes its input again. */
  goOn(): void;
}

/** A publish not yet delivered to all its targets. */
interface Pending {
  msg: Message;
  plain: readonly Subscription[];
  groups: readonly Group<Subscription>[];
  /** Targets done: plain ones first, then groups. */
  at: number;
  /** performance.now() at the publish when it is timed, else 0. */
  t0: number;
  from: Publisher | undefined;
  /** What it holds, as counted in `bytes`. */
  bytes: number;
}

export class FanOut {
  #left = DELIVERIES_PER_TURN;
  #counting = false;
  readonly #backlog: Pending[] = [];
  #head = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** Deliveries waiting for a later turn. */
  waiting = 0;
  /** What the waiting publishes hold (counted in the broker's memory). */
  bytes = 0;
  /** Publishers with deliveries waiting, and those held back. */
  readonly #publishers = new Set<Publisher>();
  readonly #heldBack: Publisher[] = [];
  /** Publishers held back so far. */
  heldBackCount = 0;
  /** Publishers held back while a publish of theirs waits for its match (see matching.ts). */
  readonly #matching = new Set<Publisher>();
  /** Called when a timed publish (t0 ≠ 0) made its last delivery. */
  readonly #done: (t0: number) => void;
  /** Called after each later turn's deliveries (the core checks its memory budget). */
  readonly #turned: () => void;

  constructor(done: (t0: number) => void, turned: () => void = () => {}) {
    this.#done = done;
    this.#turned = turned;
  }

  /**
   * Delivers `msg` to its targets (a group's member picked when its turn
   * comes), now if this turn has room and nothing waits, else partly now
   * and the rest in later turns. Returns the deliveries it will make.
   */
  send(
    msg: Message,
    targets: Targets<Subscription>,
    t0: number,
    from?: Publisher,
  ): number {
    const { plain, groups } = targets;
    const total = plain.length + groups.length;
    this.#startTurn();
    const idle = this.#head === this.#backlog.length;
    if (idle && total <= this.#left) {
      // The common case: all of it now, no record of it kept.
      this.#left -= total;
      for (let i = 0; i < plain.length; i++) plain[i].deliver(msg);
      for (let i = 0; i < groups.length; i++) {
        // A member cut off during this very loop may have emptied its group.
        if (groups[i].members.length > 0) groups[i].pick().deliver(msg);
      }
      if (t0 !== 0) this.#done(t0);
      return total;
    }
    const p: Pending = { msg, plain, groups, at: 0, t0, from, bytes: 0 };
    if (idle) this.#work(p);
    // It waits: what it holds must outlive the publisher's frame.
    (plain[0] ?? groups[0].members[0])?.sink.hold(msg);
    // The value, and its encoded copy for the subscribers' codec.
    p.bytes = PENDING_BYTES + 2 * valueBytes(msg.value);
    this.bytes += p.bytes;
    this.#backlog.push(p);
    const left = total - p.at;
    this.waiting += left;
    if (from !== undefined) {
      from.waiting += left;
      this.#publishers.add(from);
      if (this.waiting > MAX_WAITING && !from.heldBack) this.#maybeHoldBack(from);
    }
    this.#schedule();
    return total;
  }

  /** Holds `from` back when its publishes are at least an even share of what waits. */
  #maybeHoldBack(from: Publisher): void {
    if (from.waiting * this.#publishers.size < this.waiting) return;
    from.heldBack = true;
    this.heldBackCount++;
    this.#heldBack.push(from);
    if (!this.#matching.has(from)) from.holdBack();
  }

  /**
   * Holds `from` back while a publish of it waits for its match (true), or
   * lets it go (false): it is read again once neither this nor the backlog
   * holds it (one holdBack, one goOn).
   */
  holdForMatch(from: Publisher, hold: boolean): void {
    if (hold) {
      if (this.#matching.has(from)) return;
      this.#matching.add(from);
      if (!from.heldBack) from.holdBack();
    } else if (this.#matching.delete(from) && !from.heldBack) {
      from.goOn();
    }
  }

  /** `n` more deliveries of `p` were made. */
  #made(p: Pending, n: number): void {
    this.waiting -= n;
    const from = p.from;
    if (from === undefined) return;
    from.waiting -= n;
    if (from.waiting === 0) this.#publishers.delete(from);
  }

  /** This turn's budget: refilled once the turn's synchronous work and microtasks are done. */
  #startTurn(): void {
    if (this.#counting) return;
    this.#counting = true;
    queueMicrotask(() => {
      this.#left = DELIVERIES_PER_TURN;
      this.#counting = false;
    });
  }

  /** Delivers as much of `p` as this turn has room for. */
  #work(p: Pending): void {
    const { msg, plain, groups } = p;
    const total = plain.length + groups.length;
    let at = p.at;
    while (at < total && this.#left > 0) {
      if (at < plain.length) {
        plain[at].deliver(msg);
      } else {
        // A member cut off meanwhile may have emptied its group.
        const group = groups[at - plain.length];
        if (group.members.length > 0) group.pick().deliver(msg);
      }
      at++;
      this.#left--;
    }
    p.at = at;
    if (at === total && p.t0 !== 0) this.#done(p.t0);
  }

  /** The backlog is down to half its bound: every publisher held back goes on. */
  #letGo(): void {
    const held = this.#heldBack.splice(0);
    for (const from of held) {
      from.heldBack = false;
      if (!this.#matching.has(from)) from.goOn();
    }
  }

  #schedule(): void {
    if (this.#timer !== undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#startTurn();
      while (this.#head < this.#backlog.length && this.#left > 0) {
        const p = this.#backlog[this.#head];
        const before = p.at;
        this.#work(p);
        this.#made(p, p.at - before);
        if (p.at < p.plain.length + p.groups.length) break;
        this.bytes -= p.bytes;
        this.#backlog[this.#head++] = undefined!;
      }
      if (this.#heldBack.length > 0 && this.waiting <= MAX_WAITING / 2) this.#letGo();
      if (this.#head === this.#backlog.length) {
        this.#backlog.length = 0;
        this.#head = 0;
      } else {
        if (this.#head > 1024 && this.#head * 2 > this.#backlog.length) {
          this.#backlog.splice(0, this.#head);
          this.#head = 0;
        }
        this.#schedule();
      }
      this.#turned();
    }, 0);
  }
}
