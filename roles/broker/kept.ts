/**
 * A queue group's delivery as it was published, kept beside what a member
 * was sent (its queued record, an MQTT session's PUBLISH in flight) for as
 * long as it may be given back to another member (give_back.ts): the value
 * in the form and codec it came in (a JSON text, MessagePack bytes, an MQTT
 * payload with its properties) and the publisher's QoS. Rebuilt from what
 * the member was sent, a native member could get the string "123" back as
 * the number 123 (an MQTT payload has no type), at the QoS of the first
 * delivery (stop-47 Limits). With it, a count of its give-backs (bounded:
 * {@link MAX_GIVE_BACKS}).
 */
import { EncodedValue, Message } from "./message.ts";
import { queueMemory } from "./byte_queue.ts";

/** Give-backs of one delivery at most: the next is counted dropped (`queue_groups.given_up`). */
export const MAX_GIVE_BACKS = 3;

/** What a kept delivery is counted at beyond its value's and topic's bytes (its objects). */
const KEPT_BYTES = 160;

/**
 * What is kept of a delivery beside its record: a {@link Kept}; or, where
 * the record holds the value as published (an MQTT payload in an MQTT
 * PUBLISH: the bytes that came), a number, the publisher's QoS and the
 * give-backs so far ({@link inRecord}); undefined for a record read back
 * from disk (read from the record, at the QoS it went at).
 */
export type KeptForm = Kept | number | undefined;

/** The publisher's QoS and `msg`'s give-backs so far, for a record that holds its value as published. */
export function inRecord(msg: Message): number {
  return (msg instanceof Kept ? msg.givenBack << 2 : 0) | msg.qos;
}

/** A delivery as published, kept for a give-back. */
export class Kept extends Message {
  /** Times it was given back to another member already. */
  givenBack = 0;
  /** What it is counted at (see {@link keptCost}). */
  readonly cost: number;

  constructor(topic: string, value: unknown, retained: boolean, qos: number) {
    super(topic, value, retained);
    this.qos = qos;
    this.cost = KEPT_BYTES + topic.length + valueCost(value);
  }

  /** Ready to be delivered again: no encoding cached from an earlier delivery (slab views). */
  fresh(): this {
    this.encoded = undefined;
    this.targets = undefined;
    return this;
  }
}

function valueCost(value: unknown): number {
  if (value instanceof EncodedValue) return value.byteLength;
  if (typeof value === "string") return 3 * value.length;
  // A plain value from the process itself (a `$SYS` statistic): small.
  return 64;
}

/**
 * What to keep of `msg`, delivered to a queue group member, should it be
 * given back: itself when it is kept already (a give-back's, its count with
 * it); undefined for a record read back from disk (an empty topic: its
 * bytes are all there is).
 */
export function keep(msg: Message): Kept | undefined {
  if (msg instanceof Kept) return msg;
  if (msg.topic === "") return undefined;
  const value = msg.value instanceof EncodedValue ? msg.value.detach() : msg.value;
  return new Kept(msg.topic, value, msg.retained, msg.qos);
}

/** What a kept delivery is counted at in memory (0 for none, or a number). */
export function keptCost(kept: KeptForm): number {
  return typeof kept === "object" ? kept.cost : 0;
}

/**
 * What is kept of the deliveries of a queue group member's queue
 * ({@link KeptForm}), one per record, oldest first, counted in
 * {@link queueMemory} (so in `--max-memory`).
 */
export class KeptQueue {
  #items: KeptForm[] = [];
  #head = 0;
  /** What they are counted at. */
  bytes = 0;

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(kept: KeptForm): void {
    this.#items.push(kept);
    this.#count(keptCost(kept));
  }

  /** The oldest (undefined when none, or a record read back). */
  shift(): KeptForm {
    const items = this.#items;
    if (this.#head >= items.length) return undefined;
    const kept = items[this.#head];
    items[this.#head++] = undefined;
    this.#count(-keptCost(kept));
    if (this.#head === items.length) {
      items.length = 0;
      this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= items.length) {
      this.#items = items.slice(this.#head);
      this.#head = 0;
    }
    return kept;
  }

  clear(): void {
    this.#count(-this.bytes);
    this.#items = [];
    this.#head = 0;
  }

  #count(delta: number): void {
    this.bytes += delta;
    queueMemory.bytes += delta;
  }
}
