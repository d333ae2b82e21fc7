/**
 * A subscription's queues (subscriber.ts delivers from them): what waits
 * for its sink, how it is counted in its connection's budget, and what is
 * dropped past it (drop-oldest: the connection's largest queue first, a
 * lossy lane before the FIFO; `latest`: one value a topic).
 */
import { ByteQueue, queueMemory } from "./byte_queue.ts";
import { LatestQueue } from "./latest_queue.ts";
import type { Message } from "./message.ts";
import type { KeptQueue } from "./kept.ts";
import { SubscriptionInfo } from "./subscription_info.ts";

export abstract class SubscriptionQueues extends SubscriptionInfo {
  /** Pending deliveries of `disconnect` and `drop-oldest`, encoded: bytes, no objects. */
  protected fifo = new ByteQueue();
  /** Bytes queued here, in either queue (also counted in the sink's budget). */
  protected bytesHere = 0;
  /** Deliveries in the FIFO its sink may lose (Sink.lossyRecord): a lossy one does not pass them. */
  protected lossyQueued = 0;
  /**
   * Deliveries its connected sink may lose (MQTT QoS 0) that wait while its socket has room, not
   * held by a full window (Sink.lossyLane): they go once no such delivery waits in the FIFO, older
   * ones first, and are dropped first past max-pending. In the FIFO behind a QoS 1 the window held
   * they filled it, and drop-oldest dropped the QoS 1 (hostile44b H-B7). Made at the first.
   */
  protected lane: ByteQueue | undefined;
  /** Pending deliveries of `latest`, as messages (a newer one replaces one in place). */
  protected latest: LatestQueue | undefined;
  /**
   * A queue group member's FIFO deliveries as published, one per record (kept.ts): what goes to
   * another member should it leave (give_back.ts). Made at the first.
   */
  protected kept: KeptQueue | undefined;
  /** Deliveries queued before a snapshot to send again (Subscription.again) still to go. */
  protected beforeLater = 0;

  /**
   * What its FIFO holds, oldest first, taken as a whole (not record by
   * record: 125,000 copies stopped the broker 110 ms, hostile h47b N3), and
   * the FIFO empty, with each delivery as published (kept.ts): what a queue
   * group member that leaves had queued, to give another member
   * (give_back.ts). Called just before it is cut.
   */
  takeQueued(): { queue: ByteQueue; kept: KeptQueue | undefined } {
    const queue = this.fifo, kept = this.kept;
    this.fifo = new ByteQueue();
    this.kept = undefined;
    this.account(-queue.bytes - queue.length * (this.sink.recordCost ?? 0));
    this.lossyQueued = 0;
    return { queue, kept };
  }

  /** Bytes waiting here (not counting the sink's). */
  get queuedBytes(): number {
    return this.bytesHere;
  }

  /** Deliveries waiting here (not counting a snapshot's). */
  get queued(): number {
    return (this.latest?.length ?? 0) + this.fifo.length;
  }

  /** The oldest queued delivery leaves the FIFO: one lossy fewer if it was one. */
  protected leaving(): void {
    if (this.lossyQueued > 0 && this.sink.lossyRecord?.(this.fifo.first()) === true) {
      this.lossyQueued--;
    }
  }

  /** Bytes in this subscription's queue changed by `delta`, and so did its connection's. */
  protected account(delta: number): void {
    // A FIFO's buffer is counted by the queue itself; a `latest` queue's here.
    if (this.latest !== undefined) queueMemory.bytes += delta;
    this.bytesHere += delta;
    this.sink.queued.bytes += delta;
  }

  /** Bytes pending on the connection: every queue of its subscriptions plus the sink's. */
  protected connectionPending(): number {
    return this.sink.queued.bytes + this.sink.pendingBytes;
  }

  /**
   * Drops pending deliveries until the connection is within its budget:
   * first from the connection's largest queue while it is larger than this
   * one (a busy subscription must not keep a quiet one out), then the
   * oldest of this one's own (the newest, just queued, last of all).
   */
  protected shed(largest: SubscriptionQueues | undefined): void {
    if (largest !== undefined && largest !== this && !largest.cancelled) {
      while (
        this.connectionPending() > this.maxPending && largest.bytesHere > this.bytesHere &&
        largest.dropOldest()
      ) {
        // Dropped and counted on its own subscription.
      }
      largest.fifo.fit();
      largest.lane?.fit();
    }
    while (this.connectionPending() > this.maxPending && this.dropOldest()) {
      // Counted in `dropped`.
    }
    this.fifo.fit();
    this.lane?.fit();
  }

  /** What its queue takes in memory (its buffer, slack included; a `latest` queue's entries). */
  get queueMemory(): number {
    return this.fifo.capacity + (this.lane?.capacity ?? 0) +
      (this.latest === undefined ? 0 : this.bytesHere) + (this.kept?.bytes ?? 0);
  }

  /**
   * Drops the oldest pending deliveries (counted) until `bytes` of its
   * {@link queueMemory} are freed or none is left; what is left moves to a
   * buffer of its size. Returns the bytes of queueMemory freed.
   */
  trim(bytes: number): number {
    const before = this.queueMemory;
    const latest = this.latest !== undefined;
    while (
      this.fifo.tight + (this.lane?.tight ?? 0) + (latest ? this.bytesHere : 0) +
            (this.kept?.bytes ?? 0) > before - bytes &&
      this.dropOldest()
    ) {
      // Counted in `dropped`.
    }
    this.fifo.tighten();
    this.lane?.tighten();
    return before - this.queueMemory;
  }

  /** Drops the oldest pending delivery (counted), the lane's first; false when there is none. */
  protected dropOldest(): boolean {
    const lane = this.lane;
    if (lane !== undefined && lane.length > 0) {
      this.account(-lane.drop());
      this.dropped++;
      return true;
    }
    if (this.latest === undefined) {
      this.leaving();
      const length = this.fifo.drop();
      if (length < 0) return false;
      this.kept?.shift();
      this.account(-length - (this.sink.recordCost ?? 0));
    } else if (this.shiftLatest() === undefined) {
      return false;
    }
    this.beforeLater--;
    this.dropped++;
    return true;
  }

  /** Takes the oldest delivery off the `latest` queue; undefined when empty. */
  protected shiftLatest(): Message | undefined {
    const entry = this.latest?.shift();
    if (entry === undefined) return undefined;
    this.account(-entry.bytes);
    return entry.msg;
  }

  /** Whether it was cut (its queues then hold nothing). */
  abstract get cancelled(): boolean;
}
