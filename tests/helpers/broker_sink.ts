/**
 * A fake transport for the broker core's unit tests: it records what is
 * written, holds a settable number of pending bytes, and drains when the
 * test says so.
 */
import type { DistError } from "../../wire/mod.ts";
import { EncodedValue } from "../../roles/broker/subscriber.ts";
import {
  type Message,
  PendingBudget,
  type Sink,
  type Subscription,
} from "../../roles/broker/mod.ts";

export interface Delivered {
  sid: number;
  topic: string;
  value: unknown;
  retained: boolean;
}

/** The value a subscriber gets: a value kept encoded (a retained one) decoded, as a front end does. */
function delivered(msg: Message): unknown {
  return msg.value instanceof EncodedValue ? msg.value.decode() : msg.value;
}

export class FakeSink implements Sink {
  pendingBytes = 0;
  readonly queued = new PendingBudget();
  closed = false;
  /** Bytes each delivery takes. */
  size = 100;
  /** When true, written bytes stay pending (a subscriber that stopped reading). */
  stalled = false;
  readonly written: Delivered[] = [];
  readonly created: { sid: number; topic: string }[] = [];
  slowError: DistError | undefined;
  #waiters: { bytes: number; fn: () => void }[] = [];

  sizeOf(_msg: Message, _sub: Subscription): number {
    return this.size;
  }

  write(msg: Message, sub: Subscription): void {
    this.written.push({
      sid: sub.sid,
      topic: msg.topic,
      value: delivered(msg),
      retained: msg.retained,
    });
    if (this.stalled) this.pendingBytes += this.size;
  }

  encode(msg: Message, sub: Subscription): Uint8Array {
    const d = { sid: sub.sid, topic: msg.topic, value: delivered(msg), retained: msg.retained };
    const json = new TextEncoder().encode(JSON.stringify(d));
    // Padded to `size`, as the transport would count it.
    const out = new Uint8Array(Math.max(this.size, json.length + 4));
    new DataView(out.buffer).setUint32(0, json.length);
    out.set(json, 4);
    return out;
  }

  writeEncoded(bytes: Uint8Array, _sub: Subscription): void {
    const len = new DataView(bytes.buffer, bytes.byteOffset).getUint32(0);
    this.written.push(JSON.parse(new TextDecoder().decode(bytes.subarray(4, 4 + len))));
    if (this.stalled) this.pendingBytes += this.size;
  }

  whenDrained(bytes: number, fn: () => void): void {
    this.#waiters.push({ bytes, fn });
  }

  slow(_sub: Subscription, err: DistError): void {
    this.slowError = err;
  }

  topicCreated(sub: Subscription, topic: string): void {
    this.created.push({ sid: sub.sid, topic });
  }

  hold(_msg: Message): void {}

  /** The transport wrote everything out: pending drops to 0 and waiters run. */
  drain(): void {
    this.stalled = false;
    this.pendingBytes = 0;
    const waiters = this.#waiters.splice(0);
    for (const w of waiters) w.fn();
  }

  /** Values written, in order. */
  values(): unknown[] {
    return this.written.map((d) => d.value);
  }
}
