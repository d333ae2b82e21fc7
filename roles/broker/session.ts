/**
 * One connection to the broker's wire front end (front.ts): the sink of its
 * subscriptions, whose deliveries are pre-encoded frames copied into its
 * outbound buffer, and a publisher the fan-out may hold back.
 */
import { getLogger } from "@logtape/logtape";
import {
  type CodecName,
  DistError,
  type FramedConn,
  OutBuffer,
  type Peer,
  TopicCache,
} from "../../wire/mod.ts";
import { cut } from "../../wire/_log.ts";
import type { Publisher } from "./fanout.ts";
import { pickBytes, refusedFrom } from "./group_delivery.ts";
import type { ReadProof } from "./group_proof.ts";
import { askPeer } from "../../wire/read_proof.ts";
import { clientSource } from "../../auth/mod.ts";
import { deliveryHead, deliveryWriter, holdMessage, writeDelivery } from "./frames.ts";
import { RawJson, RawMsgpack } from "./raw_json.ts";
import { type Message, PendingBudget, type Sink, type Subscription } from "./subscriber.ts";

const log = getLogger(["dist", "broker"]);

/** What `encode` gives for a delivery it could not encode: skipped by `writeEncoded`. */
const NOTHING = new Uint8Array(0);

/** What a session reports to the front end that owns it. */
export interface SessionOwner {
  /** Deliveries too large for a frame. */
  undeliverable: number;
  /** Cuts `session` off as a slow consumer. */
  cutOff(session: Session, err: DistError): void;
}

/** One connection: the sink of its subscriptions, and a publisher (held back by the fan-out). */
export class Session implements Sink, Publisher {
  readonly peer: Peer;
  readonly codec: CodecName;
  readonly subs = new Map<number, Subscription>();
  /** What the connection's subscriptions have queued: one max-pending for them all. */
  readonly queued = new PendingBudget();
  /** The topic of this connection's last fast-path publish. */
  readonly topics = new TopicCache();
  /** Bad fire-and-forget publishes answered so far (see NOTIFICATION_ERRORS_ANSWERED in front.ts). */
  badNotifications = 0;
  /** The smallest value refused as past the frame limit (see Sink.refusedBytes). */
  refusedBytes = Infinity;
  /** Cut off as a slow consumer: closing once its last bytes are out; nothing more is handled. */
  cutOff = false;
  /** Kept by the fan-out (see Publisher). */
  waiting = 0;
  heldBack = false;
  readonly #front: SessionOwner;

  /** Lent to each fast-path publish of this connection in turn (see RawJson.lend). */
  readonly value: RawJson | RawMsgpack;
  /**
   * The largest delivery sent (frame payload bytes): the broker's own limit,
   * or the peer's if it told a smaller one at hello (`max_frame`), since it
   * would close the connection on a larger frame, and get the same retained
   * value again each time it came back.
   */
  readonly #frameLimit: number;

  constructor(peer: Peer, front: SessionOwner) {
    this.peer = peer;
    this.codec = peer.codec.name;
    this.#front = front;
    this.value = this.codec === "json" ? RawJson.lender() : RawMsgpack.lender();
    this.#frameLimit = Math.min(peer.conn.maxFrame, peer.remote.maxFrame ?? Infinity);
  }

  get pendingBytes(): number {
    return this.peer.conn.pendingBytes;
  }

  /** The largest delivery it is sent (frame payload bytes; see #frameLimit). */
  get frameLimit(): number {
    return this.#frameLimit;
  }

  /** Its socket, for a queue group to see what its client has not taken (wire/send_queue.ts). */
  get socket(): FramedConn {
    return this.peer.conn;
  }

  /** What its answers showed (see Sink.proof). */
  proof: ReadProof | undefined = undefined;

  /**
   * Asks its client `sys.ping` under the id `nonce` (see Sink.askRead): any
   * answer carrying it, UNKNOWN_METHOD included, says it read what was before.
   */
  askRead(nonce: number, answered: () => void): number {
    return this.cutOff ? -1 : askPeer(this.peer, nonce, answered);
  }

  /** Its user, else its address: waiting matches rotate over sources (see matching.ts). */
  get source(): string {
    return clientSource(this.peer.identity?.user, this.peer.conn.remoteHost);
  }

  get closed(): boolean {
    return this.peer.conn.isClosed;
  }

  sizeOf(msg: Message, sub: Subscription): number {
    // It will wait: its head is encoded now (the value may be a borrowed view).
    return deliveryHead(msg, this.codec).length + (sub.data as Uint8Array).length;
  }

  /**
   * Appends a delivery to the connection's output, counted and its write
   * started once a turn for all of them (see Outbound.later).
   */
  write(msg: Message, sub: Subscription): void {
    // One writer for every connection: the message is stored once per message, not per delivery.
    const writer = deliveryWriter(msg, this.codec, sub.data as Uint8Array, this.#frameLimit);
    let sent: boolean;
    try {
      sent = this.peer.conn.sendWith(writer, true);
    } catch (err) {
      return this.#unencodable(msg, err);
    }
    const size = writer.size;
    if (!sent || size <= this.#frameLimit) return;
    const bytes = pickBytes(msg); // 0: sized unknown, marks nothing
    const over = size - this.#frameLimit;
    if (bytes > 0) this.refusedBytes = Math.min(this.refusedBytes, refusedFrom(bytes, over));
    this.#undeliverable(sub, size, msg.topic);
  }

  /** Scratch for `encode`: each delivery is copied out of it at once. */
  readonly #encoded = new OutBuffer(0);
  /**
   * The last view `encode` returned, given again while it has the same
   * bytes and length (a message's deliveries to a connection's queues
   * differ only in their sid): no view made per queued delivery.
   */
  #view: Uint8Array = new Uint8Array(0);

  encode(msg: Message, sub: Subscription): Uint8Array {
    const out = this.#encoded;
    out.length = 0;
    try {
      writeDelivery(out, msg, this.codec, sub.data as Uint8Array);
    } catch (err) {
      this.#unencodable(msg, err);
      return NOTHING;
    }
    const view = this.#view;
    if (view.buffer === out.bytes.buffer && view.length === out.length) return view;
    return this.#view = out.bytes.subarray(0, out.length);
  }

  writeEncoded(bytes: Uint8Array, sub: Subscription): void {
    if (bytes.length === 0) return; // counted when it was encoded
    if (bytes.length - 4 > this.#frameLimit) return this.#undeliverable(sub, bytes.length - 4);
    this.peer.conn.sendRaw(bytes);
  }

  /**
   * Skips a delivery its codec cannot carry (a value too deep for
   * MessagePack): counted as undeliverable and logged, never thrown into the
   * fan-out, where it ended the publisher's request after the subscribers
   * before this one were served (hostile review 36 J8).
   */
  #unencodable(msg: Message, err: unknown): void {
    this.#front.undeliverable++;
    log[this.#front.undeliverable <= 3 ? "warn" : "debug"](
      "Delivery on {topic} to {peer} dropped: {why}",
      { topic: cut(msg.topic), peer: this.peer.remote.name, why: (err as Error).message },
    );
  }

  /** Skips a delivery of `bytes` past the frame limit: counted, logged, and the subscriber told. */
  #undeliverable(sub: Subscription, bytes: number, topic?: string): void {
    this.#front.undeliverable++;
    log[this.#front.undeliverable <= 3 ? "warn" : "debug"](
      "Delivery on {topic} to {peer} dropped: {bytes} bytes exceed its frame limit of {limit}",
      {
        topic: cut(topic ?? sub.pattern),
        peer: this.peer.remote.name,
        bytes,
        limit: this.#frameLimit,
      },
    );
    // A notice, as topic_created: a subscriber this far behind goes without it.
    if (this.pendingBytes < sub.maxPending) {
      const notice = { sid: sub.sid, bytes, limit: this.#frameLimit };
      this.peer.notify("broker.undeliverable", topic === undefined ? notice : { ...notice, topic });
    }
  }

  whenDrained(bytes: number, fn: () => void): void {
    this.peer.conn.drained(bytes).then(fn);
  }

  slow(_sub: Subscription, err: DistError): void {
    this.#front.cutOff(this, err);
  }

  hold(msg: Message): void {
    holdMessage(msg);
  }

  holdBack(): void {
    this.peer.holdInput();
  }

  goOn(): void {
    this.peer.holdInput(false);
  }

  topicCreated(sub: Subscription, topic: string): void {
    // A notice, not a message: a subscriber already this far behind goes without it.
    if (this.pendingBytes < sub.maxPending) {
      this.peer.notify("broker.topic_created", { sid: sub.sid, topic });
    }
  }
}
