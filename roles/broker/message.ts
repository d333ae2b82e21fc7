/**
 * The vocabulary of delivery, shared by the core and every front end: what
 * is delivered (a {@link Message}, its value possibly still encoded), the
 * transport a front end gives each subscription (a {@link Sink}), what a
 * connection's subscriptions have queued together ({@link PendingBudget}),
 * and a retained snapshot read as a cursor. The subscription's queue and
 * its policy live in subscriber.ts.
 */
import type { DistError } from "../../wire/mod.ts";
import type { Subscription } from "./subscriber.ts";
import type { ReadProof } from "./group_proof.ts";
import type { Targets } from "./subscriptions.ts";
import type { KeptForm } from "./kept.ts";

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
  /**
   * Its JSON text as UTF-8 when it holds one as it is, to go to JSON
   * subscribers without being decoded (a view, valid as the value is);
   * undefined when it has none.
   */
  jsonText(): Uint8Array | undefined {
    return undefined;
  }
  /** A form that shares no buffer with anything else, for keeping long. */
  abstract detach(): EncodedValue;
}

/**
 * A message's value's bytes where they are known at no cost: an encoded
 * value's (an MQTT payload's with its MQTT 5 properties), a string's
 * length; else 0 (sized unknown).
 */
export function knownBytes(msg: Message): number {
  const value = msg.value;
  if (value instanceof EncodedValue) return value.byteLength;
  return typeof value === "string" ? value.length : 0;
}

/** What is delivered: shared by every subscriber it goes to. */
export class Message {
  readonly topic: string;
  /** A plain value, or an {@link EncodedValue}; replaced only by its detached form. */
  value: unknown;
  readonly retained: boolean;
  /**
   * The publisher's MQTT QoS: a delivery goes out at most at this level and
   * at most at its subscription's. Native publishes ask no less than their
   * subscribers do (2); an MQTT front end sets its publishes' own.
   */
  qos = 2;
  /**
   * Free for front ends: the delivery encoded once per codec (indexed by a
   * codec number the front end chooses), copied to every subscriber.
   */
  encoded: (Uint8Array | undefined)[] | undefined = undefined;
  /**
   * The subscriptions it goes to, while the fan-out makes its deliveries
   * (undefined otherwise: a retained value, one read from a queue): a front
   * end sends one copy to a client whose subscriptions overlap
   * (mqtt/one_copy.ts).
   */
  targets: Targets<Subscription> | undefined = undefined;

  constructor(topic: string, value: unknown, retained = false) {
    this.topic = topic;
    this.value = value;
    this.retained = retained;
  }
}

/** What the subscriptions of one sink (one connection) have queued, together. */
export class PendingBudget {
  /** Bytes queued by all of them (kept by the subscriptions). */
  bytes = 0;
  /** A subscription that held the largest queue when it last grew: the first to shed. */
  largest: Subscription | undefined = undefined;
}

/** Retained values to deliver before anything live, read as they are needed. */
export interface Snapshot {
  /**
   * The next retained message; undefined when there are no more, or null
   * when `budget` ran out first (ask again in a later turn).
   */
  next(budget: { left: number }): Message | null | undefined;
}

/** The transport of a subscription's deliveries, as the front end provides it. */
export interface Sink {
  /** Bytes given to the transport and not yet written out. */
  readonly pendingBytes: number;
  /** What this transport's subscriptions have queued (the sink's own, shared by them). */
  readonly queued: PendingBudget;
  readonly closed: boolean;
  /**
   * Bytes the delivery takes on this transport (for the pending count of a
   * `latest` queue). The sink encodes it now, as the message's value may be
   * valid only during `publish()`.
   */
  sizeOf(msg: Message, sub: Subscription): number;
  /** Puts one delivery on the transport. */
  write(msg: Message, sub: Subscription): void;
  /** Where its subscriptions' rows are kept (an MQTT persistent session's), told as snapshots end. */
  readonly journal?: { snapshotDone(sub: Subscription): void };
  /**
   * The delivery as the bytes `writeEncoded` takes, to wait in a queue: a
   * view valid until the next call (it is copied at once); `lane`: in a
   * lossy lane ({@link lossyLane}), kept nowhere else.
   */
  encode(msg: Message, sub: Subscription, lane?: boolean): Uint8Array;
  /**
   * What each delivery waiting in a queue costs beyond its encoded bytes,
   * counted in the queue (within max-pending): an MQTT persistent
   * session's row on disk (mqtt/journal.ts ROW_BYTES). Absent: nothing.
   */
  readonly recordCost?: number;
  /**
   * Puts a delivery `encode` produced on the transport; `kept`: a queue
   * group's, as published (kept.ts), should it go to another member.
   */
  writeEncoded(bytes: Uint8Array, sub: Subscription, kept?: KeptForm): void;
  /**
   * What to keep of a queue group's delivery beside its record (kept.ts);
   * absent: the delivery as published (keep).
   */
  readonly keepOf?: (msg: Message) => KeptForm;
  /**
   * Calls `fn` once `pendingBytes` is at most `bytes` (or the sink closed);
   * while it is {@link full}, only if `passes` says the next delivery may go.
   */
  whenDrained(bytes: number, fn: () => void, passes?: () => boolean): void;
  /**
   * Whether `sub`'s delivery of `msg` is not to go at all (an MQTT session's
   * one copy: another of its subscriptions carries it), asked before it is
   * queued: such a skip costs a look, not an encoding. Absent: every one goes.
   */
  skips?(msg: Message, sub: Subscription): boolean;
  /**
   * One of its subscriptions, cut, still delivers what it queued (an MQTT
   * UNSUBSCRIBE): the others' deliveries wait behind it, in their queues,
   * until it is done (Subscription.goOn). Absent: none does.
   */
  readonly draining?: boolean;
  /**
   * The transport takes no more deliveries for now, whatever its bytes (an
   * MQTT in-flight window): they wait in the subscription's queue, and
   * `whenDrained` fires only once it has room again. Absent: never full.
   * A {@link lossy} delivery is not held by it.
   */
  readonly full?: boolean;
  /**
   * A delivery it may lose (MQTT QoS 0) while connected: not held by
   * {@link full} (MQTT 5 §4.9), written at once while its socket has room,
   * dropped at once (counted, not encoded) by a drop-oldest subscription
   * when it has none (subscriber.ts). Absent: none is.
   */
  lossy?(msg: Message, sub: Subscription): boolean;
  /**
   * Whether a {@link lossy} delivery that must wait while the socket has room may wait in a lane
   * of its own, not held by {@link full} (subscriber.ts; MQTT QoS 0 kept in memory only).
   */
  readonly lossyLane?: boolean;
  /** Whether a queued delivery is one (connected or not), by the first byte of what `encode` made. */
  lossyRecord?(first: number): boolean;
  /**
   * Whether its protocol has a name for `topic` (MQTT none for `/` or a
   * topic with `#` in it): a queue group gives such a delivery to a member
   * whose sink has one (group_delivery.ts). Absent: every topic.
   */
  names?(topic: string): boolean;
  /**
   * The smallest delivery (its value's encoded bytes, {@link knownBytes},
   * with its topic's: group_delivery.ts pickBytes) it refused as larger than the
   * frame (or MQTT packet) limit its client declared: a queue group passes
   * over such a member for deliveries of that size or more while another
   * member can take them, and gives the refused one to another (absent or
   * Infinity: none refused).
   */
  readonly refusedBytes?: number;
  /**
   * Its socket and the bytes written to it, for a queue group to ask the
   * kernel what the client has not taken yet (wire/send_queue.ts). Absent: unknown.
   */
  readonly socket?: { readonly conn: Deno.Conn; readonly bytesOut: number };
  /**
   * Sends its client, behind everything queued on its connection, something
   * it must answer and cannot answer unread (`nonce` in it: a request's id,
   * a WebSocket ping's payload), calling `answered` when it does: a queue
   * group's proof that the client reads (group_proof.ts). Absent: nothing
   * can be asked (MQTT over TCP).
   * @returns where the connection's output (as `socket.bytesOut` counts it)
   * ends behind it, or -1 when nothing was sent
   */
  readonly askRead?: (nonce: number, answered: () => void) => number;
  /** What its answers have shown (kept by group_proof.ts). */
  proof?: ReadProof;
  /** The subscriber could not keep up and its policy says cut it off. */
  slow(sub: Subscription, err: DistError): void;
  /**
   * Kept for a client that is away (an MQTT persistent session): the memory
   * guard never cuts it off, but holds such sessions to their share
   * (memory.ts AWAY_SHARE). Absent: false.
   */
  readonly kept?: boolean;
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
  /** Only topics at the pattern's own depth, not its subtree (an MQTT filter without `#`). */
  exact?: boolean;
  /**
   * Most bytes pending on the sink's connection (every queue of its
   * subscriptions plus the sink's own) before the policy applies.
   */
  maxPending: number;
}
