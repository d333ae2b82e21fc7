/**
 * The pending deliveries of a `latest` subscription (subscriber.ts): the
 * newest value of each topic, as messages, oldest topic first; a newer
 * value of a topic takes its pending one's place. Its entries count in
 * {@link queueMemory} at what each costs beyond its delivery's bytes.
 */
import { queueMemory } from "./byte_queue.ts";
import type { Message } from "./message.ts";

/**
 * What a `latest` queue's entry costs beyond its delivery's bytes (the
 * entry, its map slot, the held message's objects), measured on V8.
 */
const LATEST_ENTRY_BYTES = 200;

interface Pending {
  msg: Message;
  bytes: number;
}

export class LatestQueue {
  #queue: Pending[] = [];
  #head = 0;
  #byTopic = new Map<string, Pending>();

  get length(): number {
    return this.#queue.length - this.#head;
  }

  /**
   * Queues `msg` (its delivery `bytes`), or puts it in the place of its
   * topic's pending value: the bytes it adds (less the older value's when
   * it replaced one, `replaced` then true).
   */
  push(msg: Message, bytes: number): { added: number; replaced: boolean } {
    const previous = this.#byTopic.get(msg.topic);
    if (previous !== undefined) {
      const added = bytes - previous.bytes;
      previous.msg = msg;
      previous.bytes = bytes;
      return { added, replaced: true };
    }
    const entry = { msg, bytes };
    this.#queue.push(entry);
    queueMemory.bytes += LATEST_ENTRY_BYTES;
    this.#byTopic.set(msg.topic, entry);
    return { added: bytes, replaced: false };
  }

  /** Takes the oldest pending delivery off; undefined when empty. */
  shift(): Pending | undefined {
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
    queueMemory.bytes -= LATEST_ENTRY_BYTES;
    if (this.#byTopic.get(entry.msg.topic) === entry) this.#byTopic.delete(entry.msg.topic);
    return entry;
  }

  /** Lets every pending delivery go. */
  clear(): void {
    queueMemory.bytes -= this.length * LATEST_ENTRY_BYTES;
    this.#queue = [];
    this.#head = 0;
    this.#byTopic.clear();
  }
}
