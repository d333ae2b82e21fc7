/**
 * Publish and subscribe on a {@link Connection} to a broker: a
 * {@link Subscription} (subscription.ts) is an async iterator of the
 * messages of its topic subtree (retained values first, then live ones, in
 * publish order), kept across reconnections (subscribed again on each new
 * connection; one the broker then refuses ends alone).
 */
import { getLogger } from "@logtape/logtape";
import { call, DistError, type Peer } from "../wire/mod.ts";
import { cut } from "../wire/_log.ts";
import { type RawDelivery, readDelivery, TopicCache } from "../wire/mod.ts";
import {
  broker,
  type ListTopics,
  type Policy,
  type Published,
  type Subscribed,
  type TopicList,
  type Undeliverable,
  type Unsubscribed,
} from "./contracts/mod.ts";
import type { Connection } from "./connection.ts";
import { PublishFrame } from "./publish_frame.ts";
import { MessageCalls } from "./on_message.ts";
import {
  BUFFER_BYTES,
  type Message,
  sizeOf,
  type SubscribeOptions,
  Subscription,
} from "./subscription.ts";

export type { RawDelivery };

const log = getLogger(["dist", "client"]);

/**
 * Deliveries kept while a subscribe's answer is on its way (they may
 * overtake it), at most this many and {@link BUFFER_BYTES} of them: past
 * either they are counted in `unclaimed` and dropped, so a broker sending
 * deliveries for no subscription cannot grow this process (hostile34 Z4b:
 * 1,849 × 1 MB kept, 3.6 GiB, when only the count was bounded).
 */
const MAX_ORPHANS = 10_000;

/** The broker methods of one connection, and its subscriptions. @internal */
export class PubSub {
  #conn: Connection;
  /** Subscriptions by their sid on the current connection. */
  #bySid = new Map<number, Subscription>();
  #all = new Set<Subscription>();
  /** Subscribes whose answer has not been read yet, and deliveries that overtook them. */
  #subscribing = 0;
  #orphans: Orphan[] = [];
  #orphanBytes = 0;
  /** Notices of skipped deliveries that overtook their subscribe's answer (a retained value's). */
  #early: Undeliverable[] = [];
  #topics = new TopicCache();
  /** Deliveries for no subscription of this connection (late, or past MAX_ORPHANS). */
  unclaimed = 0;
  /** Writes fire-and-forget JSON publishes as bytes. */
  #frame = new PublishFrame();
  /** Deliveries read as bytes waiting for their subscriptions' `onMessage` (until the read's end). */
  #calls = new MessageCalls();

  constructor(conn: Connection) {
    this.#conn = conn;
    conn.on(broker.events.message, (m) => this.#deliver(m, conn.peer));
    conn.onConnect((peer) => this.#resubscribe(peer));
    conn.on(broker.events.undeliverable, (n) => this.#undeliverable(n));
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
    // For onMessage, parsed with the read's others once they are handled; for the iterator,
    // parsed now if it waits, else when it takes it (not JSON: the ordinary path refuses it
    // as it would).
    if (sub !== undefined && take) {
      if (sub.options.onMessage === undefined) return sub.pushRaw(d, this.#conn.peer, frame.length);
      this.#calls.add(sub, d);
      return true;
    }
    if (sub === undefined && this.#subscribing > 0 && this.#mayKeep(frame.length)) {
      // Kept as bytes (the frame is reused) until its subscribe's answer is read.
      this.#keep({ sid: d.sid, raw: { ...d, value: d.value.slice() }, bytes: frame.length });
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
      if (--this.#subscribing === 0) {
        this.#orphans.length = this.#early.length = this.#orphanBytes = 0;
      }
    }
  }

  #claim(sub: Subscription): void {
    this.#calls.flush(); // what waits came first
    const rest: Orphan[] = [];
    for (const o of this.#orphans) {
      if (o.sid !== sub.sid) rest.push(o);
      else if (o.raw === undefined) sub.push(o.message!, this.#conn.peer, o.bytes);
      else if (!sub.options.raw?.(o.raw) && !sub.pushRaw(o.raw, this.#conn.peer, o.bytes)) {
        sub.invalid++;
      }
    }
    this.#orphans = rest;
    this.#orphanBytes = rest.reduce((n, o) => n + o.bytes, 0);
    if (this.#early.length === 0) return;
    for (const n of this.#early) if (n.sid === sub.sid) sub.skipped(n);
    this.#early = this.#early.filter((n) => n.sid !== sub.sid);
  }

  /** A delivery the broker skipped (past this connection's frame limit): its subscription is told. */
  #undeliverable(n: Undeliverable): void {
    const sub = this.#bySid.get(n.sid);
    if (sub !== undefined) sub.skipped(n);
    else if (this.#subscribing > 0 && this.#early.length < MAX_ORPHANS) this.#early.push(n);
  }

  #deliver(m: Message, peer: Peer | undefined): void {
    const sub = m.sid === undefined ? undefined : this.#bySid.get(m.sid);
    if (sub !== undefined) {
      if (sub.options.onMessage !== undefined) this.#calls.flush(); // what waits came first
      return sub.push(m, peer);
    }
    const bytes = sizeOf(m.value);
    if (this.#subscribing > 0 && this.#mayKeep(bytes)) {
      this.#keep({ sid: m.sid, message: m, bytes });
    } else this.unclaimed++;
  }

  /** Whether one more orphan of `bytes` fits {@link MAX_ORPHANS} and {@link BUFFER_BYTES}. */
  #mayKeep(bytes: number): boolean {
    return this.#orphans.length < MAX_ORPHANS && this.#orphanBytes + bytes <= BUFFER_BYTES;
  }

  #keep(o: Orphan): void {
    this.#orphans.push(o);
    this.#orphanBytes += o.bytes;
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

/** A delivery that arrived before its subscription's sid was known (decoded, or as bytes), and its size. */
type Orphan = { sid?: number; message?: Message; raw?: RawDelivery; bytes: number };
