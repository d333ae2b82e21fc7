/**
 * A {@link Subscription}: the async iterator of one subscription's
 * messages, and its buffer. A subscriber that does not keep up stops
 * reading its connection once `buffer` messages or `bufferBytes` bytes
 * wait, so the broker applies the subscription's policy and this process
 * stays bounded. Made and fed by pubsub.ts.
 */
import { getLogger } from "@logtape/logtape";
import { type DistError, parseJson, type Peer, type RawDelivery } from "../wire/mod.ts";
import { cut } from "../wire/_log.ts";
import { HeldValues } from "./held_values.ts";
import type { Delivery, Policy, Subscribed, Undeliverable, Unsubscribed } from "./contracts/mod.ts";

const log = getLogger(["dist", "client"]);

/** What ends a subscription: its connection's broker methods (pubsub.ts). */
export interface SubscriptionOwner {
  unsubscribe(sub: Subscription): Promise<Unsubscribed | undefined>;
}

/** A message as a subscription yields it. */
export type Message = Delivery;

/** How a subscription is made (`Connection.subscribe`). */
export interface SubscribeOptions {
  /** Subscribers of one group share the messages: each goes to one of them. */
  group?: string;
  /**
   * What the broker does when this subscriber falls behind (default
   * `disconnect`): `drop-oldest` and `latest` drop pending messages (the
   * broker counts them, `dropped` in its sys.stats); `disconnect` cuts the
   * connection off. A connection opened with `redial: false` then ends its
   * iterators with that SLOW_CONSUMER error; one that redials subscribes
   * again, and the messages pending at the cut are lost (counted in the
   * broker's `slow_consumers`, and logged here as the broker's report).
   */
  policy?: Policy;
  /** Messages kept waiting for the iterator before reading pauses (default 1024). */
  buffer?: number;
  /**
   * Bytes of messages kept waiting for the iterator before reading pauses
   * (default 8 MiB, the broker's default `--max-pending`): large values
   * pause it long before `buffer` messages. Deliveries read as bytes wait as
   * their JSON bytes, decoded and parsed when the iterator takes them; decoded ones
   * (MessagePack) are counted by the memory their objects take.
   */
  bufferBytes?: number;
  /** Aborting it unsubscribes and ends the iterator. */
  signal?: AbortSignal;
  /**
   * Takes deliveries read as bytes (JSON connections, unless opened with
   * `byteDeliveries: false`): the value's JSON text unparsed, valid only during the call.
   * Return false to have it parsed and queued as usual.
   */
  raw?: (delivery: RawDelivery) => boolean;
  /**
   * Takes every message instead of the iterator (which then yields none and
   * ends when the subscription does), in order, parsed. Deliveries read as
   * bytes are handed over once the frames of the read that brought them
   * are handled (before the connection reads again), their values parsed
   * together: one `JSON.parse` for up to 32 KiB of small values, which
   * costs about 40 % less than one each (see README, Library). An
   * exception it throws is reported as uncaught (`reportError`: the
   * program ends, as for a timer's callback, unless it handles the global
   * `error` event); the next messages are still handed over.
   */
  onMessage?: (message: Message) => void;
  /**
   * Called with the broker's answer each time it subscribes: the first time,
   * and again on each new connection after a drop.
   */
  onSubscribed?: (answer: Subscribed) => void;
}

/** Default of {@link SubscribeOptions.bufferBytes}. */
export const BUFFER_BYTES = 8 * 1024 * 1024;

/** Messages waiting for the iterator past which reading waits for it to catch up (see #catchUp). */
const CATCH_UP = 512;

/** A topic subtree's messages; see the module comment. */
export class Subscription implements AsyncIterable<Message> {
  /** The pattern subscribed to (normalised once the broker answered). */
  topic: string;
  /** How it was subscribed. */
  readonly options: SubscribeOptions;
  /** The broker's first answer: the topics the pattern covered then. */
  answer: Subscribed | undefined;
  /** The subscription's id on the current connection. */
  sid: number = -1;
  /** Deliveries the broker skipped: larger than this connection's frame limit. */
  undeliverable = 0;
  /** Deliveries read as bytes whose value turned out not to be JSON when taken: skipped. */
  invalid = 0;
  /**
   * Waiting messages; those read as bytes kept as such until taken: a small
   * value's message waits without it (its size in #sizes is then negative),
   * a large one's as a {@link Held}.
   */
  #queue: (Message | Held)[] = [];
  /** The JSON bytes of the small values of #queue's messages waiting without them, in order. */
  #held = new HeldValues();
  /**
   * The size of each message of #queue (same indexes): `-1 - size` for a
   * message whose value waits in #held. And the size of those waiting together.
   */
  #sizes: number[] = [];
  #bytes = 0;
  #head = 0;
  #waiter: ((r: IteratorResult<Message>) => void) | undefined;
  #failer: ((err: DistError) => void) | undefined;
  #end: DistError | "done" | undefined;
  #paused: Peer | undefined;
  /** Paused until the iterator catches up (see #catchUp). */
  #soft: Peer | undefined;
  #owner: SubscriptionOwner;

  /** @ignore */
  constructor(owner: SubscriptionOwner, topic: string, options: SubscribeOptions) {
    this.#owner = owner;
    this.topic = topic;
    this.options = options;
  }

  /**
   * The broker skipped a delivery too large for this connection's frame
   * limit (`wire.maxFrame`): counted, and logged the first time.
   * @ignore
   */
  skipped(notice: Undeliverable): void {
    if (this.undeliverable++ > 0) return;
    log.warn(
      "Subscription to {topic}: the broker skipped a delivery of {bytes} bytes{on}, past this " +
        "connection's frame limit of {limit} (raise wire.maxFrame to get such values)",
      {
        topic: cut(this.topic),
        bytes: notice.bytes,
        on: notice.topic === undefined ? "" : ` on ${cut(notice.topic)}`,
        limit: notice.limit,
      },
    );
  }

  /** Messages waiting for the iterator. */
  get waiting(): number {
    return this.#queue.length - this.#head;
  }

  /** Bytes of the messages waiting for the iterator (as they came, or as estimated). */
  get waitingBytes(): number {
    return this.#bytes;
  }

  /**
   * Hands a message to the iterator, pausing reading when `buffer`
   * messages or `bufferBytes` bytes wait; a message kept waiting is
   * counted as `bytes`, or by {@link sizeOf} when not given.
   * @ignore
   */
  push(msg: Message, peer: Peer | undefined, bytes?: number): void {
    if (this.#end !== undefined) return;
    if (this.options.onMessage !== undefined) return this.call(msg);
    const w = this.#waiter;
    if (w !== undefined) {
      this.#waiter = this.#failer = undefined;
      return w({ value: msg, done: false });
    }
    this.#enqueue(msg, peer, bytes ?? sizeOf(msg.value));
  }

  /**
   * Hands over a delivery read as bytes (its frame of `bytes`, reused once
   * this returns): parsed at once when the iterator waits for it, or for
   * `onMessage` (the deliveries that wait for their read's end go to
   * on_message.ts instead), else kept as its JSON bytes and parsed when
   * taken, so what waits costs about what
   * it is counted (hostile34 Z4a: 1 MB of `[{},{},…]` parses into ~20 MB of
   * objects; 8 MiB of them waiting took an app to 400 MiB). False when the
   * value must be parsed now and is not JSON: the caller's ordinary path
   * refuses the frame.
   * @ignore
   */
  pushRaw(d: RawDelivery, peer: Peer | undefined, bytes: number): boolean {
    if (this.#end !== undefined) return true;
    if (this.#waiter !== undefined || this.options.onMessage !== undefined) {
      let value: unknown;
      try {
        value = parseJson(decoder.decode(d.value));
      } catch {
        return false;
      }
      this.push({ topic: d.topic, value, retained: d.retained, sid: d.sid }, peer, bytes);
      return true;
    }
    // The frame is reused: a small value is copied with the others waiting,
    // parsed with them a run at a time when taken (see HeldValues), its
    // message made now (one object a message, not two); a large one copied on its own.
    if (d.value.byteLength < LARGE) {
      this.#held.add(d.value);
      const msg = { topic: d.topic, value: undefined, retained: d.retained, sid: d.sid };
      this.#enqueue(msg, peer, -1 - bytes);
    } else {
      this.#enqueue(new Held(d.topic, d.value.slice(), d.retained, d.sid), peer, bytes);
    }
    return true;
  }

  /** Queues `entry` of `size` bytes (`-1 - bytes` for a message whose value waits in #held). */
  #enqueue(entry: Message | Held, peer: Peer | undefined, size: number): void {
    this.#queue.push(entry);
    this.#sizes.push(size);
    this.#bytes += size < 0 ? -1 - size : size;
    if (this.#paused !== undefined || peer === undefined) return;
    const waiting = this.waiting;
    if (
      waiting >= (this.options.buffer ?? 1024) ||
      this.#bytes >= (this.options.bufferBytes ?? BUFFER_BYTES)
    ) {
      this.#paused = peer;
      peer.conn.pauseReading();
    } else if (waiting >= CATCH_UP && this.#soft === undefined) this.#catchUp(peer);
  }

  /**
   * Reads that complete at once run as microtasks, like the iterator's own
   * steps: a read hands over hundreds of messages per step while the
   * iterator takes one, so without this a consumer that never yields to
   * the event loop falls ever further behind its own connection, and the
   * messages piling up cost the garbage collector more than their
   * handling (a queue of 40,000 made a fifth of a subscriber's CPU). So
   * once CATCH_UP wait, reading pauses until the iterator has taken them
   * or a task of the event loop has run: a consumer that waits on other
   * work (a timer, I/O) still gets its full `buffer`. The timer that ends
   * a pause is made only when none is pending: an iterator that keeps up
   * ends its pauses itself, every few hundred messages, well within a
   * timer's 1–4 ms here, and a pending one still fires after this pause
   * began (a task ran since: it may end it).
   */
  #catchUp(peer: Peer): void {
    this.#soft = peer;
    peer.conn.pauseReading();
    if (this.#timerPending) return;
    this.#timerPending = true;
    setTimeout(this.#timerFired, 0);
  }

  /** Whether a timer that ends a catch-up pause is pending (see #catchUp). */
  #timerPending = false;
  readonly #timerFired = (): void => {
    this.#timerPending = false;
    this.#endCatchUp();
  };

  #endCatchUp(): void {
    const peer = this.#soft;
    if (peer === undefined) return;
    this.#soft = undefined;
    peer.conn.resumeReading();
  }

  /** The next message; done once unsubscribed or closed. */
  next(): Promise<IteratorResult<Message>> {
    while (this.#head < this.#queue.length) {
      const held = this.#sizes[this.#head] < 0;
      const entry = this.#take();
      const value = held
        ? this.#heldValue(entry as Message)
        : entry instanceof Held
        ? this.#parse(entry)
        : entry;
      if (value !== undefined) return Promise.resolve({ value, done: false });
    }
    if (this.#end === "done") return Promise.resolve({ value: undefined, done: true });
    if (this.#end !== undefined) return Promise.reject(this.#end);
    return new Promise((resolve, reject) => {
      this.#waiter = resolve;
      this.#failer = reject;
    });
  }

  /** The first waiting entry, taken off the queue (reading resumed once half of it is). */
  #take(): Message | Held {
    const size = this.#sizes[this.#head];
    this.#bytes -= size < 0 ? -1 - size : size;
    const entry = this.#queue[this.#head++];
    if (this.#head === this.#queue.length) {
      this.#queue.length =
        this.#sizes.length =
        this.#head =
        this.#bytes =
          0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#sizes = this.#sizes.slice(this.#head);
      this.#head = 0;
    }
    if (this.#soft !== undefined && this.waiting === 0) this.#endCatchUp();
    if (
      this.#paused !== undefined && this.waiting <= (this.options.buffer ?? 1024) / 2 &&
      this.#bytes <= (this.options.bufferBytes ?? BUFFER_BYTES) / 2
    ) {
      this.#paused.conn.resumeReading();
      this.#paused = undefined;
    }
    return entry;
  }

  /** A kept large delivery's message; one whose value is not JSON (a broken broker's) is skipped. */
  #parse(held: Held): Message | undefined {
    try {
      const value = parseJson(decoder.decode(held.value));
      return { topic: held.topic, value, retained: held.retained, sid: held.sid };
    } catch (err) {
      this.notJson(held.topic, err);
      return undefined;
    }
  }

  /** `msg` with its value, the next of #held; skipped (undefined) when that is not JSON. */
  #heldValue(msg: Message): Message | undefined {
    try {
      msg.value = this.#held.take();
      return msg;
    } catch (err) {
      this.notJson(msg.topic, err);
      return undefined;
    }
  }

  /**
   * A delivery on `on` whose value turned out not to be JSON (`err`), which
   * only a broken broker sends: skipped, counted in `invalid`, logged the first time.
   * @ignore
   */
  notJson(on: string, err: unknown): void {
    if (this.invalid++ > 0) return;
    log.warn(
      "Subscription to {topic}: skipped a delivery on {on} whose value is not JSON: {error}",
      { topic: cut(this.topic), on: cut(on), error: cut(String(err)) },
    );
  }

  /**
   * Hands `msg` to `onMessage` (unless the subscription has ended); an
   * exception from it is reported as uncaught (see SubscribeOptions.onMessage).
   * @ignore
   */
  call(msg: Message): void {
    if (this.#end !== undefined) return;
    try {
      this.options.onMessage!(msg);
    } catch (err) {
      reportError(err);
    }
  }

  /** Unsubscribes when a `for await` loop is left early. */
  async return(): Promise<IteratorResult<Message>> {
    await this.unsubscribe().catch(() => {});
    return { value: undefined, done: true };
  }

  /** The subscription is its own iterator. */
  [Symbol.asyncIterator](): AsyncIterator<Message> {
    return this;
  }

  /**
   * Stops the subscription: the broker stops delivering, the iterator ends
   * after the messages already waiting.
   * @returns the broker's counts, or undefined when not connected
   */
  unsubscribe(): Promise<Unsubscribed | undefined> {
    return this.#owner.unsubscribe(this);
  }

  /**
   * Ends the iterator (`done`, or failing with `err`).
   * @ignore
   */
  end(err?: DistError): void {
    if (this.#end !== undefined) return;
    this.#end = err ?? "done";
    this.#paused?.conn.resumeReading();
    this.#paused = undefined;
    this.#endCatchUp();
    const w = this.#waiter;
    const f = this.#failer;
    this.#waiter = this.#failer = undefined;
    if (err !== undefined) f?.(err);
    else w?.({ value: undefined, done: true });
  }
}

/** Values of this many bytes or more wait on their own, smaller ones in the HeldValues. */
const LARGE = 16 * 1024;

/**
 * A delivery of a large value read as bytes, kept waiting: its value's JSON
 * bytes on their own (see {@link Subscription.pushRaw}).
 */
class Held {
  constructor(
    readonly topic: string,
    readonly value: Uint8Array,
    readonly retained: boolean,
    readonly sid: number,
  ) {}
}

const decoder = new TextDecoder("utf-8", { ignoreBOM: true });

/**
 * About the memory a decoded value takes (a delivery decoded by the
 * connection: MessagePack, or JSON not read as bytes), to count it while it
 * waits: not its wire bytes, which are far fewer for many small containers
 * (MessagePack writes `{}` as one byte; V8 takes ~60 for it and its slot).
 * Strings by length, other scalars as 8, containers as a header and a slot
 * per member (and keys by length). Walks the whole value: it came from one
 * frame, which its decoding already walked.
 */
export function sizeOf(value: unknown): number {
  let n = 0;
  const stack = [value]; // not recursive: a value may nest deeper than the call stack
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v === "string") n += 16 + v.length;
    else if (v instanceof Uint8Array) n += 64 + v.byteLength;
    else if (v === null || typeof v !== "object") n += 8;
    else if (Array.isArray(v)) {
      n += 32 + 8 * v.length;
      for (const x of v) stack.push(x);
    } else {
      n += 56;
      for (const k in v) {
        n += 24 + k.length;
        stack.push((v as Record<string, unknown>)[k]);
      }
    }
  }
  return n;
}
