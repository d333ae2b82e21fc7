/**
 * The broker's core: topics, retained values, subscriptions and delivery,
 * with no protocol and no sockets. A front end (the dist wire protocol
 * today, MQTT later) turns its requests into calls here and gives each
 * subscription a {@link Sink} that carries its deliveries.
 */
import { describe, DistError } from "../../wire/mod.ts";
import { normalizeTopic, topicSegments } from "../../clients/contracts/mod.ts";
import { RetainedStore } from "./retained.ts";
import {
  EncodedValue,
  Message,
  POLICIES,
  type Policy,
  type Sink,
  type Snapshot,
  Subscription,
} from "./subscriber.ts";
import { type Group, SubscriptionTree, type Targets } from "./subscriptions.ts";
import { type Topic, type TopicNode, TopicTree, TopicWalk, type WalkBudget } from "./topics.ts";

export interface BrokerCoreOptions {
  /** Byte budget of the retained values. */
  retainBytes: number;
  /** Each connection's pending-byte limit (all its subscriptions together). */
  maxPending: number;
  /** Most topics kept; past it the least recently active topic is forgotten. */
  maxTopics: number;
  /**
   * Byte budget of the topics' names and tree nodes (estimated); past it the
   * least recently active topics are forgotten. Default: no budget.
   */
  maxTopicBytes?: number;
  /** Clock (epoch ms); tests may replace it. */
  now?: () => number;
}

export interface PublishResult {
  topic: string;
  /** Subscribers the message went to (a group counts once). */
  deliveries: number;
  /** The topic did not exist before. */
  created: boolean;
}

export interface SubscribeRequest {
  /** A topic or pattern, not yet normalised. */
  topic: unknown;
  group?: unknown;
  policy?: unknown;
  /** Only topics at the pattern's own depth (an MQTT filter without `#`). */
  exact?: boolean;
}

export interface Subscribed {
  sub: Subscription;
  /** Existing topics the subscription covers (at most `TOPIC_NAMES_LIMIT`). */
  topics: string[];
  /** How many existing topics it covers (at least; see `complete`). */
  topicCount: number;
  /**
   * False when counting stopped at its work bound (SUBSCRIBE_VISITS): a
   * pattern with `+` over a very wide level. `topicCount` is then a floor.
   */
  complete: boolean;
}

/** What `broker.topics` tells of a topic. */
export interface TopicInfo {
  topic: string;
  retained: boolean;
  last_active: string;
  subscribers: number;
  messages: number;
  delivered: number;
}

/** Most topic names a subscribe answer lists (the count says how many there are). */
export const TOPIC_NAMES_LIMIT = 1000;
/**
 * Tree nodes a subscribe may visit to name and count the topics it covers,
 * each (about half a millisecond): its cost never grows with the tree.
 * Counting reads each matched branch's topic count, so only a `+` over a
 * level wider than this leaves the count incomplete.
 */
export const SUBSCRIBE_VISITS = 8192;
/** Tree nodes one `broker.topics` may visit (its answer says `truncated` past it). */
export const LIST_VISITS = 65_536;
/** Longest queue group name. */
const MAX_GROUP_LENGTH = 256;

/**
 * What a value costs in the retained store: about its size as JSON text
 * (a string counts its length: a byte per character, as V8 keeps most
 * strings, and O(1) on every publish).
 */
export function valueBytes(value: unknown): number {
  if (value instanceof EncodedValue) return value.byteLength;
  switch (typeof value) {
    case "string":
      return value.length + 2;
    case "number":
    case "boolean":
      return 8;
    case "object":
      if (value === null) return 4;
      try {
        return (JSON.stringify(value) ?? "").length;
      } catch {
        return 0; // not JSON (a MessagePack extension): counted by its key alone
      }
    default:
      return 4;
  }
}

function badValue(why: string): DistError {
  return new DistError("BAD_REQUEST", `Invalid value: ${why}`);
}

/**
 * Refuses a value that some subscriber would get wrong, whichever codec it
 * speaks: NaN or ±Infinity (JSON has no such number and would read null),
 * an invalid Date (null, or 1970), text with a lone surrogate (no UTF-8
 * form: a MessagePack subscriber's decoder refuses it), and anything that
 * is not a JSON value, binary or a Date. Values come from a decoder, so
 * their depth is bounded already.
 * @throws {DistError} BAD_REQUEST
 */
export function checkValue(value: unknown): void {
  switch (typeof value) {
    case "string":
      if (!value.isWellFormed()) throw badValue("text with a lone surrogate (no UTF-8 form)");
      return;
    case "number":
      if (!Number.isFinite(value)) throw badValue(`${value} is not a finite number`);
      return;
    case "boolean":
      return;
    case "object":
      break;
    default:
      throw badValue(`a ${typeof value} is not a JSON value`);
  }
  if (value === null || value instanceof Uint8Array) return;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) checkValue(value[i]);
    return;
  }
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) throw badValue("a time outside the range of dates");
    return;
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) {
    throw badValue(`${describe(value)} is not a JSON value`);
  }
  for (const key in value) {
    if (!key.isWellFormed()) throw badValue("a key with a lone surrogate (no UTF-8 form)");
    checkValue((value as Record<string, unknown>)[key]);
  }
}

/** Skips branches that hold no topic. */
const noTopics = (node: TopicNode) => node.topics === 0;
/** Skips branches that hold no retained value. */
const noRetained = (node: TopicNode) => node.retained === 0;

/**
 * A subscription's retained snapshot as a cursor over the tree: each value
 * is read when the sink has room for it. A topic whose retained value
 * changed after the subscribe is left out: the change reaches the
 * subscription live (it was subscribed by then), after the snapshot, so a
 * subscriber never gets an older value after a newer one. An exact
 * subscription's snapshot holds only the topics the pattern names, and a
 * pattern that begins with `+` (or is `/`) leaves `$` topics out.
 */
class RetainedSnapshot implements Snapshot {
  readonly #walk: TopicWalk;
  readonly #since: number;
  readonly #core: BrokerCore;
  readonly #hideDollar: boolean;

  constructor(core: BrokerCore, segments: readonly string[], since: number, exact: boolean) {
    this.#core = core;
    this.#since = since;
    this.#hideDollar = segments.length === 0 || segments[0] === "+";
    this.#walk = new TopicWalk(core.topics.root, segments, noRetained, exact);
  }

  next(budget: WalkBudget): Message | null | undefined {
    while (true) {
      const node = this.#walk.next(budget);
      if (node === undefined) return this.#walk.done ? undefined : null;
      const topic = node.topic;
      if (topic === undefined) continue; // an exact walk meets inner nodes too
      const entry = topic.retained;
      if (entry === undefined || topic.retainedSeq > this.#since) continue;
      if (this.#hideDollar && topic.name.startsWith("/$")) continue;
      this.#core.retainedSent++;
      return new Message(topic.name, entry.value, true);
    }
  }
}

export class BrokerCore {
  readonly topics = new TopicTree();
  readonly subscriptions = new SubscriptionTree<Subscription>();
  readonly retained: RetainedStore<Topic>;
  readonly maxPending: number;
  readonly maxTopics: number;
  readonly maxTopicBytes: number;
  messagesIn = 0;
  messagesOut = 0;
  retainedSent = 0;
  topicsEvicted = 0;
  retainedTooLarge = 0;
  /** With --metrics: each publish's time to its last delivery (obs/timings.ts). */
  delivery: { observe(seconds: number): void } | undefined;
  #sampled = 0;
  #now: () => number;
  #nextSid = 1;
  #subs = new Set<Subscription>();
  /** Dropped counts of subscriptions already gone. */
  #droppedGone = 0;

  /** Date.now() read once per turn of the event loop: a read's publishes share one instant. */
  #turnTime = 0;
  #turnClock = (): number => {
    if (this.#turnTime === 0) {
      this.#turnTime = Date.now();
      queueMicrotask(() => this.#turnTime = 0);
    }
    return this.#turnTime;
  };

  constructor(options: BrokerCoreOptions) {
    this.retained = new RetainedStore<Topic>(
      options.retainBytes,
      (topic, delta) => this.topics.retainedChanged(topic, delta),
    );
    this.maxPending = options.maxPending;
    this.maxTopics = Math.max(1, options.maxTopics);
    this.maxTopicBytes = options.maxTopicBytes ?? Infinity;
    this.#now = options.now ?? this.#turnClock;
  }

  /**
   * Routes one message to every subscription that covers its topic (one
   * member per group), and with `retain` makes it the topic's retained value
   * (`null` clears it). An {@link EncodedValue} is used only during this
   * call (encoded for the subscribers, detached to be kept or held), so a
   * front end may lend it a view of its read buffer (it is checked by the
   * front end; any other value is checked here). `qos` is an MQTT
   * publisher's (see Message.qos).
   * @throws {DistError} BAD_REQUEST for an invalid topic or value (see checkValue)
   */
  publish(rawTopic: unknown, value: unknown, retain = true, qos = 2): PublishResult {
    // One publish in 8 is timed: a clock read costs about 0.1 µs, a publish a few.
    const t0 = this.delivery !== undefined && (++this.#sampled & 7) === 0 ? performance.now() : 0;
    if (value !== undefined && !(value instanceof EncodedValue)) checkValue(value);
    // Seconds: a small integer is stored in place, a millisecond time would
    // be a boxed number allocated on every publish.
    const now = Math.floor(this.#now() / 1000);
    // Only normalised names are keys of the tree: a hit needs no checking.
    let topic = typeof rawTopic === "string" ? this.topics.get(rawTopic) : undefined;
    let created = false;
    if (topic === undefined) {
      const name = normalizeTopic(rawTopic);
      topic = this.topics.get(name);
      if (topic === undefined) {
        topic = this.topics.create(name, topicSegments(name), now);
        created = true;
        this.#makeRoom();
      }
    }
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
        const kept = value instanceof EncodedValue ? value.detach() : value;
        const bytes = topic.name.length + valueBytes(kept);
        if (this.retained.set(topic, kept, bytes, now) === "too_large") this.retainedTooLarge++;
      }
    }
    const targets = this.#targets(topic);
    if (created) this.#announce(targets, topic.name);
    const { plain, groups } = targets;
    let deliveries = 0;
    if (plain.length + groups.length > 0) {
      const msg = new Message(topic.name, value === undefined ? null : value);
      msg.qos = qos;
      for (let i = 0; i < plain.length; i++) plain[i].deliver(msg);
      deliveries = plain.length;
      for (let i = 0; i < groups.length; i++) {
        // A member cut off during this very loop may have emptied its group.
        if (groups[i].members.length === 0) continue;
        groups[i].pick().deliver(msg);
        deliveries++;
      }
      topic.messagesOut += deliveries;
      this.messagesOut += deliveries;
      if (t0 !== 0) this.delivery!.observe((performance.now() - t0) / 1000);
    }
    return { topic: topic.name, deliveries, created };
  }

  /**
   * Puts back a retained value read from the data file at start: the topic
   * is made (as a publish would, within the topic limits) and the value
   * retained within the budget; nobody is subscribed yet, so nothing is
   * delivered.
   * @param updatedAt when it was set (epoch seconds)
   */
  restoreRetained(name: string, value: unknown, updatedAt: number): void {
    let topic = this.topics.get(name);
    if (topic === undefined) {
      topic = this.topics.create(name, topicSegments(name), updatedAt);
      this.#makeRoom();
    }
    this.retained.set(topic, value, topic.name.length + valueBytes(value), updatedAt);
  }

  /**
   * Adds a subscription, held: the front end answers the subscribe, then
   * calls `sub.release()`, and the retained value of every existing topic
   * it covers goes out first (not to queue groups, which share live
   * messages only, as MQTT 5 shared subscriptions do). Naming and counting
   * the covered topics is bounded work (SUBSCRIBE_VISITS); the retained
   * values are read as the subscriber takes them (see RetainedSnapshot).
   * @throws {DistError} BAD_REQUEST for an invalid pattern, group or policy
   */
  subscribe(sink: Sink, request: SubscribeRequest): Subscribed {
    const pattern = normalizeTopic(request.topic, { pattern: true });
    const group = checkGroup(request.group);
    const policy = checkPolicy(request.policy);
    const segments = topicSegments(pattern);
    const sub = new Subscription(sink, {
      sid: this.#nextSid++,
      pattern,
      segments,
      group,
      policy,
      exact: request.exact,
      maxPending: this.maxPending,
    });
    // Counting reads the topic count of each branch the pattern names.
    const root = this.topics.root;
    let budget = { left: SUBSCRIBE_VISITS };
    const ends = new TopicWalk(root, segments, noTopics, true);
    let topicCount = 0;
    for (let node = ends.next(budget); node !== undefined; node = ends.next(budget)) {
      topicCount += node.topics;
    }
    budget = { left: SUBSCRIBE_VISITS };
    const names = new TopicWalk(root, segments, noTopics);
    const topics: string[] = [];
    while (topics.length < TOPIC_NAMES_LIMIT) {
      const node = names.next(budget);
      if (node === undefined) break;
      topics.push(node.topic!.name);
    }
    if (group === undefined && this.#retainedUnder(segments)) {
      sub.setSnapshot(new RetainedSnapshot(this, segments, this.messagesIn, sub.exact));
    }
    this.subscriptions.add(sub);
    this.#subs.add(sub);
    return { sub, topics, topicCount: Math.max(topicCount, topics.length), complete: ends.done };
  }

  /** Whether a pattern may cover any retained value (exact for a pattern without `+`). */
  #retainedUnder(segments: readonly string[]): boolean {
    let node: TopicNode | undefined = this.topics.root;
    for (const segment of segments) {
      if (segment === "+") return node.retained > 0;
      node = node.children?.get(segment);
      if (node === undefined) return false;
    }
    return node.retained > 0;
  }

  /** Removes a subscription and what it has pending; false when it was already gone. */
  unsubscribe(sub: Subscription): boolean {
    if (!this.#subs.delete(sub)) return false;
    this.subscriptions.remove(sub);
    this.#droppedGone += sub.dropped;
    sub.cancel();
    return true;
  }

  /**
   * The existing topics `prefix` covers (a topic or pattern, default `/`),
   * at most `limit` of them, parents before children; `truncated` when
   * there were more, or when the walk stopped at its work bound (LIST_VISITS).
   */
  listTopics(prefix: unknown = "/", limit = Infinity): { topics: TopicInfo[]; truncated: boolean } {
    const pattern = normalizeTopic(prefix, { pattern: true });
    const topics: TopicInfo[] = [];
    const walk = new TopicWalk(this.topics.root, topicSegments(pattern), noTopics);
    const budget = { left: LIST_VISITS };
    while (topics.length < limit) {
      const node = walk.next(budget);
      if (node === undefined) break;
      const topic = node.topic!;
      const { plain, groups } = this.#targets(topic);
      let subscribers = plain.length;
      for (const g of groups) subscribers += g.members.length;
      topics.push({
        topic: topic.name,
        retained: topic.retained !== undefined,
        last_active: new Date(topic.lastActive * 1000).toISOString(),
        subscribers,
        messages: topic.messagesIn,
        delivered: topic.messagesOut,
      });
    }
    // Past the limit, or stopped by the work bound: there may be more.
    const truncated = topics.length >= limit
      ? walk.next(budget) !== undefined || !walk.done
      : !walk.done;
    return { topics, truncated };
  }

  /** Deliveries dropped by policies, over all subscriptions past and present. */
  get dropped(): number {
    let n = this.#droppedGone;
    for (const sub of this.#subs) n += sub.dropped;
    return n;
  }

  /** Bytes waiting in subscription queues (not counting the transports'). */
  get queuedBytes(): number {
    let n = 0;
    for (const sub of this.#subs) n += sub.queuedBytes;
    return n;
  }

  /** Messages in and out of the `limit` most recently active topics. */
  perTopic(limit: number): Record<string, { in: number; out: number }> {
    const out: Record<string, { in: number; out: number }> = {};
    let topic = this.topics.newest;
    for (let i = 0; i < limit && topic !== undefined; i++, topic = topic.older) {
      out[topic.name] = { in: topic.messagesIn, out: topic.messagesOut };
    }
    return out;
  }

  /** The subscriptions and groups a topic reaches, cached on it until they change. */
  #targets(topic: Topic): Targets<Subscription> {
    const generation = this.subscriptions.generation;
    if (topic.cacheGeneration !== generation) {
      topic.cache = this.subscriptions.match(topicSegments(topic.name));
      topic.cacheGeneration = generation;
    }
    return topic.cache as Targets<Subscription>;
  }

  /** Tells every subscription that covers a new topic (each group member too). */
  #announce(targets: Targets<Subscription>, topic: string): void {
    for (const sub of targets.plain) if (!sub.cancelled) sub.sink.topicCreated(sub, topic);
    for (const group of targets.groups as Group<Subscription>[]) {
      for (const sub of group.members) sub.sink.topicCreated(sub, topic);
    }
  }

  /**
   * Forgets the least recently active topics until the tree is within its
   * limits (the newest, just made, is never the one forgotten).
   */
  #makeRoom(): void {
    const topics = this.topics;
    while (topics.size > this.maxTopics || topics.bytes > this.maxTopicBytes) {
      const oldest = topics.oldest!;
      if (oldest === topics.newest) return;
      this.retained.clear(oldest);
      topics.forget(oldest);
      this.topicsEvicted++;
    }
  }
}

function checkGroup(group: unknown): string | undefined {
  if (group === undefined || group === null) return undefined;
  if (typeof group !== "string" || group === "" || group.length > MAX_GROUP_LENGTH) {
    throw new DistError(
      "BAD_REQUEST",
      `A group must be a non-empty string of at most ${MAX_GROUP_LENGTH} characters, not ${
        describe(group)
      }`,
    );
  }
  return group;
}

function checkPolicy(policy: unknown): Policy {
  if (policy === undefined || policy === null) return "disconnect";
  if (typeof policy === "string" && (POLICIES as readonly string[]).includes(policy)) {
    return policy as Policy;
  }
  throw new DistError(
    "BAD_REQUEST",
    `Unknown policy ${describe(policy)}: expected one of ${POLICIES.join(", ")}`,
  );
}
