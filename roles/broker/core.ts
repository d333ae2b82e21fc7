/**
 * The broker's core: topics, retained values, subscriptions and delivery,
 * with no protocol and no sockets. A front end (the dist wire protocol,
 * MQTT) turns its requests into calls here and gives each subscription a
 * {@link Sink} that carries its deliveries.
 */
import { memoMemory, processOutbound } from "../../wire/mod.ts";
import { normalizeTopic, topicSegments } from "../../clients/contracts/mod.ts";
import { RetainedStore } from "./retained.ts";
import { queueMemory } from "./byte_queue.ts";
import { FanOut, type Publisher } from "./fanout.ts";
import { cachedTargets, dropCaches, keepTargets, MatchQueue } from "./matching.ts";
import {
  HEAP_HEADROOM,
  overloaded,
  readBuffers,
  retainedCost,
  sessionMemory,
  SUBSCRIPTION_BYTES,
  subscriptionCost,
  topicCost,
} from "./memory.ts";
import { SubscriptionShares } from "./shares.ts";
import { TopicShares, userShare } from "./topic_shares.ts";
import { oncePerTurn, turnClock } from "../../wire/turn.ts";
import { coverage, wholeTree } from "./snapshot.ts";
import { EncodedValue, Message, type Sink, Subscription } from "./subscriber.ts";
import { Match, SubscriptionTree, type Targets } from "./subscriptions.ts";
import { announce } from "./announce.ts";
import { refuseSystemTopic, type Topic, TopicTree } from "./topics.ts";
import { TopicLister, type TopicListing } from "./topic_list.ts";
import { placeUnder } from "./restore.ts";
import { checkGroup, checkPolicy, checkValue, keptForm, valueBytes } from "./values.ts";
import type { BrokerCoreOptions, Keeper, PublishResult } from "./core_types.ts";
import { Settles } from "./settles.ts";
import type { Subscribed, SubscribeRequest } from "./core_types.ts";

export { checkValue, valueBytes } from "./values.ts";
export { SUBSCRIBE_VISITS, TOPIC_NAMES_BYTES, TOPIC_NAMES_LIMIT } from "./snapshot.ts";

export type * from "./core_types.ts";

/** A publisher, and the codec its values come in, when it says (a wire connection's). */
export type Origin = Publisher & { readonly codec?: string };

export class BrokerCore {
  readonly topics = new TopicTree();
  readonly subscriptions = new SubscriptionTree<Subscription>();
  readonly retained: RetainedStore<Topic>;
  readonly maxPending: number;
  readonly maxTopics: number;
  readonly maxTopicBytes: number;
  /** The topics' limits, each user's share of them, and what they evict (topic_shares.ts). */
  readonly topicShares: TopicShares;
  readonly maxMemory: number;
  /** --max-subscriptions, and each source's share of it and of max-memory (see shares.ts). */
  readonly shares: SubscriptionShares;
  /** Bytes the subscribers' transports hold (sampled by the MemoryGuard; part of `memoryBytes`). */
  outboundBytes = 0;
  /** The process's output pending at that sample: what it grew by since is counted too. */
  outboundAt = 0;
  /** Called after a publish that left the broker over `maxMemory` (the MemoryGuard sheds). */
  onOverBudget: (() => void) | undefined = undefined;
  messagesIn = 0;
  messagesOut = 0;
  retainedSent = 0;
  topicsEvicted = 0;
  retainedTooLarge = 0;
  /**
   * Where deliveries are kept on disk (MQTT persistent sessions under
   * `--data-dir`: their journal's store), set by that front end: a
   * publish's answer waits for the commit of what its deliveries wrote.
   */
  keeper: Keeper | undefined = undefined;
  readonly #settles = new Settles();
  /** With --metrics: a sample of publishes' time to their last delivery (obs/timings.ts). */
  delivery: { take(): number; observe(seconds: number): void } | undefined;
  readonly #keepBudget = () =>
    this.onOverBudget !== undefined && this.overBudget && this.onOverBudget();
  readonly #checkBudget = oncePerTurn(this.#keepBudget);
  /** Deliveries, at most DELIVERIES_PER_TURN per turn (the budget is kept after each). */
  readonly fanOut = new FanOut(
    (t0) => this.delivery?.observe((performance.now() - t0) / 1000),
    this.#keepBudget,
  );
  /** Publishes whose matches go on in later turns, and those behind them (see matching.ts). */
  readonly matches = new MatchQueue((from, hold) => this.fanOut.holdForMatch(from, hold));
  /** `broker.topics`, a page at a time (see topic_list.ts). */
  readonly #lister = new TopicLister();
  #now: () => number;
  #nextSid = 1;
  #subs = new Set<Subscription>();
  /** Each sink that holds subscriptions, and how many (any front end's). */
  #sinks = new Map<Sink, number>();
  /** Dropped counts of subscriptions already gone. */
  #droppedGone = 0;

  constructor(options: BrokerCoreOptions) {
    this.maxMemory = options.maxMemory ?? Infinity;
    this.retained = new RetainedStore<Topic>(
      options.retainBytes,
      (topic, delta) => this.topics.retainedChanged(topic, delta),
      userShare(options.retainBytes, this.maxMemory),
    );
    this.maxPending = options.maxPending;
    this.maxTopics = Math.max(1, options.maxTopics);
    this.maxTopicBytes = options.maxTopicBytes ?? Infinity;
    this.shares = new SubscriptionShares(options, this.maxMemory);
    this.topicShares = new TopicShares(this.maxTopics, this.maxTopicBytes, this.maxMemory);
    this.topicShares.clearRetained = (topic) => this.retained.clear(topic);
    this.topicShares.onEvicted = () => this.topicsEvicted++;
    this.topics.onForgotten = (topic) => this.subscriptions.caches.drop(topic);
    // Date.now() read once per turn of the event loop: a read's publishes share one instant.
    this.#now = options.now ?? turnClock();
  }

  /** Set while the broker publishes its own statistics (publishSystem). */
  #system = false;

  /**
   * Publishes one of the broker's own statistics under `/$SYS/`, retained.
   * Clients may not publish there (as in Mosquitto): a forged, retained
   * `$SYS/broker/version` would stand until the broker restarted.
   */
  publishSystem(topic: string, value: unknown): void {
    this.#system = true;
    try {
      this.publish(topic, value, true, 0);
    } finally {
      this.#system = false;
    }
  }

  /**
   * Routes one message to every subscription that covers its topic (one
   * member per group), and with `retain` makes it the topic's retained value
   * (`null` clears it). An {@link EncodedValue} is used only during this
   * call (encoded for the subscribers, detached to be kept or held), so a
   * front end may lend it a view of its read buffer (it is checked by the
   * front end; any other value is checked here). `qos` is an MQTT
   * publisher's (see Message.qos); `from`, its connection, is held back
   * while its publishes fill the fan-out's backlog (see FanOut), or while
   * one waits for its match (see matching.ts): then `later` resolves with
   * the deliveries once they are known, and its publishes meanwhile wait
   * behind it. `owner`, its user, owns the retained value (see RetainedStore).
   * @throws {DistError} BAD_REQUEST for an invalid topic or value (see checkValue)
   */
  publish(
    rawTopic: unknown,
    value: unknown,
    retain = true,
    qos = 2,
    from?: Origin,
    owner?: string,
  ): PublishResult {
    const keeper = this.keeper;
    const written = keeper === undefined ? 0 : keeper.written;
    const deliveries = this.route(rawTopic, value, retain, qos, from, owner);
    const { topic, created, later } = this.#routed;
    const result: PublishResult = later === undefined
      ? { topic, deliveries, created }
      : { topic, deliveries, created, later };
    // Nothing kept on disk: the answer says how many deliveries, not that they are kept.
    const settled = keeper === undefined
      ? undefined
      : this.#settles.settled(this.fanOut, later, keeper, written);
    if (settled !== undefined) result.settled = settled;
    return result;
  }

  /** What the last `route` published: the rest of publish()'s answer. */
  #routed = { topic: "", created: false, later: undefined as Promise<number> | undefined };

  /**
   * publish() without an answer to allocate (a fire-and-forget publish on
   * the fast path): the deliveries made now (0 when they wait; see publish).
   */
  route(
    rawTopic: unknown,
    value: unknown,
    retain: boolean,
    qos: number,
    from: Origin | undefined,
    owner: string | undefined,
  ): number {
    // (Clients' topics under /$SYS are refused: see publishSystem.)
    // A sample is timed: a clock read costs 0.1–0.2 µs, a publish a few.
    const t0 = this.delivery === undefined ? 0 : this.delivery.take();
    const decoded = value !== undefined && !(value instanceof EncodedValue);
    const binary = decoded && checkValue(value);
    // Seconds: a small integer is stored in place, a millisecond time would
    // be a boxed number allocated on every publish.
    const now = Math.floor(this.#now() / 1000);
    // Only normalised names are keys of the tree: a hit needs no checking.
    let topic = typeof rawTopic === "string" ? this.topics.get(rawTopic) : undefined;
    let created = false;
    if (topic === undefined) {
      const name = normalizeTopic(rawTopic);
      if (!this.#system) refuseSystemTopic(name);
      topic = this.topics.get(name);
      if (topic === undefined) {
        if (this.wouldCross(topicCost(name))) throw overloaded("no new topics");
        topic = this.topicShares.create(this.topics, name, now, owner);
        created = true;
      }
    } else if (!this.#system) refuseSystemTopic(topic.name);
    if (!created) this.topics.touch(topic, now);
    topic.messagesIn++;
    this.messagesIn++;
    if (retain) {
      topic.retainedSeq = this.messagesIn;
      if (
        value === null || value === undefined || (value instanceof EncodedValue && value.isNull)
      ) {
        this.retained.clear(topic);
      } else {
        // Kept encoded (MessagePack if it came so), never decoded: see keptForm.
        const kept = keptForm(value, binary || from?.codec === "msgpack");
        // A decoded value's deliveries share that encoding (an encoded one's, its borrowed bytes).
        if (decoded) value = kept;
        const bytes = topic.name.length + valueBytes(kept);
        // (The broker's own statistics are not refused: they change a few digits.)
        if (!this.#system && this.wouldCross(retainedCost(bytes, topic.retainedBytes))) {
          throw overloaded("no new retained values");
        }
        // Its user before it is set: the data file may write the row at once (--fsync always).
        topic.retainedBy = owner;
        const outcome = this.retained.set(topic, kept, bytes, now, owner);
        if (outcome === "too_large") this.retainedTooLarge++;
      }
    }
    // Behind a publish of the same publisher that waits, or too large a match to make now.
    const behind = this.matches.busy(from);
    const tree = this.subscriptions;
    const targets = behind
      ? cachedTargets(tree, topic) ?? tree.later(topicSegments(topic.name))
      : this.matches.targets(tree, topic, qos);
    if (targets instanceof Match || behind) {
      const msg = new Message(topic.name, value ?? null);
      msg.qos = qos;
      const generation = tree.generation;
      const later = this.matches.add(from, targets, msg, (found) => {
        // Kept for the next publish (checked against what changed since it began).
        // Not for a topic forgotten meanwhile: its cost would stay counted (review44 R3).
        if (targets instanceof Match && this.topics.get(topic.name) === topic) {
          keepTargets(tree, topic, found, generation);
        }
        if (created) announce(found, topic.name);
        return this.#deliver(topic, found, msg, t0, from);
      });
      return this.#answered(topic.name, created, later, 0);
    }
    if (created) announce(targets, topic.name);
    let deliveries = 0;
    if (targets.plain.length + targets.groups.length > 0) {
      const msg = new Message(topic.name, value === undefined ? null : value);
      msg.qos = qos;
      deliveries = this.#deliver(topic, targets, msg, t0, from);
    }
    return this.#answered(topic.name, created, undefined, deliveries);
  }

  /** Keeps the rest of publish()'s answer (see #routed); returns `deliveries`. */
  #answered(
    topic: string,
    created: boolean,
    later: Promise<number> | undefined,
    n: number,
  ): number {
    const routed = this.#routed;
    routed.topic = topic;
    routed.created = created;
    routed.later = later;
    return n;
  }

  /** Delivers now, or partly in later turns (see FanOut): counted as they are to be made. */
  #deliver(
    topic: Topic,
    targets: Targets<Subscription>,
    msg: Message,
    t0: number,
    from: Publisher | undefined,
  ): number {
    if (targets.plain.length + targets.groups.length === 0) return 0;
    const deliveries = this.fanOut.send(msg, targets, t0, from);
    topic.messagesOut += deliveries;
    this.messagesOut += deliveries;
    if (this.onOverBudget !== undefined) this.#checkBudget(); // after the turn's last publish
    return deliveries;
  }

  /**
   * Adds a subscription, held: the front end answers the subscribe, then
   * calls `sub.release()`, and the retained value of every existing topic
   * it covers goes out first (not to queue groups, which share live
   * messages only, as MQTT 5 shared subscriptions do). Naming and counting
   * the covered topics is bounded work (SUBSCRIBE_VISITS); the retained
   * values are read as the subscriber takes them (see snapshot.ts). It is
   * counted in its `source`'s share (see shares.ts).
   * @throws {DistError} BAD_REQUEST for an invalid pattern, group or policy;
   * OVERLOADED past max-subscriptions, max-memory or the source's share
   */
  subscribe(sink: Sink, request: SubscribeRequest): Subscribed {
    const { source, restored } = request;
    this.shares.check(this.#subs.size, source, SUBSCRIPTION_BYTES, restored);
    const pattern = normalizeTopic(request.topic, { pattern: true });
    const group = checkGroup(request.group);
    const policy = checkPolicy(request.policy);
    const segments = topicSegments(pattern);
    // One read back was taken within the budget: not refused by it (hostile41b X7), as by shares.
    if (!restored && this.wouldCross(subscriptionCost(segments))) {
      throw overloaded("no new subscriptions");
    }
    const sub = new Subscription(sink, {
      sid: this.#nextSid++,
      pattern,
      segments,
      group,
      policy,
      exact: request.exact,
      maxPending: this.maxPending,
    });
    // What it covers read back first, if the data file is still being read.
    this.topics.need(segments);
    // The whole tree is read from the index while restored topics wait: no wait for the build.
    if (!wholeTree(this.topics, segments, sub.exact)) placeUnder(this, segments);
    const covered = coverage(this.topics, segments, { ...request, exact: sub.exact });
    if (group === undefined) {
      const snapshot = covered.snapshot(this.messagesIn, this.#retainedCounted);
      if (snapshot !== undefined) sub.setSnapshot(snapshot);
    }
    const treeBytes = this.subscriptions.bytes;
    this.subscriptions.add(sub);
    // Its own and its pattern's new nodes: whoever made a node pays for it.
    sub.source = source;
    sub.sourceBytes = SUBSCRIPTION_BYTES + this.subscriptions.bytes - treeBytes;
    this.shares.add(sub);
    this.#subs.add(sub);
    this.#sinks.set(sink, (this.#sinks.get(sink) ?? 0) + 1);
    const { topics, topicCount, complete } = covered;
    return { sub, topics, topicCount, complete };
  }

  readonly #retainedCounted = (): void => void this.retainedSent++;

  /** Removes a subscription and what it has pending; false when it was already gone. */
  unsubscribe(sub: Subscription, drained?: () => void): boolean {
    if (!this.#subs.delete(sub)) return false;
    const held = this.#sinks.get(sub.sink)! - 1;
    if (held === 0) this.#sinks.delete(sub.sink);
    else this.#sinks.set(sub.sink, held);
    this.subscriptions.remove(sub);
    this.shares.remove(sub);
    // A queue group member's queue is the group's loss (its client's own for a plain one).
    if (sub.group !== undefined && drained === undefined) sub.dropped += sub.queued;
    this.#droppedGone += sub.dropped;
    if (drained === undefined) sub.cancel();
    else sub.cancelWhenDrained(drained); // what it queued goes first
    return true;
  }

  /**
   * The existing topics `prefix` covers (a topic or pattern, default `/`),
   * at most `limit` of them (and about `bytes` of answer), parents before
   * children, after `after` (the `next` of an earlier answer); bounded work.
   * @throws {DistError} BAD_REQUEST for an invalid prefix or `after`
   */
  listTopics(
    prefix: unknown = "/",
    limit = Infinity,
    after?: unknown,
    owner?: object,
    bytes?: number,
  ): TopicListing {
    const pattern = normalizeTopic(prefix, { pattern: true });
    const segments = topicSegments(pattern);
    const from = after === undefined ? undefined : normalizeTopic(after);
    this.topics.need(segments);
    placeUnder(this, segments);
    const list = { prefix: pattern, pattern: segments, limit, after: from, bytes };
    return this.#lister.list(this.topics.root, this.subscriptions, list, owner);
  }

  /**
   * What the broker's data takes in memory, as counted: topics and their
   * tree and retained values (V8's headroom included: HEAP_HEADROOM),
   * subscriptions and their tree, queued deliveries (their buffers, slack
   * included), MQTT packets being received and Topic Aliases, sessions, wills, the
   * publishers' memos of their last frames (wire/publish_memo.ts),
   * publishes in the fan-out's backlog or waiting for their matches and what
   * the transports hold (`outboundBytes` as last sampled, plus what the
   * process's output has grown by since: a fan-out can fill them meanwhile).
   */
  get memoryBytes(): number {
    return (this.topics.bytes + this.retained.bytes + this.subscriptions.cacheBytes) *
        HEAP_HEADROOM +
      this.#subs.size * SUBSCRIPTION_BYTES +
      this.subscriptions.bytes + queueMemory.bytes + this.fanOut.bytes + this.matches.bytes +
      readBuffers.bytes + sessionMemory.bytes + memoMemory.bytes +
      this.outboundBytes +
      Math.max(0, processOutbound.pending - this.outboundAt);
  }

  /** The sinks that hold subscriptions (connections of every front end). */
  sinks(): IterableIterator<Sink> {
    return this.#sinks.keys();
  }

  /** One of a sink's subscriptions (to cut it off through), if it holds any. */
  subscriptionOf(sink: Sink): Subscription | undefined {
    if (this.#sinks.has(sink)) { for (const sub of this.#subs) if (sub.sink === sink) return sub; }
    return undefined;
  }

  /** Whether `memoryBytes` is past `maxMemory`. */
  get overBudget(): boolean {
    return this.maxMemory !== Infinity && this.memoryBytes > this.maxMemory;
  }

  /**
   * Whether adding `cost` bytes would take `memoryBytes` past `maxMemory`, cached targets dropped
   * (matching.ts): refused before it crosses the budget, not once it has (hostile review 39b Q2).
   */
  wouldCross(cost: number): boolean {
    const over = this.memoryBytes + cost - this.maxMemory;
    return cost > 0 && over > 0 && dropCaches(this.topics, this.subscriptions, over, true) < over;
  }

  /** Deliveries dropped by policies, over all subscriptions past and present. */
  get dropped(): number {
    // With the QoS 0 deliveries parked subscriptions did not take (parking.ts).
    let n = this.#droppedGone + this.matches.parkedDrops.stalled;
    for (const sub of this.#subs) n += sub.dropped;
    return n;
  }

  /** Bytes waiting in subscription queues (not counting the transports'). */
  get queuedBytes(): number {
    let n = 0;
    for (const sub of this.#subs) n += sub.queuedBytes;
    return n;
  }
}
