/**
 * A run of fire-and-forget publishes to one topic, delivered straight
 * from their frames. A read of a publisher that keeps to one topic (a
 * sensor, a feed) holds hundreds of them; each went through the whole
 * route: the topic looked up and touched, its targets found, a message
 * made, the fan-out's bookkeeping, and per subscription its readiness (a
 * dozen fields), the delivery writer's parts and the connection's send.
 * None of that changes from one publish of the run to the next within
 * one turn of the event loop, so once two publishes in a row of one read
 * went to one topic the usual way, the lane keeps what they found (the
 * topic, its subscriptions, their connections, frame limits and the bytes
 * each may still take before its deliveries would queue) and each next
 * one is its frame copied to each subscription's output with its sid:
 * what a delivery is, whatever took it.
 *
 * The lane closes at the end of the turn, at any other frame of the read
 * (another topic, a request, a retained value), at any message dispatched
 * the usual way (a subscribe or an unsubscribe in the same read), when the
 * subscriptions change, and before a delivery that the usual path would
 * not make at once: past a subscription's direct limit (it would queue),
 * past its frame limit, past the fan-out's budget for the turn. That
 * publish then goes the usual way, so every subscription gets the same
 * bytes in the same order either way (tests/broker_lane_test.ts).
 *
 * Only plain subscriptions of wire connections (no queue group, no MQTT
 * session, each on a connection of its own, at most LANE_TARGETS) in the
 * publisher's codec, JSON or MessagePack (the value goes as it came).
 */
import {
  DELIVERY_PREFIX,
  type FramedConn,
  type FramePublish,
  type FrameWriter,
  METHOD_WORD_AT,
  type OutBuffer,
} from "../../wire/mod.ts";
import type { BrokerCore } from "./core.ts";
import { MP_MESSAGE_WORD, mpPrefix, topicPrefix } from "./delivery_prefix.ts";
import { MP_METHOD_WORD_AT, MP_PARAMS_AT } from "./msgpack_publish.ts";
import { Session } from "./session.ts";
import type { Subscription } from "./subscriber.ts";
import { Match } from "./subscriptions.ts";
import type { Topic } from "./topics.ts";

/** Most subscriptions a lane delivers to (a larger fan-out goes the usual way). */
export const LANE_TARGETS = 16;

const HEADER = 4;
const EMPTY = new Uint8Array(0);
/** `message`, where a canonical publish frame has `publish` (see FramePublish.canonical). */
const MESSAGE_WORD = DELIVERY_PREFIX.subarray(METHOD_WORD_AT, METHOD_WORD_AT + 7);

/** Writes the delivery of the lane's current publish with one subscription's tail. */
class LaneWriter implements FrameWriter {
  frame: Uint8Array = EMPTY;
  /** Canonical: the delivery is the frame's first `valueEnd` bytes (the method's name changed). */
  canonical = false;
  valueStart = 0;
  valueEnd = 0;
  /** Otherwise the topic's delivery prefix, then the value. */
  prefix: Uint8Array = EMPTY;
  tail: Uint8Array = EMPTY;
  /** The payload's length but the tail (see PublishLane.take). */
  base = 0;

  writeFrames(out: OutBuffer): void {
    const tail = this.tail;
    const frame = this.frame;
    const at = out.length;
    const len = this.base + tail.length;
    let end: number;
    if (this.canonical) {
      // The whole frame, then the tail over what followed its value (`,"retain":false}}`).
      out.reserve(HEADER + Math.max(len, frame.length));
      out.bytes.set(frame, at + HEADER);
      end = at + HEADER + this.valueEnd;
    } else {
      const prefix = this.prefix;
      const from = this.valueStart;
      const valueAt = at + HEADER + prefix.length;
      end = valueAt + this.valueEnd - from;
      if (from <= HEADER + prefix.length) {
        // The whole frame, placed so that its value lands after the prefix (written over the rest).
        out.reserve(Math.max(HEADER + len, valueAt - at - from + frame.length));
        out.bytes.set(frame, valueAt - from);
      } else {
        out.reserve(HEADER + len);
        out.bytes.set(frame.subarray(from, this.valueEnd), valueAt);
      }
      out.bytes.set(prefix, at + HEADER);
    }
    const b = out.bytes;
    for (let i = 0; i < tail.length; i++) b[end + i] = tail[i];
    out.setHeader(at, len);
    out.length = at + HEADER + len;
  }
}

export class PublishLane {
  readonly #core: BrokerCore;
  readonly #writer = new LaneWriter();
  /** The publisher whose lane is open (none: closed). */
  #session: Session | undefined = undefined;
  #topic: Topic | undefined = undefined;
  #name = "";
  #prefix: Uint8Array = EMPTY;
  /** The publisher's codec is JSON (else MessagePack); its subscribers' is the same. */
  #json = true;
  #generation = -1;
  readonly #subs: Subscription[] = [];
  readonly #conns: FramedConn[] = [];
  readonly #tails: Uint8Array[] = [];
  readonly #limits: number[] = [];
  /** Bytes each may still be sent before a delivery would queue (its direct limit). */
  readonly #room: number[] = [];
  /** The previous fast-path publish routed the usual way in this turn: its publisher and topic. */
  #lastSession: Session | undefined = undefined;
  #lastTopic = "";
  #closing = false;
  /** Publishes delivered through a lane (sys.stats: broker.lane_publishes). */
  publishes = 0;

  constructor(core: BrokerCore) {
    this.#core = core;
  }

  /** Closes the lane, and forgets the last publish (see routed). */
  readonly close = (): void => {
    this.#closing = false;
    this.#session = this.#topic = this.#lastSession = undefined;
    this.#lastTopic = "";
    if (this.#subs.length > 0) this.#clear();
  };

  #clear(): void {
    this.#session = this.#topic = undefined;
    this.#subs.length = this.#conns.length = this.#tails.length = 0;
    this.#limits.length = this.#room.length = 0;
  }

  /**
   * Delivers `p`, a fire-and-forget publish of `session` read from its
   * frame, through the lane: false (and the lane closed) when it does not
   * go there; it is then routed the usual way.
   */
  take(session: Session, p: FramePublish): boolean {
    if (session !== this.#session) {
      // Another connection's read in the same turn: the lane it left is stale.
      if (this.#session !== undefined) this.close();
      return false;
    }
    const core = this.#core;
    if (
      p.retain || p.topic !== this.#name ||
      core.subscriptions.generation !== this.#generation
    ) {
      this.close();
      return false;
    }
    const w = this.#writer;
    const canonical = p.canonical;
    const base = canonical ? p.valueEnd : this.#prefix.length + p.valueEnd - p.valueStart;
    const subs = this.#subs, tails = this.#tails, limits = this.#limits, room = this.#room;
    const n = subs.length;
    // Every check before any write: the publish goes one way or the other, whole.
    for (let i = 0; i < n; i++) {
      if (room[i] <= 0 || base + tails[i].length > limits[i]) {
        this.close();
        return false;
      }
    }
    if (!core.fanOut.takeNow(n)) {
      this.close();
      return false;
    }
    const timed = core.delivery;
    const t0 = timed === undefined ? 0 : timed.take();
    const frame = p.frame;
    // The frame becomes its delivery's first bytes (as frames.ts does once per message).
    if (canonical && this.#json) {
      for (let i = 0; i < 7; i++) frame[METHOD_WORD_AT + i] = MESSAGE_WORD[i];
    } else if (canonical) {
      for (let i = 0; i < 7; i++) frame[MP_METHOD_WORD_AT + i] = MP_MESSAGE_WORD[i];
      frame[MP_PARAMS_AT] = 0x83; // topic, value, sid
    }
    w.frame = frame;
    w.canonical = canonical;
    w.prefix = this.#prefix;
    w.valueStart = p.valueStart;
    w.valueEnd = p.valueEnd;
    w.base = base;
    const conns = this.#conns;
    for (let i = 0; i < n; i++) {
      const tail = tails[i];
      w.tail = tail;
      conns[i].sendWith(w, true);
      room[i] -= HEADER + base + tail.length;
      subs[i].delivered++;
    }
    w.frame = EMPTY;
    const topic = this.#topic!;
    topic.messagesIn++;
    core.messagesIn++;
    topic.messagesOut += n;
    core.messagesOut += n;
    this.publishes++;
    if (t0 !== 0) timed!.observe((performance.now() - t0) / 1000);
    return true;
  }

  /**
   * `p` of `session` was routed the usual way (a fire-and-forget publish, not
   * retained): the second in a row of this turn to one topic opens a lane.
   */
  routed(session: Session, p: FramePublish): void {
    if (!this.#closing) {
      this.#closing = true;
      queueMicrotask(this.close);
    }
    if (session !== this.#lastSession || p.topic !== this.#lastTopic) {
      this.#lastSession = session;
      this.#lastTopic = p.topic;
      return;
    }
    this.#open(session, p.topic);
  }

  #open(session: Session, name: string): void {
    const core = this.#core;
    if (this.#subs.length > 0) this.#clear();
    if (core.matches.busy(session)) return;
    const codec = session.codec;
    const topic = core.topics.get(name);
    if (topic === undefined || topic.name !== name) return;
    const tree = core.subscriptions;
    const targets = core.matches.targets(tree, topic);
    if (targets instanceof Match || targets.groups.length > 0) return;
    const plain = targets.plain;
    if (plain.length === 0 || plain.length > LANE_TARGETS) return;
    for (let i = 0; i < plain.length; i++) {
      const sub = plain[i];
      const sink = sub.sink;
      if (!(sink instanceof Session) || sink.codec !== codec || !sub.ready) return;
      // One lane's subscriptions on one connection would share its room: not counted so.
      for (let j = 0; j < i; j++) if (plain[j].sink === sink) return;
    }
    for (let i = 0; i < plain.length; i++) {
      const sub = plain[i];
      const sink = sub.sink as Session;
      this.#subs.push(sub);
      this.#conns.push(sink.peer.conn);
      this.#tails.push(sub.data as Uint8Array);
      this.#limits.push(sink.frameLimit);
      this.#room.push(sub.directLimit - sink.pendingBytes);
    }
    // One subscriber: the publisher's reads may be larger (wire/inbound.ts, WIDE_READ).
    session.peer.conn.wideReads = plain.length === 1;
    this.#session = session;
    this.#topic = topic;
    this.#name = name;
    this.#json = codec === "json";
    this.#prefix = this.#json ? topicPrefix(name) : mpPrefix(name, false);
    this.#generation = tree.generation;
  }
}
