/**
 * A {@link Subscription}: the async iterator of one subscription's
 * messages, and its buffer. A subscriber that does not keep up stops
 * reading its connection once `buffer` messages or `bufferBytes` bytes
 * wait, so the broker applies the subscription's policy and this process
 * stays bounded. Made and fed by pubsub.ts.
 */
import { getLogger } from "@logtape/logtape";
import type { DistError, Peer, RawDelivery } from "../wire/mod.ts";
import { cut } from "../wire/_log.ts";
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
   * Bytes of messages (as they came on the wire) kept waiting for the
   * iterator before reading pauses (default 8 MiB, the broker's default
   * `--max-pending`): large values pause it long before `buffer` messages.
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
  #queue: Message[] = [];
  /** The size of each message of #queue (same indexes), and of those waiting together. */
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
   * Hands a message of `bytes` to the iterator, pausing reading when
   * `buffer` messages or `bufferBytes` bytes wait.
   * @ignore
   */
  push(msg: Message, peer: Peer | undefined, bytes: number): void {
    if (this.#end !== undefined) return;
    const w = this.#waiter;
    if (w !== undefined) {
      this.#waiter = this.#failer = undefined;
      return w({ value: msg, done: false });
    }
    this.#queue.push(msg);
    this.#sizes.push(bytes);
    this.#bytes += bytes;
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
   * work (a timer, I/O) still gets its full `buffer`.
   */
  #catchUp(peer: Peer): void {
    this.#soft = peer;
    peer.conn.pauseReading();
    setTimeout(() => this.#endCatchUp(), 0);
  }

  #endCatchUp(): void {
    const peer = this.#soft;
    if (peer === undefined) return;
    this.#soft = undefined;
    peer.conn.resumeReading();
  }

  /** The next message; done once unsubscribed or closed. */
  next(): Promise<IteratorResult<Message>> {
    if (this.#head < this.#queue.length) {
      this.#bytes -= this.#sizes[this.#head];
      const value = this.#queue[this.#head++];
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
      return Promise.resolve({ value, done: false });
    }
    if (this.#end === "done") return Promise.resolve({ value: undefined, done: true });
    if (this.#end !== undefined) return Promise.reject(this.#end);
    return new Promise((resolve, reject) => {
      this.#waiter = resolve;
      this.#failer = reject;
    });
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

/** Nodes {@link sizeOf} visits at most; past them it counts the rest as 1 MiB. */
const SIZE_NODES = 10_000;

/**
 * About the bytes a decoded value took on the wire (a delivery decoded by the
 * connection, whose frame length is not known here): strings and byte
 * arrays by length, other scalars as 8, containers as the sum of their
 * members and keys (at most SIZE_NODES of them visited: a value decoded
 * from at most one frame).
 */
export function sizeOf(value: unknown): number {
  let nodes = 0;
  const walk = (v: unknown): number => {
    if (++nodes > SIZE_NODES) return 0;
    if (typeof v === "string") return v.length + 2;
    if (v instanceof Uint8Array) return v.byteLength;
    if (v === null || typeof v !== "object") return 8;
    let n = 2;
    if (Array.isArray(v)) { for (const x of v) n += walk(x) + 1; }
    else for (const k in v) n += k.length + 4 + walk((v as Record<string, unknown>)[k]);
    return n;
  };
  const n = walk(value);
  return nodes > SIZE_NODES ? Math.max(n, 1024 * 1024) : n;
}
