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
 *
 * A subscriber that keeps up does not wait behind the backlog: a waiting
 * publish first makes a prompt pass over its targets (a few field reads
 * each, VISITS_PER_TURN of them per turn) that delivers at once to every
 * subscription ready to take it (nothing queued, its sink not full) with
 * nothing of an earlier publish still owed to it, and counts one more owed
 * delivery on each other one; the slow pass then makes the rest in publish
 * order, skipping those made. Before, a subscriber after 200,000 that never
 * read got each message once all their deliveries were made (about 300 ms
 * of CPU per publish). Each subscription still gets its messages in
 * publish order: it is served early only while it is owed nothing, prompt
 * passes go in publish order, and a publish's slow pass starts after its
 * prompt pass is done.
 */
import type { Message, Subscription } from "./subscriber.ts";
import { deliverToGroup } from "./group_delivery.ts";
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
 * Targets the prompt and slow passes may look at per turn, beside the
 * deliveries they make (a look at one that is not ready costs a few field
 * reads: a few milliseconds for all of these).
 */
export const VISITS_PER_TURN = 16 * DELIVERIES_PER_TURN;

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
  /** Who it is, for fairness between sources (see matching.ts); none: itself. */
  readonly source?: string;
}

/** A publish not yet delivered to all its targets. */
interface Pending {
  msg: Message;
  plain: readonly Subscription[];
  groups: readonly Group<Subscription>[];
  /** Targets done by the slow pass: plain ones first, then groups. */
  at: number;
  /** Plain targets seen by the prompt pass. */
  seen: number;
  /** A bit per plain target the prompt pass delivered to (none yet: undefined). */
  early: Uint8Array | undefined;
  /** Deliveries still to make (counted in `waiting`). */
  left: number;
  /** performance.now() at the publish when it is timed, else 0. */
  t0: number;
  from: Publisher | undefined;
  /** What it holds, as counted in `bytes`. */
  bytes: number;
  /** Called once its last delivery is made (see FanOut.whenMade). */
  made: (() => void)[] | undefined;
}

export class FanOut {
  #left = DELIVERIES_PER_TURN;
  #visits = VISITS_PER_TURN;
  #counting = false;
  readonly #backlog: Pending[] = [];
  /** The first publish whose slow pass is not done. */
  #head = 0;
  /** The first publish whose prompt pass is not done (at or after #head). */
  #prompt = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** Deliveries waiting for a later turn. */
  waiting = 0;
  /** What the waiting publishes hold (counted in the broker's memory). */
  bytes = 0;
  /** The last publish sent, while it waits (see whenMade). */
  #last: Pending | undefined;
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
    msg.targets = targets; // for a sink that merges its overlapping subscriptions' copies
    if ((idle && total <= this.#left) || total === 0) {
      // The common case: all of it now, no record of it kept. A drop at once is not work.
      this.#left -= total;
      let dropped = 0;
      for (let i = 0; i < plain.length; i++) if (plain[i].deliver(msg)) dropped++;
      this.#left += dropped;
      for (let i = 0; i < groups.length; i++) {
        // A member cut off during this very loop may have emptied its group.
        if (groups[i].members.length > 0) deliverToGroup(groups[i], msg);
      }
      if (t0 !== 0) this.#done(t0);
      this.#last = undefined;
      msg.targets = undefined;
      return total;
    }
    const p: Pending = {
      msg,
      plain,
      groups,
      at: 0,
      seen: 0,
      early: undefined,
      left: total,
      t0,
      from,
      bytes: 0,
      made: undefined,
    };
    this.#last = p;
    this.#backlog.push(p);
    this.waiting += total;
    if (from !== undefined) {
      from.waiting += total;
      this.#publishers.add(from);
    }
    this.#run();
    if (this.#backlog[this.#backlog.length - 1] !== p) return total; // all of it made now
    // It waits: what it holds must outlive the publisher's frame.
    (plain[0] ?? groups[0].members[0])?.sink.hold(msg);
    // The value, and its encoded copy for the subscribers' codec.
    p.bytes = PENDING_BYTES + 2 * valueBytes(msg.value);
    this.bytes += p.bytes;
    if (from !== undefined && this.waiting > MAX_WAITING && !from.heldBack) {
      this.#maybeHoldBack(from);
    }
    this.#schedule();
    return total;
  }

  /**
   * Takes `n` deliveries of this turn's budget for a publish delivered
   * outside `send` (see lane.ts): false, and nothing taken, when publishes
   * wait in the backlog or the turn has not that much left (it then goes
   * through `send`, behind them).
   */
  takeNow(n: number): boolean {
    this.#startTurn();
    if (this.#head !== this.#backlog.length || this.#left < n) return false;
    this.#left -= n;
    return true;
  }

  /**
   * Resolves once every delivery of the last publish sent is made (`all`:
   * of every publish waiting now); undefined when they are made already.
   * An MQTT PUBACK waits for it (and for the journal's commit of the rows
   * they wrote): hostile review 39b Q1.
   */
  whenMade(all = false): Promise<void> | undefined {
    const backlog = this.#backlog;
    const p = all ? backlog[backlog.length - 1] : this.#last;
    if (p === undefined || this.#head === backlog.length) return undefined;
    const { promise, resolve } = Promise.withResolvers<void>();
    (p.made ??= []).push(resolve);
    return promise;
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
    if (n === 0) return;
    this.waiting -= n;
    p.left -= n;
    if (p.left === 0 && p.t0 !== 0) this.#done(p.t0);
    const from = p.from;
    if (from === undefined) return;
    from.waiting -= n;
    if (from.waiting === 0) this.#publishers.delete(from);
  }

  /** This turn's budget: refilled once the turn's synchronous work and microtasks are done. */
  #startTurn(): void {
    if (this.#counting) return;
    this.#counting = true;
    queueMicrotask(this.#turnEnded);
  }

  /**
   * Made once: a closure inside #startTurn had V8 allocate its context on
   * every call, whether or not the closure was made (96 bytes a publish).
   */
  readonly #turnEnded = (): void => {
    this.#left = DELIVERIES_PER_TURN;
    this.#visits = VISITS_PER_TURN;
    this.#counting = false;
  };

  /**
   * The prompt pass over `p`'s plain targets, as far as this turn has room:
   * delivers to each one ready with nothing owed, counts one more owed on
   * each other. True when done.
   */
  #promptPass(p: Pending): boolean {
    const { msg, plain } = p;
    let i = p.seen, made = 0, early = p.early;
    while (i < plain.length && this.#visits > 0 && this.#left > 0) {
      const sub = plain[i];
      if (sub.owed === 0 && sub.ready) {
        sub.deliver(msg);
        early ??= new Uint8Array((plain.length + 7) >> 3);
        early[i >> 3] |= 1 << (i & 7);
        made++;
        this.#left--;
      } else {
        sub.owed++;
      }
      i++;
      this.#visits--;
    }
    p.seen = i;
    p.early = early;
    this.#made(p, made);
    return i === plain.length;
  }

  /** The slow pass over `p`, as far as this turn has room: what the prompt pass left. */
  #slowPass(p: Pending): void {
    const { msg, plain, groups, early } = p;
    const total = plain.length + groups.length;
    let at = p.at, made = 0;
    while (at < total && this.#left > 0 && this.#visits > 0) {
      this.#visits--;
      if (at < plain.length) {
        if (early !== undefined && (early[at >> 3] & (1 << (at & 7))) !== 0) {
          at++; // made by the prompt pass
          continue;
        }
        const sub = plain[at];
        sub.owed--;
        if (sub.deliver(msg)) this.#left++; // a drop at once is not work (a skip is: deliver)
      } else {
        // A member cut off meanwhile may have emptied its group.
        const group = groups[at - plain.length];
        if (group.members.length > 0) deliverToGroup(group, msg);
      }
      at++;
      made++;
      this.#left--;
    }
    p.at = at;
    this.#made(p, made);
  }

  /**
   * This turn's share of the backlog: prompt passes in publish order, then
   * slow passes in publish order, each after its publish's prompt pass.
   */
  #run(): void {
    this.#startTurn();
    const backlog = this.#backlog;
    while (this.#prompt < backlog.length && this.#promptPass(backlog[this.#prompt])) {
      this.#prompt++;
    }
    while (this.#head < this.#prompt && this.#left > 0 && this.#visits > 0) {
      const p = backlog[this.#head];
      this.#slowPass(p);
      if (p.at < p.plain.length + p.groups.length) break;
      this.bytes -= p.bytes;
      p.msg.targets = undefined; // a queue may keep the message (`latest`), not its targets
      backlog[this.#head++] = undefined!;
      if (this.#last === p) this.#last = undefined;
      if (p.made !== undefined) { for (const resolve of p.made) resolve(); }
    }
    if (this.#head === backlog.length) {
      backlog.length = 0;
      this.#head = this.#prompt = 0;
    } else if (this.#head > 1024 && this.#head * 2 > backlog.length) {
      backlog.splice(0, this.#head);
      this.#prompt -= this.#head;
      this.#head = 0;
    }
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
      this.#run();
      if (this.#heldBack.length > 0 && this.waiting <= MAX_WAITING / 2) this.#letGo();
      if (this.#head < this.#backlog.length) this.#schedule();
      this.#turned();
    }, 0);
  }
}
