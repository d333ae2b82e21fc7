/**
 * A subscription's side of delivery: a bounded pending buffer and what
 * happens when it fills (the policy), independent of any protocol. The
 * front end gives each subscription a {@link Sink}: the transport that
 * carries its deliveries (one connection may carry several subscriptions).
 *
 * While the subscriber keeps up, a delivery goes straight to the sink. Once
 * the sink holds more than the subscription lets it, deliveries wait in the
 * subscription's queue (as encoded bytes, or as messages for `latest`) and
 * move to the sink as it drains. Pending bytes are
 * the queue's plus the sink's; past `maxPending` the policy decides:
 *
 * - `disconnect` (default): the subscriber is cut off with SLOW_CONSUMER;
 * - `drop-oldest`: the oldest pending deliveries are dropped (counted);
 * - `latest`: only the newest pending value per topic is kept (a newer value
 *   replaces a pending one in place), then the oldest go as with drop-oldest.
 *
 * A subscription starts held: deliveries queue until `release()`, so the
 * front end can answer the subscribe first, and the retained snapshot goes
 * out before anything live.
 */
import { DistError } from "../../wire/mod.ts";
import { ByteQueue } from "./byte_queue.ts";

export type Policy = "disconnect" | "drop-oldest" | "latest";
export const POLICIES: readonly Policy[] = ["disconnect", "drop-oldest", "latest"];

/**
 * A value a front end keeps in its encoded form (e.g. the JSON text of a
 * publish, passed through to JSON subscribers without being parsed). The
 * core only asks its size and whether it is null; other front ends decode it.
 */
export abstract class EncodedValue {
  /** Bytes of the encoded form. */
  abstract readonly byteLength: number;
  /** Whether it encodes null (a publish that clears the retained value). */
  abstract readonly isNull: boolean;
  /** The value itself, for a front end that speaks another encoding. */
  abstract decode(): unknown;
  /** A form that shares no buffer with anything else, for keeping long. */
  abstract detach(): EncodedValue;
}

/** What is delivered: shared by every subscriber it goes to. */
export class Message {
  readonly topic: string;
  /** A plain value, or an {@link EncodedValue}; replaced only by its detached form. */
  value: unknown;
  readonly retained: boolean;
  /**
   * Free for front ends: the delivery encoded once per codec (indexed by a
   * codec number the front end chooses), copied to every subscriber.
   */
  encoded: (Uint8Array | undefined)[] | undefined = undefined;

  constructor(topic: string, value: unknown, retained = false) {
    this.topic = topic;
    this.value = value;
    this.retained = retained;
  }
}

/** The transport of a subscription's deliveries, as the front end provides it. */
export interface Sink {
  /** Bytes given to the transport and not yet written out. */
  readonly pendingBytes: number;
  readonly closed: boolean;
  /**
   * Bytes the delivery takes on this transport (for the pending count of a
   * `latest` queue). The sink encodes it now, as the message's value may be
   * valid only during `publish()`.
   */
  sizeOf(msg: Message, sub: Subscription): number;
  /** Puts one delivery on the transport. */
  write(msg: Message, sub: Subscription): void;
  /**
   * The delivery as the bytes `writeEncoded` takes, to wait in a queue: a
   * view valid until the next call (it is copied at once).
   */
  encode(msg: Message, sub: Subscription): Uint8Array;
  /** Puts a delivery `encode` produced on the transport. */
  writeEncoded(bytes: Uint8Array, sub: Subscription): void;
  /** Calls `fn` once `pendingBytes` is at most `bytes` (or the sink closed). */
  whenDrained(bytes: number, fn: () => void): void;
  /** The subscriber could not keep up and its policy says cut it off. */
  slow(sub: Subscription, err: DistError): void;
  /** A topic that `sub` covers has just appeared. */
  topicCreated(sub: Subscription, topic: string): void;
  /**
   * The delivery will wait in a queue for a while, possibly long after
   * others of its time are gone: it should hold no shared buffers.
   */
  hold(msg: Message): void;
}

export interface SubscriptionOptions {
  sid: number;
  /** The normalised pattern, e.g. `/telephony/+`. */
  pattern: string;
  segments: readonly string[];
  group?: string;
  policy?: Policy;
  /** Most bytes pending (queued here plus in the sink) before the policy applies. */
  maxPending: number;
}

/** Most bytes the sink is filled to from the queue: the rest waits here, where it can be dropped. */
const FILL_BYTES = 256 * 1024;

interface Pending {
  msg: Message;
  bytes: number;
}

export class Subscription {
  readonly sid: number;
  readonly pattern: string;
  readonly segments: readonly string[];
  readonly group: string | undefined;
  readonly policy: Policy;
  readonly maxPending: number;
  readonly sink: Sink;
  /** Deliveries handed to the sink. */
  delivered = 0;
  /** Deliveries dropped or superseded by the policy. */
  dropped = 0;
  /** Free for the front end (e.g. the subscription's encoded sid). */
  data: unknown = undefined;

  /** Pending deliveries of `disconnect` and `drop-oldest`, encoded: bytes, no objects. */
  #fifo = new ByteQueue();
  /** Pending deliveries of `latest`, as messages (a newer one replaces one in place). */
  #queue: Pending[] = [];
  #head = 0;
  #queuedBytes = 0;
  /** For `latest`: the pending delivery of each topic. */
  #latest: Map<string, Pending> | undefined;
  #snapshot: Message[] | undefined;
  #snapshotAt = 0;
  #held = true;
  #waiting = false;
  #cancelled = false;
  /** The sink may hold this much before deliveries queue here. */
  #directLimit: number;
  /** Queued deliveries move to the sink while it holds less than this. */
  #fillLimit: number;

  constructor(sink: Sink, options: SubscriptionOptions) {
    this.sink = sink;
    this.sid = options.sid;
    this.pattern = options.pattern;
    this.segments = options.segments;
    this.group = options.group;
    this.policy = options.policy ?? "disconnect";
    this.maxPending = options.maxPending;
    this.#fillLimit = Math.max(1, Math.min(FILL_BYTES, Math.floor(this.maxPending / 4)));
    // Cutting off needs no queue: the sink itself may hold up to the limit.
    this.#directLimit = this.policy === "disconnect" ? this.maxPending : this.#fillLimit;
    if (this.policy === "latest") this.#latest = new Map();
  }

  /** Bytes waiting here (not counting the sink's). */
  get queuedBytes(): number {
    return this.#queuedBytes + this.#fifo.bytes;
  }

  /** Deliveries waiting here, retained ones included. */
  get queued(): number {
    return this.#queue.length - this.#head + this.#fifo.length +
      (this.#snapshot === undefined ? 0 : this.#snapshot.length - this.#snapshotAt);
  }

  get cancelled(): boolean {
    return this.#cancelled;
  }

  /**
   * Retained values to send before anything live. They count against no
   * limit (they are shared, not copied) and move to the sink as it drains.
   * Precondition: still held.
   */
  setSnapshot(messages: Message[]): void {
    if (messages.length > 0) this.#snapshot = messages;
  }

  /** Lets deliveries flow: the snapshot first, then what queued meanwhile. */
  release(): void {
    if (!this.#held || this.#cancelled) return;
    this.#held = false;
    this.#pump();
  }

  /** Delivers one message, or queues it, applying the policy when pending passes the limit. */
  deliver(msg: Message): void {
    if (this.#cancelled) return;
    const sink = this.sink;
    if (
      !this.#held && this.#head === this.#queue.length && this.#fifo.length === 0 &&
      this.#snapshot === undefined && sink.pendingBytes < this.#directLimit
    ) {
      sink.write(msg, this);
      this.delivered++;
      return;
    }
    this.#enqueue(msg);
  }

  /** Stops all delivery and frees what is pending. */
  cancel(): void {
    this.#cancelled = true;
    this.#queue = [];
    this.#head = 0;
    this.#queuedBytes = 0;
    this.#fifo.clear();
    this.#latest?.clear();
    this.#snapshot = undefined;
  }

  #enqueue(msg: Message): void {
    if (this.#latest === undefined) {
      this.#fifo.push(this.sink.encode(msg, this));
    } else {
      this.#enqueueLatest(msg);
    }
    if (this.queuedBytes + this.sink.pendingBytes > this.maxPending) {
      if (this.policy === "disconnect") {
        const pending = this.queuedBytes + this.sink.pendingBytes;
        this.sink.slow(
          this,
          new DistError(
            "SLOW_CONSUMER",
            `Subscriber of ${this.pattern} (sid ${this.sid}) fell behind: ` +
              `${pending} bytes pending, more than max-pending ${this.maxPending}`,
          ),
        );
        return;
      }
      while (this.queuedBytes + this.sink.pendingBytes > this.maxPending && this.#dropOldest()) {
        this.dropped++;
      }
    }
    this.#arm();
  }

  /** Drops the oldest pending delivery; false when there is none. */
  #dropOldest(): boolean {
    return this.#latest === undefined
      ? this.#fifo.shift() !== undefined
      : this.#shift() !== undefined;
  }

  #enqueueLatest(msg: Message): void {
    const bytes = this.sink.sizeOf(msg, this);
    const previous = this.#latest?.get(msg.topic);
    if (previous !== undefined) {
      // The subscriber has not seen the older value yet: it only needs the newest.
      this.#queuedBytes += bytes - previous.bytes;
      previous.msg = msg;
      previous.bytes = bytes;
      this.dropped++;
    } else {
      const entry = { msg, bytes };
      this.#queue.push(entry);
      this.#latest?.set(msg.topic, entry);
      this.#queuedBytes += bytes;
    }
    // A `latest` queue keeps one value per topic for as long as it takes,
    // so its entries must not pin buffers shared with newer messages.
    this.sink.hold(msg);
  }

  /** Takes the oldest delivery off the `latest` queue; undefined when empty. */
  #shift(): Message | undefined {
    if (this.#head === this.#queue.length) return undefined;
    const entry = this.#queue[this.#head];
    this.#queue[this.#head++] = undefined as unknown as Pending;
    if (this.#head === this.#queue.length) {
      this.#queue = [];
      this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
    this.#queuedBytes -= entry.bytes;
    if (this.#latest?.get(entry.msg.topic) === entry) this.#latest.delete(entry.msg.topic);
    return entry.msg;
  }

  /** Waits for the sink to drain, then pumps (once at a time). */
  #arm(): void {
    if (this.#waiting || this.#held || this.#cancelled) return;
    this.#waiting = true;
    this.sink.whenDrained(this.#fillLimit >> 1, () => {
      this.#waiting = false;
      this.#pump();
    });
  }

  /** Moves the snapshot, then the queue, to the sink while it has room. */
  #pump(): void {
    const sink = this.sink;
    while (!this.#cancelled && !sink.closed && sink.pendingBytes < this.#fillLimit) {
      let msg: Message | undefined;
      if (this.#snapshot !== undefined) {
        msg = this.#snapshot[this.#snapshotAt++];
        if (this.#snapshotAt === this.#snapshot.length) {
          this.#snapshot = undefined;
          this.#snapshotAt = 0;
        }
      } else if (this.#latest === undefined) {
        const bytes = this.#fifo.shift();
        if (bytes === undefined) return;
        sink.writeEncoded(bytes, this);
        this.delivered++;
        continue;
      } else {
        msg = this.#shift();
        if (msg === undefined) return;
      }
      sink.write(msg, this);
      this.delivered++;
    }
    if (!this.#cancelled && !sink.closed && this.queued > 0) this.#arm();
  }
}
