/**
 * The broker's core: topics, retained values, subscriptions and delivery,
 * with no protocol and no sockets. A front end (the dist wire protocol
 * today, MQTT later) turns its requests into calls here and gives each
 * subscription a {@link Sink} that carries its deliveries.
 */
import { describe, DistError } from "../../wire/mod.ts";
import { normalizeTopic, topicSegments } from "../_topic.ts";
import { RetainedStore } from "./retained.ts";
import {
  EncodedValue,
  Message,
  POLICIES,
  type Policy,
  type Sink,
  Subscription,
} from "./subscriber.ts";
import { type Group, SubscriptionTree, type Targets } from "./subscriptions.ts";
import { type TopicNode, TopicTree } from "./topics.ts";

export interface BrokerCoreOptions {
  /** Byte budget of the retained values. */
  retainBytes: number;
  /** Each subscriber's pending-byte limit. */
  maxPending: number;
  /** Most topics kept; past it the least recently active topic is forgotten. */
  maxTopics: number;
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
}

export interface Subscribed {
  sub: Subscription;
  /** Existing topics the subscription covers (at most `TOPIC_NAMES_LIMIT`). */
  topics: string[];
  /** How many existing topics it covers. */
  topicCount: number;
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

export class BrokerCore {
  readonly topics = new TopicTree();
  readonly subscriptions = new SubscriptionTree<Subscription>();
  readonly retained: RetainedStore<TopicNode>;
  readonly maxPending: number;
  readonly maxTopics: number;
  messagesIn = 0;
  messagesOut = 0;
  retainedSent = 0;
  topicsEvicted = 0;
  retainedTooLarge = 0;
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
    this.retained = new RetainedStore(options.retainBytes);
    this.maxPending = options.maxPending;
    this.maxTopics = Math.max(1, options.maxTopics);
    this.#now = options.now ?? this.#turnClock;
  }

  /**
   * Routes one message to every subscription that covers its topic (one
   * member per group), and with `retain` makes it the topic's retained value
   * (`null` clears it). An {@link EncodedValue} is used only during this
   * call (encoded for the subscribers, detached to be kept or held), so a
   * front end may lend it a view of its read buffer (it is checked by the
   * front end; any other value is checked here).
   * @throws {DistError} BAD_REQUEST for an invalid topic or value (see checkValue)
   */
  publish(rawTopic: unknown, value: unknown, retain = true): PublishResult {
    if (value !== undefined && !(value instanceof EncodedValue)) checkValue(value);
    // Only normalised topics are keys of the tree: a hit needs no checking.
    let node = typeof rawTopic === "string" ? this.topics.get(rawTopic) : undefined;
    if (node === undefined) {
      const topic = normalizeTopic(rawTopic);
      node = this.topics.node(topic, topicSegments(topic));
    }
    // Seconds: a small integer is stored in place, a millisecond time would
    // be a boxed number allocated on every publish.
    const now = Math.floor(this.#now() / 1000);
    const created = !node.exists;
    if (created) {
      this.#makeRoom();
      this.topics.create(node, now);
    } else {
      this.topics.touch(node, now);
    }
    node.messagesIn++;
    this.messagesIn++;
    if (retain) {
      if (
        value === null || value === undefined || (value instanceof EncodedValue && value.isNull)
      ) {
        this.retained.clear(node);
      } else {
        const kept = value instanceof EncodedValue ? value.detach() : value;
        const bytes = node.topic.length + valueBytes(kept);
        if (this.retained.set(node, kept, bytes, now) === "too_large") this.retainedTooLarge++;
      }
    }
    const targets = this.#targets(node);
    if (created) this.#announce(targets, node.topic);
    const { plain, groups } = targets;
    let deliveries = 0;
    if (plain.length + groups.length > 0) {
      const msg = new Message(node.topic, value === undefined ? null : value);
      for (let i = 0; i < plain.length; i++) plain[i].deliver(msg);
      deliveries = plain.length;
      for (let i = 0; i < groups.length; i++) {
        // A member cut off during this very loop may have emptied its group.
        if (groups[i].members.length === 0) continue;
        groups[i].pick().deliver(msg);
        deliveries++;
      }
      node.messagesOut += deliveries;
      this.messagesOut += deliveries;
    }
    return { topic: node.topic, deliveries, created };
  }

  /**
   * Adds a subscription, held: the front end answers the subscribe, then
   * calls `sub.release()`, and the retained value of every existing topic
   * it covers goes out first (not to queue groups, which share live
   * messages only, as MQTT 5 shared subscriptions do).
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
      maxPending: this.maxPending,
    });
    const topics: string[] = [];
    const snapshot: Message[] = [];
    let topicCount = 0;
    this.topics.walk(segments, (node) => {
      topicCount++;
      if (topics.length < TOPIC_NAMES_LIMIT) topics.push(node.topic);
      if (group === undefined && node.retained !== undefined) {
        snapshot.push(new Message(node.topic, node.retained.value, true));
      }
    });
    sub.setSnapshot(snapshot);
    this.retainedSent += snapshot.length;
    this.subscriptions.add(sub);
    this.#subs.add(sub);
    return { sub, topics, topicCount };
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
   * at most `limit` of them, parents before children.
   */
  listTopics(prefix: unknown = "/", limit = Infinity): { topics: TopicInfo[]; truncated: boolean } {
    const pattern = normalizeTopic(prefix, { pattern: true });
    const topics: TopicInfo[] = [];
    let truncated = false;
    this.topics.walk(topicSegments(pattern), (node) => {
      if (topics.length >= limit) {
        truncated = true;
        return false;
      }
      const { plain, groups } = this.#targets(node);
      let subscribers = plain.length;
      for (const g of groups) subscribers += g.members.length;
      topics.push({
        topic: node.topic,
        retained: node.retained !== undefined,
        last_active: new Date(node.lastActive * 1000).toISOString(),
        subscribers,
        messages: node.messagesIn,
        delivered: node.messagesOut,
      });
    });
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
    let node = this.topics.newest;
    for (let i = 0; i < limit && node !== undefined; i++, node = node.older) {
      out[node.topic] = { in: node.messagesIn, out: node.messagesOut };
    }
    return out;
  }

  /** The subscriptions and groups a topic reaches, cached on its node until they change. */
  #targets(node: TopicNode): Targets<Subscription> {
    const generation = this.subscriptions.generation;
    if (node.cacheGeneration !== generation) {
      node.cache = this.subscriptions.match(topicSegments(node.topic));
      node.cacheGeneration = generation;
    }
    return node.cache as Targets<Subscription>;
  }

  /** Tells every subscription that covers a new topic (each group member too). */
  #announce(targets: Targets<Subscription>, topic: string): void {
    for (const sub of targets.plain) if (!sub.cancelled) sub.sink.topicCreated(sub, topic);
    for (const group of targets.groups as Group<Subscription>[]) {
      for (const sub of group.members) sub.sink.topicCreated(sub, topic);
    }
  }

  /** Forgets the least recently active topics until a new one fits. */
  #makeRoom(): void {
    while (this.topics.size >= this.maxTopics) {
      const oldest = this.topics.oldest!;
      this.retained.clear(oldest);
      this.topics.forget(oldest);
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
