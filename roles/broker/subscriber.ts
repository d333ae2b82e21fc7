/**
 * A subscription's side of delivery: a bounded pending buffer and what
 * happens when it fills (the policy), independent of any protocol. The
 * front end gives each subscription a {@link Sink}: the transport that
 * carries its deliveries (one connection may carry several subscriptions).
 *
 * While the subscriber keeps up, a delivery goes straight to the sink; once the sink holds more
 * than the subscription lets it, deliveries wait in the subscription's queue (encoded bytes, or
 * messages for `latest`) and move to the sink as it drains. Pending bytes are counted per
 * CONNECTION: the queues of all its subscriptions (its {@link PendingBudget}) plus what the sink
 * holds, so they share one `maxPending`. Past it the policy of the subscription whose delivery
 * went over decides:
 *
 * - `disconnect` (default): the subscriber is cut off with SLOW_CONSUMER;
 * - `drop-oldest`: the oldest pending deliveries are dropped (counted), from the connection's
 *   largest queue first (when larger than this one): a busy subscription cannot starve a quiet one;
 * - `latest`: only the newest pending value per topic is kept (a newer value replaces a pending
 *   one in place), then the oldest go as with drop-oldest.
 *
 * A subscription starts held: deliveries queue until `release()`, so the front end can answer
 * the subscribe first, and the retained snapshot goes out before anything live. A snapshot is a
 * cursor, not a copy: retained values are read as the sink drains, a bounded amount of work per
 * turn of the event loop, and cost no pending bytes while they wait.
 */
import { DistError } from "../../wire/mod.ts";
import { ByteQueue } from "./byte_queue.ts";
import { LatestQueue } from "./latest_queue.ts";
import type { Message, Sink, Snapshot, SubscriptionOptions } from "./message.ts";
import { ALWAYS, NOT_PARKED, park, STALLED } from "./parking.ts";
import { SubscriptionQueues } from "./subscription_queue.ts";
import { keep, type KeptForm, KeptQueue } from "./kept.ts";

// The delivery vocabulary lives in message.ts; importers of this module keep working.
export * from "./message.ts";

/** Most bytes the sink is filled to from the queue: the rest waits here, where it can be dropped. */
const FILL_BYTES = 256 * 1024;
/**
 * Node visits a snapshot may make per pump (a few hundred microseconds): a cursor over a large
 * tree, or a `+` level with many children, goes on in a later turn instead of holding the loop.
 */
export const SNAPSHOT_VISITS_PER_TURN = 4096;

/**
 * The visits every snapshot together may make until the next walk turn: 500 snapshots walking
 * at once each took 4,096 a timer, back to back before any socket was read, and held every
 * client a second a round trip for 25 s (hostile46b M-B8). Those that find it spent wait for a
 * walk turn, which refills it and takes them a connection at a time in rotation, each
 * connection's in their order: one place in line per snapshot put an honest client's retained
 * values behind another client's 1,000 walks (review r46 R2).
 */
const walkBudget = { left: SNAPSHOT_VISITS_PER_TURN };
const walkers = new Map<Sink, (() => void)[]>();
let walkTurnSet = false;

function walkLater(sink: Sink, resume: () => void): void {
  const line = walkers.get(sink);
  if (line === undefined) walkers.set(sink, [resume]);
  else line.push(resume);
  if (walkTurnSet) return;
  walkTurnSet = true;
  setTimeout(walkTurn, 0);
}

function walkTurn(): void {
  walkTurnSet = false;
  walkBudget.left = SNAPSHOT_VISITS_PER_TURN;
  for (const sink of [...walkers.keys()]) {
    if (walkBudget.left <= 0) break;
    const line = walkers.get(sink)!;
    const resume = line.shift()!;
    // To the back of the rotation (its next walk, if any, after the other connections').
    walkers.delete(sink);
    if (line.length > 0) walkers.set(sink, line);
    resume();
  }
  if (walkers.size > 0 && !walkTurnSet) {
    walkTurnSet = true;
    setTimeout(walkTurn, 0);
  }
}

/** What #lossy did with a delivery. */
const WRITTEN = 1, DROPPED = 2;

/** A subscription: what it is (SubscriptionInfo), its queues (SubscriptionQueues), how it delivers. */
export class Subscription extends SubscriptionQueues {
  #snapshot: Snapshot | undefined;
  /** Retained values to send again once the `#beforeLater` deliveries queued before them are gone. */
  #later: Snapshot | undefined;
  #held = true;
  #waiting = false;
  #cancelled = false;
  /** The sink may hold this much before deliveries queue here. */
  #directLimit: number;
  /** Queued deliveries move to the sink while it holds less than this. */
  #fillLimit: number;

  constructor(sink: Sink, options: SubscriptionOptions) {
    super(sink, options);
    this.#fillLimit = Math.max(1, Math.min(FILL_BYTES, Math.floor(this.maxPending / 4)));
    // Cutting off needs no queue: the sink itself may hold up to the limit.
    this.#directLimit = this.policy === "disconnect" ? this.maxPending : this.#fillLimit;
    if (this.policy === "latest") this.latest = new LatestQueue();
  }

  /** What its sink may hold before its deliveries queue here (see `ready`). */
  get directLimit(): number {
    return this.#directLimit;
  }

  /** Whether retained values of the snapshot may still be to deliver. */
  get snapshotting(): boolean {
    return this.#snapshot !== undefined || this.#later !== undefined;
  }

  get cancelled(): boolean {
    return this.#cancelled;
  }

  /**
   * Retained values to send before anything live, read from the cursor as
   * the sink drains (they wait in the store, not here: no pending bytes).
   * Precondition: still held.
   */
  setSnapshot(snapshot: Snapshot): void {
    this.#snapshot = snapshot;
  }

  /**
   * Held again until `release()`, its queue kept, and `snapshot` (retained
   * values) to go after what is queued now: an MQTT SUBSCRIBE of a filter
   * its session holds replaces it without interrupting its flow
   * ([MQTT-3.8.4-3]; a new subscription lost a returning client's queue,
   * hostile review 42b Z1), and the retained values come again, after the
   * older deliveries of their topics.
   */
  again(snapshot: Snapshot | undefined): void {
    if (this.#cancelled) return;
    this.#held = true;
    if (snapshot === undefined) return;
    this.#later = snapshot;
    this.beforeLater = this.queued;
  }

  /** Lets deliveries flow: the snapshot first, then what queued meanwhile. */
  release(): void {
    if (!this.#held || this.#cancelled) return;
    this.#held = false;
    this.#pump();
  }

  /** Whether a delivery now would go straight to the sink (it keeps up). */
  get ready(): boolean {
    const sink = this.sink;
    return !this.#cancelled && !this.#held && this.fifo.length === 0 &&
      (this.lane === undefined || this.lane.length === 0) &&
      (this.latest?.length ?? 0) === 0 && this.#snapshot === undefined &&
      this.#later === undefined &&
      sink.pendingBytes < this.#directLimit && sink.full !== true && !this.#behind;
  }

  /**
   * Whether it waits behind another of its sink's subscriptions, cut, delivering what it queued
   * (Sink.draining): a topic that one carried goes on by this one, older ones first (review44 R4).
   */
  get #behind(): boolean {
    return this.#whenDrained === undefined && this.sink.draining === true;
  }

  /** The queue it waited behind (see #behind) is done: what waits here moves on. */
  goOn(): void {
    if (!this.#waiting) this.#pump();
  }

  /**
   * Delivers one message, or queues it, applying the policy when pending
   * passes the limit. True when it was dropped at once, at the cost of a
   * look (see #lossy; or not to go, Sink.encode: a QoS 0 to an away MQTT
   * session): the fan-out does not count it in its turn's work.
   */
  deliver(msg: Message): boolean {
    if (this.#cancelled) return true;
    // Another subscription of its MQTT session carries the one copy (Sink.skips): its queue not
    // even touched, but counted as work: over 100,000 subscriptions each costs a delivery's cache
    // misses (hostile44b H-B6: counted as looks, 1,000 sessions of 100 filters held every other
    // client's PINGRESP p50 164–284 ms; now 6–9 ms, as before one copy).
    if (this.sink.skips?.(msg, this) === true) return false;
    if (this.ready) {
      this.sink.write(msg, this);
      this.delivered++;
      return false;
    }
    const lossy = this.#lossy(msg);
    return lossy === 0 ? this.#enqueue(msg) : lossy === DROPPED;
  }

  /**
   * A delivery the connected sink may lose (MQTT QoS 0) that is not ready
   * to go: written at once while the sink's socket has room and no such
   * delivery waits here, whatever holds the rest (a full in-flight window:
   * MQTT 5 §4.9); else, under drop-oldest and in no queue group, dropped at once, counted, never
   * encoded nor queued (hostile review 41b X1: 50 connected sessions whose
   * window was full took every QoS 0 of an honest flow into their queues,
   * an encoding, a copy and a drop each, and cut it 40 times). 0: not done.
   */
  #lossy(msg: Message): number {
    const sink = this.sink;
    if (
      sink.lossy === undefined || this.#held || this.snapshotting ||
      this.latest !== undefined || !sink.lossy(msg, this)
    ) return 0;
    if (sink.pendingBytes < this.#directLimit) {
      // Its socket has room: behind a QoS 0 that waits here it waits too, not dropped (hostile43b
      // B1: one QoS 0 queued behind a window's QoS 1 had every later one dropped, the socket empty),
      // up to half of max-pending while a delivery not to lose waits here too (see #crowds).
      const lane = this.lane;
      if (this.lossyQueued === 0 && (lane === undefined || lane.length === 0)) {
        sink.write(msg, this);
        this.delivered++;
        return WRITTEN;
      }
      if (sink.lossyLane === true && this.policy === "drop-oldest" && this.group === undefined) {
        return this.#toLane(msg);
      }
      if (!this.#crowds(msg)) return 0;
    }
    // A queue group's delivery waits for the member picked: its load turns the next picks away.
    if (this.policy !== "drop-oldest" || this.group !== undefined) return 0;
    this.dropped++;
    // Its socket is backed up: out of QoS 0 targets until it drains to half (parking.ts).
    if (this.parked === NOT_PARKED && sink.pendingBytes >= this.#directLimit) {
      park(this, STALLED, { drained: this.#fillLimit >> 1, passes: ALWAYS });
    }
    return DROPPED;
  }

  /**
   * Whether a delivery its sink may lose would take its connection past half of max-pending while
   * one it must not lose (MQTT QoS 1 or 2) waits here: past the bound, drop-oldest drops the
   * oldest, that one, for deliveries that came after it (hostile44b H-B7: QoS 0 queued behind a
   * QoS 1 the window held pushed QoS 1 out, 252–263 of 300 went). Such a delivery is dropped at
   * once instead, as when its socket is backed up.
   */
  #crowds(msg: Message): boolean {
    const sink = this.sink;
    return this.fifo.length > this.lossyQueued &&
      this.connectionPending() + sink.sizeOf(msg, this) + (sink.recordCost ?? 0) >
        this.maxPending / 2;
  }

  /** Queues a lossy delivery in the lane (see #lane): WRITTEN, or DROPPED when it is not to go. */
  #toLane(msg: Message): number {
    const record = this.sink.encode(msg, this, true);
    if (record.length === 0) return DROPPED;
    (this.lane ??= new ByteQueue()).push(record);
    this.account(record.length);
    const budget = this.sink.queued;
    if (budget.largest === undefined || budget.largest.bytesHere < this.bytesHere) {
      budget.largest = this;
    }
    if (this.connectionPending() > this.maxPending) this.shed(budget.largest);
    this.#arm();
    return WRITTEN;
  }

  /** Whether the lane's oldest may go: no lossy delivery waits in the FIFO, the sink connected. */
  #laneGoes(): boolean {
    const lane = this.lane;
    return lane !== undefined && lane.length > 0 && this.lossyQueued === 0 &&
      this.sink.socket !== undefined;
  }

  /** Whether the oldest queued delivery may go while the connected sink is full (see Sink.lossy). */
  #headPasses(): boolean {
    return this.lossyQueued > 0 && this.#snapshot === undefined && this.sink.socket !== undefined &&
      this.sink.lossyRecord?.(this.fifo.first()) === true;
  }

  /** Whether something queued may go while the connected sink is full: a drain waiter's test. */
  readonly #passes = (): boolean => this.#headPasses() || this.#laneGoes();

  /** Told, it cancelled, once its queue is empty (cancelWhenDrained). */
  #whenDrained: (() => void) | undefined;
  /** Delivers what its FIFO holds, then cancels and calls `done` (one_copy.ts: an UNSUBSCRIBE). */
  cancelWhenDrained(done: () => void): void {
    this.#whenDrained = done;
    // The retained values of a filter given up are not sent; its queue is (hostile45b K-B1: with a
    // snapshot still walked, it was cancelled at once, and the copies it carried were lost).
    this.#snapshot = this.#later = undefined;
    if (this.latest === undefined && this.fifo.length > 0) this.#arm();
    else this.#drainedOut();
  }

  /** Cancels it and tells whoever asked cancelWhenDrained (none asked: nothing). */
  #drainedOut(done = this.#whenDrained): void {
    if (done === undefined) return;
    this.cancel();
    done();
  }

  /** Stops all delivery and frees what is pending. */
  cancel(): void {
    this.#whenDrained = undefined;
    this.#cancelled = true;
    this.fifo.clear();
    this.kept?.clear();
    this.lane?.clear();
    this.lossyQueued = 0;
    this.latest?.clear();
    this.account(-this.bytesHere);
    const budget = this.sink.queued;
    if (budget.largest === this) budget.largest = undefined;
    this.#snapshot = undefined;
    this.#later = undefined;
  }

  /** Queues a delivery; true when it is not to go after all (see Sink.encode). */
  #enqueue(msg: Message): boolean {
    if (this.latest === undefined) {
      const record = this.sink.encode(msg, this);
      if (record.length === 0) return true; // not to go (see Sink.encode)
      this.fifo.push(record);
      // A queue group's: as published too, should it go to another member (give_back.ts).
      if (this.group !== undefined) {
        (this.kept ??= new KeptQueue()).push((this.sink.keepOf ?? keep)(msg));
      }
      if (this.sink.lossyRecord?.(record[0]) === true) this.lossyQueued++;
      this.account(record.length + (this.sink.recordCost ?? 0));
    } else {
      this.#enqueueLatest(msg);
    }
    const budget = this.sink.queued;
    const largest = budget.largest;
    if (largest === undefined || largest.bytesHere < this.bytesHere) budget.largest = this;
    if (this.connectionPending() > this.maxPending) {
      if (this.policy === "disconnect") {
        const pending = this.connectionPending();
        this.sink.slow(
          this,
          new DistError(
            "SLOW_CONSUMER",
            `Subscriber of ${this.pattern} (sid ${this.sid}) fell behind: ` +
              `${pending} bytes pending on its connection, more than max-pending ${this.maxPending}`,
          ),
        );
        return false;
      }
      this.shed(largest);
    }
    this.#arm();
    return false;
  }

  #enqueueLatest(msg: Message): void {
    const { added, replaced } = this.latest!.push(msg, this.sink.sizeOf(msg, this));
    this.account(added);
    // The subscriber has not seen the older value yet: it only needs the newest.
    if (replaced) this.dropped++;
    // A `latest` queue keeps one value per topic for as long as it takes,
    // so its entries must not pin buffers shared with newer messages.
    this.sink.hold(msg);
  }

  /** Waits for the sink to drain, then pumps (once at a time). */
  #arm(): void {
    if (this.#waiting || this.#held || this.#cancelled || this.#behind) return;
    this.#waiting = true;
    this.sink.whenDrained(this.#fillLimit >> 1, this.#resume, this.#passes);
  }

  /** Pumps again after a wait (bound once: no closure per wait). */
  readonly #resume = (): void => {
    this.#waiting = false;
    this.#pump();
  };

  /** Moves the snapshot, then the queue, to the sink while it has room. */
  #pump(): void {
    // Held again (again()) while a drain was awaited, or behind a cut queue (goOn pumps it then).
    if (this.#held || this.#behind) return;
    const sink = this.sink;
    const budget = walkBudget;
    while (!sink.closed && sink.pendingBytes < this.#fillLimit && this.#laneGoes()) {
      const bytes = this.lane!.shift()!;
      this.account(-bytes.length);
      sink.writeEncoded(bytes, this);
      this.delivered++;
    }
    while (
      !this.#cancelled && !sink.closed && sink.pendingBytes < this.#fillLimit &&
      (sink.full !== true || this.#headPasses())
    ) {
      let msg: Message | null | undefined;
      if (this.#snapshot !== undefined) {
        msg = this.#snapshot.next(budget);
        if (msg === null) {
          // This turn's share of the walk is spent: go on in a later one.
          this.#waiting = true;
          walkLater(sink, this.#resume);
          return;
        }
        if (msg === undefined) {
          this.#snapshot = undefined;
          if (this.#later === undefined) sink.journal?.snapshotDone(this);
          continue;
        }
      } else if (this.#later !== undefined && this.beforeLater <= 0) {
        this.#snapshot = this.#later;
        this.#later = undefined;
        continue;
      } else if (this.latest === undefined) {
        this.leaving();
        const bytes = this.fifo.shift();
        if (bytes === undefined) return this.#drainedOut();
        const kept: KeptForm = this.kept?.shift();
        this.beforeLater--;
        this.account(-bytes.length - (sink.recordCost ?? 0));
        sink.writeEncoded(bytes, this, kept);
        this.delivered++;
        if (this.fifo.length === 0) this.#drainedOut(); // the last may fill the sink (review44 R1)
        continue;
      } else {
        msg = this.shiftLatest();
        if (msg === undefined) return;
        this.beforeLater--;
      }
      sink.write(msg, this);
      this.delivered++;
    }
    if (
      !this.#cancelled && !sink.closed &&
      (this.queued > 0 || this.snapshotting || (this.lane?.length ?? 0) > 0)
    ) {
      this.fifo.fit(); // what went out need not keep its buffer
      this.lane?.fit();
      this.#arm();
    }
  }
}
