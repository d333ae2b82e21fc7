/**
 * What a queue group member that leaves owes its group: the deliveries its
 * client was given and did not take (an MQTT session's in flight,
 * unacknowledged: MQTT 5 §4.8.2) and what waited in its queue (any
 * member's, native or MQTT). Each goes to another member of its group, as
 * the fan-out would have given it, as it was published (kept.ts: the value
 * in the codec it came in, the publisher's QoS), at the QoS of the
 * subscription it goes by. With no other member it is counted dropped
 * (hostile46b M-B3: lost, uncounted; stop-47 Limits: a native member's
 * queue was counted dropped, not given back), and so is a delivery given
 * back MAX_GIVE_BACKS times already (members that keep leaving: it would
 * go round for ever).
 */
import type { Message, Subscription } from "./subscriber.ts";
import type { ByteQueue } from "./byte_queue.ts";
import type { BrokerCore } from "./core.ts";
import { deliverToGroup } from "./group_delivery.ts";
import { groupCounts } from "./group.ts";
import { Kept, type KeptForm, type KeptQueue, MAX_GIVE_BACKS } from "./kept.ts";

/** What loses a delivery that cannot be given back (its group gone): a front end's counter. */
export interface Loser {
  undeliverable: number;
}

/**
 * What one group subscription of a member that leaves owes: what it had
 * in flight, oldest first (an MQTT session's PUBLISH packets, each with its
 * delivery as published if known), then its queue, taken whole.
 */
export interface Owed {
  readonly sub: Subscription;
  readonly packets: Uint8Array[];
  readonly kept: KeptForm[];
  readonly queue?: ByteQueue;
  readonly queueKept?: KeptQueue;
  /** The delivery a record carries, where none is kept (MQTT: read from the PUBLISH); absent: lost. */
  readonly rebuild?: (record: Uint8Array) => Message | undefined;
  /** Counts what its group can no longer take. */
  readonly lost: Loser;
}

/**
 * Whether `sub` has another member in its group to give to: with none,
 * what it owes is counted as its drops at once (`sys.stats` `dropped`,
 * `dist_broker_dropped_total`, once it is cut). An unsubscribed member
 * (cut already) still gives what it had in flight to those left.
 */
export function othersIn(sub: Subscription, core: BrokerCore): boolean {
  const group = core.subscriptions.groupOf(sub);
  const others = (group?.members.length ?? 0) - (group?.members.includes(sub) ? 1 : 0);
  return others > 0 || sub.cancelled;
}

/**
 * What `sub`, a native queue group member about to be cut, owes its group:
 * its queue (none queued, none to give, not a group's: undefined). A
 * `latest` queue is not given back (counted dropped as it is cut).
 */
export function takeQueue(sub: Subscription, core: BrokerCore, lost: Loser): Owed | undefined {
  if (sub.group === undefined || sub.queued === 0 || !othersIn(sub, core)) return undefined;
  const { queue, kept } = sub.takeQueued();
  if (queue.length === 0) return undefined;
  return { sub, packets: [], kept: [], queue, queueKept: kept, lost };
}

/** Messages given back per turn of the event loop at most (as the fan-out: fanout.ts; hostile h47b N3). */
export const GIVE_BACK_PER_TURN = 8192;
/** Time given to giving back per turn of the event loop at most (ms). */
const GIVE_BACK_TURN_MS = 5;

/** One group subscription's messages still to give back, from `at`. */
interface Giving extends Owed {
  at: number;
}

/**
 * Gives what members that left owed to the other members of each group,
 * once their subscriptions are cut (so none comes back to them); counted
 * in `queue_groups.given_back`. A group whose members all left meanwhile:
 * counted undeliverable. A delivery given back MAX_GIVE_BACKS times
 * already: counted dropped (`dropped`, and `queue_groups.given_up`). In
 * slices, as the fan-out's runs are: at most {@link GIVE_BACK_PER_TURN}
 * messages or {@link GIVE_BACK_TURN_MS} a turn of the event loop, the rest
 * in later turns, oldest leave first (hostile h47b N3: a member leaving
 * with 250,000 queued stopped the broker for every client 0.3 to 1.4 s
 * while its queue moved in one loop). One per broker (giveBacksOf): its
 * native and MQTT front ends share it.
 */
export class GiveBacks {
  readonly #core: BrokerCore;
  readonly #work: Giving[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  #running = false;
  /** Deliveries dropped as given back too often (counted in `sys.stats` `dropped`). */
  dropped = 0;

  constructor(core: BrokerCore) {
    this.#core = core;
  }

  /** Messages taken and not given back yet. */
  get pending(): number {
    let n = 0;
    for (const w of this.#work) n += w.packets.length - w.at + (w.queue?.length ?? 0);
    return n;
  }

  /** Gives `owed` back (a first slice now when nothing waits before it). */
  add(owed: readonly Owed[]): void {
    if (this.#closed) {
      for (const o of owed) o.lost.undeliverable += left(o, 0);
      return;
    }
    for (const o of owed) this.#work.push({ ...o, at: 0 });
    // (Not from within a slice: a member a give-back cut off leaves meanwhile; that slice goes on.)
    if (this.#timer === undefined && !this.#running && this.#work.length > 0) this.#slice();
  }

  /** At the broker's stop: what is not given back yet is counted undeliverable. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const w of this.#work) w.lost.undeliverable += left(w, w.at);
    this.#work.length = 0;
  }

  readonly #slice = (): void => {
    this.#timer = undefined;
    this.#running = true;
    try {
      this.#run();
    } finally {
      this.#running = false;
    }
    // A timeout, not setImmediate (see durable.ts #next): sockets are polled between slices.
    if (this.#work.length > 0 && !this.#closed) this.#timer = setTimeout(this.#slice, 0);
  };

  /** One slice's worth (see the class). */
  #run(): void {
    const end = performance.now() + GIVE_BACK_TURN_MS;
    let done = 0;
    while (this.#work.length > 0) {
      const w = this.#work[0];
      if (w.at === w.packets.length && !(w.queue?.length)) {
        this.#work.shift();
        continue;
      }
      if (done >= GIVE_BACK_PER_TURN || (done % 64 === 63 && performance.now() > end)) break;
      done++;
      // In flight first, then the queue (a view of its buffer, read at once: rebuild copies).
      let record: Uint8Array, kept: KeptForm;
      if (w.at < w.packets.length) {
        record = w.packets[w.at];
        kept = w.kept[w.at];
        w.packets[w.at] = EMPTY; // its bytes free as it goes
        w.kept[w.at++] = undefined;
      } else {
        record = w.queue!.shift()!;
        kept = w.queueKept?.shift();
      }
      this.#give(w, typeof kept === "object" ? kept : w.rebuild?.(record), kept);
    }
  }

  /**
   * Gives one delivery to another member of `w`'s group (see the class);
   * `kept` a number: the publisher's QoS and its give-backs (kept.ts inRecord).
   */
  #give(w: Giving, msg: Message | undefined, kept: KeptForm): void {
    const group = this.#core.subscriptions.groupOf(w.sub);
    if (group === undefined || group.members.length === 0 || msg === undefined) {
      w.lost.undeliverable++;
      return;
    }
    const out = msg instanceof Kept ? msg : new Kept(msg.topic, msg.value, false, msg.qos);
    if (typeof kept === "number") {
      out.qos = kept & 3;
      out.givenBack = kept >> 2;
    }
    if (out.givenBack >= MAX_GIVE_BACKS) {
      this.dropped++;
      groupCounts.givenUp++;
      return;
    }
    out.givenBack++;
    groupCounts.givenBack++;
    deliverToGroup(group, out.fresh());
  }
}

const EMPTY = new Uint8Array(0);

/** How many of `o`'s deliveries are not given yet, from `at` of those in flight; freed. */
function left(o: Owed, at: number): number {
  const n = o.packets.length - at + (o.queue?.length ?? 0);
  o.queue?.clear();
  o.queueKept?.clear();
  return n;
}

const byCore = new WeakMap<BrokerCore, GiveBacks>();

/** The give-backs of a broker's core: its native and MQTT front ends share them. */
export function giveBacksOf(core: BrokerCore): GiveBacks {
  let giveBacks = byCore.get(core);
  if (giveBacks === undefined) byCore.set(core, giveBacks = new GiveBacks(core));
  return giveBacks;
}
