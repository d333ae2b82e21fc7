/**
 * The wire front end of the broker: `broker.*` requests and notifications
 * of the dist protocol turned into calls on the core, and each connection
 * as the {@link Sink} of its subscriptions (deliveries are pre-encoded
 * frames copied into its outbound buffer).
 */
import { groupCounts } from "./group.ts";
import { giveBacksOf, type Owed, takeQueue } from "./give_back.ts";
import type { Subscription } from "./subscriber.ts";
import { getLogger } from "@logtape/logtape";
import {
  CloseReason,
  describe,
  DistError,
  type Handlers,
  jsonStringBytes,
  type Peer,
  permit,
  type RawFrameHandler,
  readPublish,
  type RequestHandler,
  sendQueueStats,
} from "../../wire/mod.ts";
import { cut, warnPeer } from "../../wire/_log.ts";
import { readMsgpackPublish } from "./msgpack_publish.ts";
import { Session, type SessionOwner } from "./session.ts";
import type { BrokerCore, PublishResult } from "./core.ts";
import { forgetParts, sidTail } from "./frames.ts";
import { shareSource } from "./shares.ts";
import { PublishLane } from "./lane.ts";
import { TOPIC_NAMES_BYTES } from "./snapshot.ts";
import { PAGE_BYTES } from "./topic_list.ts";
import { COSTLY_METHODS, type CostlyTurns, costlyTurnsOf } from "./costly_turns.ts";
import {
  broker,
  type Subscribe,
  type Subscribed,
  TOPICS_DEFAULT_LIMIT,
  type Unsubscribed,
} from "../../clients/contracts/broker.ts";
import { type Serving, serving } from "../_shell.ts";

const log = getLogger(["dist", "broker"]);
type Published = { topic: string; deliveries: number };

/** Most subscriptions one connection may hold. */
export const MAX_SUBSCRIPTIONS_PER_CONNECTION = 10_000;
/**
 * Bad fire-and-forget publishes on one connection that are answered with
 * an error frame; past it they are only counted (as the wire answers at
 * most 10 malformed messages), so garbage is never amplified.
 */
const NOTIFICATION_ERRORS_ANSWERED = 10;
/**
 * How long a slow consumer's last bytes (and its error, behind them) may
 * take to go out by default. The broker sets its connections' write
 * timeout instead: a consumer that pauses for less than that (a terminal
 * scrolled back, a pipe read in bursts) still learns why it was cut off.
 */
const CUT_OFF_FLUSH_MS = 10_000;
/**
 * What a subscribe answer takes besides its list of names, at most: the id
 * (256 characters, escaped), `by`, the pattern (1,024 characters of up to 3
 * bytes), the keys and numbers.
 */
const SUBSCRIBE_ANSWER_OVERHEAD = 8 * 1024;
/** Most bytes of names sys.stats lists per topic (100 names of 3 KB would pass a small frame). */
const PER_TOPIC_BYTES = 16 * 1024;

/** The newest topics' counters whose names fit in `bytes`. */
function perTopicWithin<T>(all: Record<string, T>, bytes: number): Record<string, T> {
  const out: Record<string, T> = {};
  for (const [name, counts] of Object.entries(all)) {
    bytes -= jsonStringBytes(name) + 24;
    if (bytes < 0) break;
    out[name] = counts;
  }
  return out;
}

/** Turns protocol messages into core calls; one per broker. */
export class WireFront implements SessionOwner {
  readonly core: BrokerCore;
  /** Subscribers cut off by the disconnect policy. */
  slowConsumers = 0;
  /** Fire-and-forget publishes that were refused (bad topic, value or params). */
  badPublishes = 0;
  /** Notifications of methods the broker does not know (ignored). */
  unknownNotifications = 0;
  /** Deliveries too large for a frame. */
  undeliverable = 0;
  readonly #sessions = new Set<Session>();
  /** Listings, subscribes and stats: a few ms of them a turn (costly_turns.ts). */
  readonly costly: CostlyTurns;
  /** The session of the last fast-path frame's peer (forgotten when it closes). */
  #lastSession: Session | undefined;
  /** Runs of publishes to one topic, delivered from their frames (lane.ts). */
  readonly lane: PublishLane;

  /** How long a cut-off consumer's queued bytes and its SLOW_CONSUMER error may take to go out. */
  cutOffFlushMs = CUT_OFF_FLUSH_MS;

  constructor(core: BrokerCore) {
    this.core = core;
    this.costly = costlyTurnsOf(core);
    this.lane = new PublishLane(core);
  }

  readonly onPeer = (peer: Peer): void => void this.#session(peer);

  /**
   * The broker contract's handlers, dispatched by the shell (sys.* and
   * UNKNOWN_METHOD are the shell's). A connection cut off as a slow consumer
   * has its requests refused and its notifications dropped, unread.
   */
  /** With a data directory: resolves once every retained value so far is on disk. */
  committed: (() => Promise<void>) | undefined;

  serving(): Serving {
    const handlers: Handlers<[typeof broker]> = {
      "broker.publish": (p, peer) => {
        const retain = p.retain !== false;
        const from = this.#session(peer);
        const owner = peer.identity?.user;
        return this.#answer(this.core.publish(p.topic, p.value, retain, 2, from, owner), retain);
      },
      "broker.subscribe": (p, peer) => this.#subscribe(this.#session(peer), p),
      "broker.unsubscribe": (p, peer) => this.#unsubscribe(this.#session(peer), p.sid),
      "broker.topics": (p, peer) =>
        this.core.listTopics(
          p.prefix ?? "/",
          p.limit ?? TOPICS_DEFAULT_LIMIT,
          p.after,
          peer,
          // The page fits a frame: what its id, `by` and keys leave of it.
          Math.min(PAGE_BYTES, peer.conn.maxFrame - 4096),
        ),
    };
    return serving([broker], handlers, {
      wrap: (handle) => {
        const checked: RequestHandler = (method, params, peer, meta) => {
          this.lane.close(); // a subscribe, an answer: what the lane counted may change
          if (this.#session(peer).cutOff) {
            throw new DistError(
              "SLOW_CONSUMER",
              "This connection was cut off as a slow consumer: it closes once its queued bytes are out",
            );
          }
          return handle(method, params, peer, meta);
        };
        // Listings, subscribes and stats take turns per source (costly_turns.ts); checked when they run.
        return (method, params, peer, meta) => {
          if (!COSTLY_METHODS.has(method)) return checked(method, params, peer, meta);
          const session = this.#session(peer);
          if (session.cutOff) return checked(method, params, peer, meta);
          return this.costly.run(peer, () => checked(method, params, peer, meta), session.source);
        };
      },
      wrapNotification: (take) => (method, params, peer) => {
        this.lane.close();
        if (!this.#session(peer).cutOff) take(method, params, peer);
      },
      onBadNotification: (method, err, peer) => this.#badNotification(peer, method, err),
      // Ignored, as every role does: answering each would amplify garbage.
      onUnknownNotification: () => void this.unknownNotifications++,
    });
  }

  /**
   * The fast path of publishes, fire-and-forget or confirmed (a request),
   * in either codec, whatever their value, member order or spacing
   * (wire/pubsub_json.ts, msgpack_publish.ts): checked as bytes, the value
   * goes to the subscribers of the publisher's codec as it came, decoded
   * only for the others. Anything the readers leave (other methods, values
   * the decoder refuses, ids other than plain integers and strings) is
   * decoded and dispatched as usual, in its place.
   */
  readonly rawFrames: RawFrameHandler = {
    checksAccess: true, // a publish's grant, by its topic (below)
    accepts: (frame) => {
      const c = frame[0];
      // A JSON request writes its id first (`{"id"`), as clients do.
      if (c === 0x7b) {
        return frame[2] === 0x69 && frame[3] === 0x64 && frame[4] === 0x22 ? "request" : true;
      }
      // MessagePack: a map of method and params, and an id for a request.
      if (c === 0x83) return "request";
      return c === 0x82 || c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
    },
    handle: (frame, peer, took, buffer) => {
      // A read's frames come from one peer: its session is looked up once, not per frame.
      let session = this.#lastSession;
      if (session?.peer !== peer) session = this.#lastSession = this.#session(peer);
      // Its buffer, known to the decoder: its readers read words through it.
      const json = session.codec === "json";
      const publish = json
        ? readPublish(frame, session.topics, buffer)
        : readMsgpackPublish(frame, session.topics, buffer);
      const lane = this.lane;
      if (publish === undefined) {
        lane.close();
        return false;
      }
      const id = publish.id;
      if (id !== undefined) {
        lane.close();
        // A request needs room to be taken (took); a cut-off connection's is refused by dispatch.
        if (took === undefined || session.cutOff) return false;
        took();
      } else if (session.cutOff) return true; // read and dropped
      else if (lane.take(session, publish)) return true; // a run's next publish (lane.ts)
      const retain = publish.retain;
      // A canonical frame is delivered from (see frames.ts), to the topic it names.
      const canonical = publish.canonical ? publish.topic : undefined;
      const { frame: bytes, valueStart, valueEnd } = publish;
      const value = session.value.lend(bytes, valueStart, valueEnd, canonical);
      let result: PublishResult | undefined;
      try {
        // null as itself, as the decoder gives it (other front ends, MQTT's, map it to no payload).
        const v = value.isNull ? null : value;
        const user = peer.identity?.user;
        // With --users, its topic's publish grant, checked as dispatch checks the decoded ones.
        if (peer.identity?.access !== undefined) permit(broker.methods.publish, publish, peer);
        // A notification's answer is not needed: route() makes none.
        if (id !== undefined) {
          result = this.core.publish(publish.topic, v, retain, 2, session, user);
        } else {
          this.core.route(publish.topic, v, retain, 2, session, user);
          if (!retain) lane.routed(session, publish);
        }
      } catch (err) {
        if (id === undefined) this.#badNotification(peer, "broker.publish", err);
        else peer.answerError(id, err);
      } finally {
        value.release(); // the frame's bytes are the reader's again
        forgetParts();
      }
      if (id !== undefined && result !== undefined) {
        this.#confirm(peer, id, result, retain);
      }
      return true;
    },
  };

  /**
   * A confirmed publish's answer: once its deliveries are known (see PublishResult.later),
   * and a retained value's once the commit covering it is (with a data directory).
   */
  #answer(result: PublishResult, retain: boolean): Published | Promise<Published> {
    const { topic, later, settled } = result;
    const commit = retain && this.committed !== undefined ? this.committed() : undefined;
    if (later === undefined && settled === undefined) {
      const answer = { topic, deliveries: result.deliveries };
      return commit === undefined ? answer : commit.then(() => answer);
    }
    // (settled: its deliveries to MQTT persistent sessions on disk, hostile review 39b Q1.)
    return Promise.all([later ?? result.deliveries, commit, settled])
      .then(([deliveries]) => ({ topic, deliveries }));
  }

  /** Answers a confirmed publish as the handler of `broker.publish` does. */
  #confirm(peer: Peer, id: number | string, result: PublishResult, retain: boolean): void {
    const answer = this.#answer(result, retain);
    if (answer instanceof Promise) {
      answer.then((a) => peer.answer(id, a), (err) => peer.answerError(id, err));
    } else {
      peer.answer(id, answer);
    }
  }

  /**
   * No id to answer: tell the peer anyway (its log shows it), the first few
   * times on a connection, and count it.
   */
  #badNotification(peer: Peer, method: string, err: unknown): void {
    this.badPublishes++;
    if (++this.#session(peer).badNotifications > NOTIFICATION_ERRORS_ANSWERED) return;
    const e = DistError.from(err);
    try {
      peer.conn.send(peer.codec, {
        id: null,
        error: { code: e.code, message: `${describe(method)}: ${e.message}` },
      });
    } catch (sendErr) {
      log.debug("Cannot report a bad notification: {error}", { error: String(sendErr) });
    }
  }

  /** Cuts a slow subscriber off: no more deliveries, its error sent behind what is queued. */
  cutOff(session: Session, err: DistError): void {
    if (session.closed) return;
    this.slowConsumers++;
    warnPeer("Cutting off {peer}: {message}", {
      peer: session.peer.remote.name,
      message: cut(err.message),
    });
    this.#drop(session);
    // Nothing more from it is handled, but it is still read: a socket closed
    // with unread input (the consumer's heartbeats) is reset, and a reset
    // throws away what the consumer has not read yet, the error included.
    session.cutOff = true;
    session.peer.closeWith(CloseReason.SlowConsumer, err, this.cutOffFlushMs);
  }

  stats(): Record<string, unknown> {
    const core = this.core;
    return {
      connections: this.#sessions.size,
      subscriptions: core.subscriptions.size,
      topics: core.topics.size,
      topic_bytes: core.topics.bytes,
      messages_in: core.messagesIn,
      messages_out: core.messagesOut,
      retained_sent: core.retainedSent,
      retained: {
        count: core.retained.count,
        bytes: core.retained.bytes,
        budget: core.retained.budget,
        evicted: core.retained.evicted,
        // Of them, evicted to keep their user within its share (per_user bytes: retained.ts).
        user_evicted: core.retained.ownerEvicted,
        per_user: core.retained.perOwner === Infinity ? null : core.retained.perOwner,
        too_large: core.retainedTooLarge,
      },
      topics_evicted: core.topicsEvicted,
      dropped: core.dropped + giveBacksOf(core).dropped,
      queued_bytes: core.queuedBytes,
      slow_consumers: this.slowConsumers,
      bad_publishes: this.badPublishes,
      unknown_notifications: this.unknownNotifications,
      undeliverable: this.undeliverable,
      lane_publishes: this.lane.publishes,
      per_topic: perTopicWithin(core.topics.perTopic(100), PER_TOPIC_BYTES),
      subscription_shares: core.shares.stats(),
      queue_groups: {
        passed_over: groupCounts.passedOver,
        rerouted: groupCounts.rerouted,
        given_back: groupCounts.givenBack,
        given_up: groupCounts.givenUp,
        ...sendQueueStats(),
      },
    };
  }

  #session(peer: Peer): Session {
    let session = peer.data as Session | undefined;
    if (session instanceof Session) return session;
    session = new Session(peer, this);
    peer.data = session;
    this.#sessions.add(session);
    const s = session;
    peer.closed.then((reason) => {
      this.#sessions.delete(s);
      if (this.#lastSession === s) this.#lastSession = undefined;
      s.topics.release(); // its memos of past publishes, counted in --max-memory
      const removed = this.#drop(s);
      // Cut off by the wire (a subscriber that took no bytes for the write timeout, or whose
      // output passed its bound; the wire warns) rather than by a policy here: counted too.
      if (reason === CloseReason.SlowConsumer && !s.cutOff && removed > 0) this.slowConsumers++;
      // Any client can connect and leave at will: a line per connection only when debugging.
      log.debug("{peer} disconnected ({reason}); {removed} subscription(s) removed", {
        peer: peer.remote.name,
        reason,
        removed,
      });
    });
    return session;
  }

  /**
   * Removes every subscription of a session; returns how many there were.
   * What its queue group members had queued goes to other members (give_back.ts).
   */
  #drop(session: Session): number {
    const n = session.subs.size;
    this.#leave(session.subs.values());
    session.subs.clear();
    return n;
  }

  /** Cuts `subs`, then gives what their queue group members had queued to other members. */
  #leave(subs: Iterable<Subscription>): void {
    const owed: Owed[] = [];
    for (const sub of subs) {
      const o = takeQueue(sub, this.core, this);
      if (o !== undefined) owed.push(o);
      this.core.unsubscribe(sub);
    }
    if (owed.length > 0) giveBacksOf(this.core).add(owed);
  }

  #subscribe(session: Session, p: Subscribe): Subscribed {
    if (session.subs.size >= MAX_SUBSCRIPTIONS_PER_CONNECTION) {
      throw new DistError(
        "OVERLOADED",
        `A connection may hold at most ${MAX_SUBSCRIPTIONS_PER_CONNECTION} subscriptions`,
      );
    }
    // The answer must fit a frame (the broker's and the client's default):
    // its list of names is cut to the room left, and a subscription whose
    // answer could not be sent is not kept (the client never learns its sid).
    const maxFrame = session.peer.conn.maxFrame;
    const room = Math.min(TOPIC_NAMES_BYTES, maxFrame - SUBSCRIBE_ANSWER_OVERHEAD);
    const { sub, topics, topicCount, complete } = this.core.subscribe(session, {
      topic: p.topic,
      group: p.group,
      policy: p.policy,
      source: shareSource(session.source),
      namesBytes: Math.max(0, room),
    });
    // Only a frame limit below the overhead (--max-frame 64 at the least) can refuse one.
    if (room < 0 && jsonStringBytes(sub.pattern) + 256 > maxFrame) {
      this.core.unsubscribe(sub);
      throw new DistError(
        "FRAME_TOO_LARGE",
        `The answer to this subscribe would not fit the frame limit of ${maxFrame} bytes`,
      );
    }
    sub.data = sidTail(sub.sid, session.codec);
    session.subs.set(sub.sid, sub);
    // The answer goes out when this handler returns; the retained values
    // (and anything live since) follow it.
    this.costly.later(() => sub.release());
    const result: Subscribed = {
      sid: sub.sid,
      topic: sub.pattern,
      topics,
      topic_count: topicCount,
    };
    if (topicCount > topics.length || !complete) result.truncated = true;
    return result;
  }

  #unsubscribe(session: Session, sid: number): Unsubscribed {
    const sub = session.subs.get(sid);
    if (sub === undefined) {
      throw new DistError("NOT_FOUND", `No subscription ${describe(sid)} on this connection`);
    }
    session.subs.delete(sub.sid);
    this.#leave([sub]);
    return { sid: sub.sid, delivered: sub.delivered, dropped: sub.dropped };
  }
}
