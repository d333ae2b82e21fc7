/**
 * Publish and subscribe on a {@link Connection} to a broker: a
 * {@link Subscription} is an async iterator of the messages of its topic
 * subtree (retained values first, then live ones, in publish order), kept
 * across reconnections (subscribed again on each new connection). A
 * subscriber that does not keep up stops reading its connection once
 * `buffer` messages wait, so the broker applies the subscription's policy
 * and this process stays bounded.
 */
import { getLogger } from "@logtape/logtape";
import { call, DistError, type Peer } from "../wire/mod.ts";
import { cut } from "../wire/_log.ts";
import { type RawDelivery, readDelivery, TopicCache } from "../wire/mod.ts";
import {
  broker,
  type Delivery,
  type ListTopics,
  type Policy,
  type Published,
  type Subscribed,
  type TopicList,
  type Unsubscribed,
} from "./contracts/mod.ts";
import type { Connection } from "./connection.ts";
import { PublishFrame } from "./publish_frame.ts";

export type { RawDelivery };

const log = getLogger(["dist", "client"]);

/** A message as a subscription yields it. */
export type Message = Delivery;

/** How {@link PubSub.subscribe} subscribes. */
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

/** Messages waiting for the iterator past which reading waits for it to catch up (see #catchUp). */
const CATCH_UP = 512;

/** Deliveries kept while a subscribe's answer is on its way (they may overtake it). */
const MAX_ORPHANS = 10_000;

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
  #queue: Message[] = [];
  #head = 0;
  #waiter: ((r: IteratorResult<Message>) => void) | undefined;
  #failer: ((err: DistError) => void) | undefined;
  #end: DistError | "done" | undefined;
  #paused: Peer | undefined;
  /** Paused until the iterator catches up (see #catchUp). */
  #soft: Peer | undefined;
  #owner: PubSub;

  /** @ignore */
  constructor(owner: PubSub, topic: string, options: SubscribeOptions) {
    this.#owner = owner;
    this.topic = topic;
    this.options = options;
  }

  /** Messages waiting for the iterator. */
  get waiting(): number {
    return this.#queue.length - this.#head;
  }

  /**
   * Hands a message to the iterator, pausing reading when `buffer` wait.
   * @ignore
   */
  push(msg: Message, peer: Peer | undefined): void {
    if (this.#end !== undefined) return;
    const w = this.#waiter;
    if (w !== undefined) {
      this.#waiter = this.#failer = undefined;
      return w({ value: msg, done: false });
    }
    this.#queue.push(msg);
    if (this.#paused !== undefined || peer === undefined) return;
    const waiting = this.waiting;
    if (waiting >= (this.options.buffer ?? 1024)) {
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
      const value = this.#queue[this.#head++];
      if (this.#head === this.#queue.length) this.#queue.length = this.#head = 0;
      else if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
        this.#queue = this.#queue.slice(this.#head);
        this.#head = 0;
      }
      if (this.#soft !== undefined && this.waiting === 0) this.#endCatchUp();
      if (this.#paused !== undefined && this.waiting <= (this.options.buffer ?? 1024) / 2) {
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

/** The broker methods of one connection, and its subscriptions. @internal */
export class PubSub {
  #conn: Connection;
  /** Subscriptions by their sid on the current connection. */
  #bySid = new Map<number, Subscription>();
  #all = new Set<Subscription>();
  /** Subscribes whose answer has not been read yet, and deliveries that overtook them. */
  #subscribing = 0;
  #orphans: Orphan[] = [];
  #topics = new TopicCache();
  /** Deliveries for no subscription of this connection (late, or past MAX_ORPHANS). */
  unclaimed = 0;
  /** Writes fire-and-forget JSON publishes as bytes. */
  #frame = new PublishFrame();

  constructor(conn: Connection) {
    this.#conn = conn;
    conn.on(broker.events.message, (m) => this.#deliver(m, conn.peer));
    conn.onConnect((peer) => this.#resubscribe(peer));
  }

  publish(
    topic: string,
    value: unknown,
    options: { retain?: boolean; confirm?: boolean; timeout?: number } = {},
  ): Promise<Published | undefined> {
    const retain = options.retain !== false;
    if (options.confirm) {
      return this.#conn.request(broker.methods.publish, publishParams(topic, value, retain), {
        timeout: options.timeout,
      });
    }
    try {
      // A JSON connection's publish is written as bytes, in that same layout.
      const peer = this.#conn.notifyPeer;
      if (
        peer === undefined || peer.codec.name !== "json" ||
        !this.#frame.send(peer, topic, value, retain)
      ) {
        this.#conn.notify(broker.methods.publish, publishParams(topic, value, retain));
      }
      return SENT;
    } catch (err) {
      return Promise.reject(err);
    }
  }

  async subscribe(topic: string, options: SubscribeOptions = {}): Promise<Subscription> {
    const sub = new Subscription(this, topic, options);
    this.#all.add(sub);
    try {
      sub.answer = await this.#send(
        sub,
        // Not sent again by the connection if it drops meanwhile: once it is
        // back, #resubscribe makes every subscription in #all, this one too.
        (params) => this.#conn.request(broker.methods.subscribe, params, { idempotent: false }),
      );
    } catch (err) {
      this.#all.delete(sub);
      throw err;
    }
    sub.topic = sub.answer.topic;
    options.signal?.addEventListener("abort", () => void sub.unsubscribe().catch(() => {}), {
      once: true,
    });
    return sub;
  }

  async unsubscribe(sub: Subscription, timeout?: number): Promise<Unsubscribed | undefined> {
    if (!this.#all.delete(sub)) return undefined;
    this.#bySid.delete(sub.sid);
    sub.end();
    // On the connection itself: a draining one refuses new requests, not this one.
    const peer = this.#conn.peer;
    if (peer === undefined) return undefined;
    return await call(peer, broker.methods.unsubscribe, { sid: sub.sid }, { timeout });
  }

  topics(options: ListTopics = {}): Promise<TopicList> {
    return this.#conn.request(broker.methods.topics, options);
  }

  /** The subscriptions kept. */
  get subscriptions(): Subscription[] {
    return [...this.#all];
  }

  /** Ends every subscription (the connection is closing), failing with `err` if given. */
  close(err?: DistError): void {
    for (const sub of this.#all) sub.end(err);
    this.#all.clear();
    this.#bySid.clear();
  }

  /**
   * The raw-frame handler of a connection with byte deliveries. With
   * `take`, a delivery for a subscription goes to it from here, only its
   * value parsed (not the whole message, nor checked again: the broker
   * wrote it); the connection says `take` when nobody else listens to
   * deliveries. Otherwise it is decoded and delivered by the ordinary path.
   */
  rawFrame(frame: Uint8Array, take = false): boolean {
    const d = readDelivery(frame, this.#topics);
    if (d === undefined) return false;
    const sub = this.#bySid.get(d.sid);
    if (sub?.options.raw !== undefined && sub.options.raw(d)) return true;
    if (sub !== undefined && take) {
      let value: unknown;
      try {
        value = JSON.parse(decoder.decode(d.value));
      } catch {
        return false; // the ordinary path refuses it as it would
      }
      sub.push({ topic: d.topic, value, retained: d.retained, sid: d.sid }, this.#conn.peer);
      return true;
    }
    if (sub === undefined && this.#subscribing > 0 && this.#orphans.length < MAX_ORPHANS) {
      // Kept with its bytes (the frame is reused) until its subscribe's answer
      // is read; a value that is not one JSON value goes to the ordinary path,
      // which refuses it, as for a known subscription.
      let message: Message;
      try {
        message = rawMessage(d);
      } catch {
        return false;
      }
      this.#orphans.push({ raw: { ...d, value: d.value.slice() }, message });
      return true;
    }
    return false; // decoded and delivered (or counted) by the ordinary path
  }

  /** Subscribes `sub` with `send`, keeping deliveries that arrive before the answer. */
  async #send(
    sub: Subscription,
    send: (params: { topic: string; group?: string; policy?: Policy }) => Promise<Subscribed>,
  ): Promise<Subscribed> {
    const { group, policy } = sub.options;
    this.#subscribing++;
    try {
      const answer = await send({ topic: sub.topic, group, policy });
      this.#bySid.delete(sub.sid);
      sub.sid = answer.sid;
      this.#bySid.set(answer.sid, sub);
      this.#claim(sub);
      sub.options.onSubscribed?.(answer);
      return answer;
    } finally {
      if (--this.#subscribing === 0) this.#orphans.length = 0;
    }
  }

  #claim(sub: Subscription): void {
    const rest: Orphan[] = [];
    for (const o of this.#orphans) {
      if (o.message.sid !== sub.sid) rest.push(o);
      else if (o.raw === undefined || !sub.options.raw?.(o.raw)) {
        sub.push(o.message, this.#conn.peer);
      }
    }
    this.#orphans = rest;
  }

  #deliver(m: Message, peer: Peer | undefined): void {
    const sub = m.sid === undefined ? undefined : this.#bySid.get(m.sid);
    if (sub !== undefined) return sub.push(m, peer);
    if (this.#subscribing > 0 && this.#orphans.length < MAX_ORPHANS) {
      this.#orphans.push({ message: m });
    } else this.unclaimed++;
  }

  /**
   * Subscribes every subscription again on a new connection. A refusal by
   * the broker (its subscription cap, a narrowed grant, an answer too
   * large) ends only that subscription, with the broker's error: the
   * connection and the other subscriptions go on. Only a failure of the
   * connection itself fails the dial (it is dialed again).
   */
  async #resubscribe(peer: Peer): Promise<void> {
    this.#bySid.clear();
    for (const sub of [...this.#all]) {
      try {
        await this.#send(sub, (params) => call(peer, broker.methods.subscribe, params));
      } catch (err) {
        const e = DistError.from(err);
        if (peer.isClosed || e.code === "UNAVAILABLE" || e.code === "TIMEOUT") throw e;
        if (!this.#all.delete(sub)) continue; // unsubscribed meanwhile
        log.warn("Subscription to {topic} refused on reconnecting: {error}; it ends", {
          topic: cut(sub.topic),
          error: cut(e.message),
        });
        sub.end(e);
      }
    }
  }
}

/** A publish's params in the canonical layout (retain left out when true): the broker reads it as bytes. */
function publishParams(topic: string, value: unknown, retain: boolean) {
  return retain ? { topic, value } : { topic, value, retain: false };
}

/** What every fire-and-forget publish answers: one settled promise, not one per publish. */
const SENT: Promise<undefined> = Promise.resolve(undefined);

/** A delivery that arrived before its subscription's sid was known. */
type Orphan = { message: Message; raw?: RawDelivery };

const decoder = new TextDecoder();

/** A delivery read as bytes, as a message: its value parsed. */
function rawMessage(d: RawDelivery): Message {
  return {
    sid: d.sid,
    topic: d.topic,
    value: JSON.parse(decoder.decode(d.value)),
    retained: d.retained,
  };
}
