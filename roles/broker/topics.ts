/**
 * The topic tree: every topic that exists (was published to), in a radix
 * tree of its segments (a chain of segments that leads to one place only is
 * one node: see topic_nodes.ts), so that "every topic under `/telephony`"
 * or "every topic matching `/+/orange`" is a walk of the matching branches,
 * never a scan of all topics. A node is small (where its path ends in a
 * topic's name, its children, two counts); what a topic keeps (its name,
 * counters, retained value, place in the activity order) is a {@link Topic}
 * hanging off its node, found by name in one lookup. The least recently
 * active topic is found in O(1) when the tree is at its limits: a number of
 * topics, and a byte budget (the memory its names and nodes take,
 * estimated).
 *
 * Each node counts the topics and the retained values in its subtree, so a
 * walk skips the branches that hold nothing it wants, and a walk is
 * resumable ({@link TopicWalk}) so its work can be spread over turns of the
 * event loop.
 *
 * Topics read back from a data file at start are restored flat (the index
 * and the order only, {@link TopicTree.restore}): a million of them would
 * take seconds to branch out before the port opens. They are placed in the
 * tree later, in slices ({@link TopicTree.placeSome}), and before that on
 * demand: whatever walks the tree first places the topics it may meet,
 * grouped by first segment ({@link TopicTree.placeUnder}). A lookup by name,
 * a publish and its deliveries need no branch.
 *
 * A large data file is even read back after the port opens: while it is,
 * the tree has a {@link TopicSource}, asked for what it may not hold yet —
 * a name it does not know ({@link TopicTree.get}), the topics a walk may
 * meet ({@link TopicTree.need}) — which reads those back at once.
 */
import { ONE_SEGMENT } from "../../clients/contracts/mod.ts";
import { DistError } from "../../wire/mod.ts";
import { cut } from "../../wire/_log.ts";
import { TopicWalk } from "./topic_walk.ts";
import { nodeUnder, placeTopic, TopicNode, unplaceTopic } from "./topic_nodes.ts";

export { CHILDREN_BYTES, NODE_BYTES, TopicNode } from "./topic_nodes.ts";

/** Estimated bytes of a topic beyond its name (the object, its index entry). */
export const TOPIC_BYTES = 200;

/** A topic that exists: its name, counters, retained value and place in the activity order. */
export class Topic {
  /** The normalised name (`/a/b`). */
  readonly name: string;
  /** Its node; undefined while a restored topic waits to be placed in the tree. */
  node: TopicNode | undefined;
  messagesIn = 0;
  messagesOut = 0;
  /** Epoch seconds of the last publish. */
  lastActive = 0;
  /** The retained value and its place in the update order: the RetainedStore's fields. */
  retained: unknown = undefined;
  retainedBytes = 0;
  retainedAt = 0;
  retainedOlder: Topic | undefined = undefined;
  retainedNewer: Topic | undefined = undefined;
  /** The broker's publish count when the retained value last changed. */
  retainedSeq = 0;
  /** The user whose publish set the retained value (none: no one in particular). */
  retainedBy: string | undefined = undefined;
  /** What the user whose publish made the topic made, held to its share (see topic_shares.ts). */
  made: UserTopics | undefined = undefined;
  /** Neighbours in its user's activity order (least recent first). */
  userOlder: Topic | undefined = undefined;
  userNewer: Topic | undefined = undefined;
  /**
   * Free for the broker: what the subscriptions matching this topic were
   * when `cacheGeneration` was current.
   */
  cache: unknown = undefined;
  cacheGeneration = -1;
  /** What `cache` (and `lossy`) take, as counted (matching.ts). */
  cacheCost = 0;
  /** Free for the broker: the cached targets of a QoS 0 publish (matching.ts). */
  lossy: unknown = undefined;
  /** Neighbours in the activity order (least recent first). */
  older: Topic | undefined = undefined;
  newer: Topic | undefined = undefined;

  constructor(name: string, node: TopicNode | undefined) {
    this.name = name;
    this.node = node;
  }
}

/** One user's topics (see topic_shares.ts): how many, their bytes, least recently active first. */
export interface UserTopics {
  readonly user: string;
  topics: number;
  bytes: number;
  oldest: Topic | undefined;
  newest: Topic | undefined;
}

/** Makes `topic` the most recently active of `made`'s (it is not in the list). */
export function userAppend(made: UserTopics, topic: Topic): void {
  topic.made = made;
  topic.userOlder = made.newest;
  topic.userNewer = undefined;
  if (made.newest === undefined) made.oldest = topic;
  else made.newest.userNewer = topic;
  made.newest = topic;
}

/** Takes `topic` out of its user's list. */
export function userUnlink(topic: Topic): void {
  const made = topic.made!;
  if (topic.userOlder === undefined) made.oldest = topic.userNewer;
  else topic.userOlder.userNewer = topic.userNewer;
  if (topic.userNewer === undefined) made.newest = topic.userOlder;
  else topic.userNewer.userOlder = topic.userOlder;
  topic.userOlder = topic.userNewer = undefined;
}

/**
 * Where topics not read back yet come from, while a data file is being read
 * (see DurableBroker): each call reads what it names back into the tree, at
 * once, unless the tree holds a newer state of it.
 */
export interface TopicSource {
  /** Reads back the topic of this name (any string: not checked), if the file holds it. */
  fetch(name: string): void;
  /** Reads back every topic a walk of `pattern` (a normalised pattern's segments) may meet. */
  fetchUnder(pattern: readonly string[]): void;
}

/** The tree of existing topics. */
export class TopicTree {
  readonly root: TopicNode = new TopicNode(undefined, "", 0);
  /** Existing topics by name: a publish finds its topic in one lookup. */
  #index = new Map<string, Topic>();
  #bytes = 0;
  #oldest: Topic | undefined;
  #newest: Topic | undefined;
  /**
   * The newest topic put back by {@link restore}: the next goes just after
   * it in the activity order, before every topic active since the start.
   */
  #restoredNewest: Topic | undefined;
  /**
   * Restored topics not yet in the tree, by first segment (a topic forgotten
   * meanwhile stays listed and is skipped), and how many are listed.
   */
  #unplaced = new Map<string, Topic[]>();
  #unplacedCount = 0;
  /** Told of a topic forgotten, to drop its cached targets (core.ts: off the subscription tree's count). */
  onForgotten: (topic: Topic) => void = () => {};
  /** Set while topics are still being read back from a data file (see the module comment). */
  source: TopicSource | undefined = undefined;

  /** Number of existing topics. */
  get size(): number {
    return this.#index.size;
  }

  /** Estimated bytes of the topics' names and nodes. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Every existing topic, placed or not, in the order made (a live iterator of the index). */
  values(): IterableIterator<Topic> {
    return this.#index.values();
  }

  /**
   * The existing topic of a normalised name (read back first, if the data
   * file is still being read and holds it).
   */
  get(name: string): Topic | undefined {
    const topic = this.#index.get(name);
    if (topic !== undefined || this.source === undefined) return topic;
    this.source.fetch(name);
    return this.#index.get(name);
  }

  /** The topic of a normalised name if the tree holds it now (never read back). */
  peek(name: string): Topic | undefined {
    return this.#index.get(name);
  }

  /**
   * Reads back every topic a walk of `pattern` may meet, if the data file is
   * still being read. Call before {@link placeUnder} and walking the tree,
   * and before reading the whole index.
   */
  need(pattern: readonly string[]): void {
    this.source?.fetchUnder(pattern);
  }

  /**
   * Makes a normalised name a topic (newest in the activity order), with
   * its branch created as needed. Precondition: it does not exist.
   */
  create(name: string, now: number): Topic {
    const topic = new Topic(name, undefined);
    topic.lastActive = now;
    this.#index.set(name, topic);
    this.#bytes += TOPIC_BYTES + name.length;
    this.#append(topic);
    this.#bytes += placeTopic(this.root, topic);
    return topic;
  }

  /**
   * Makes a normalised name a topic without its branch: it is in the index
   * at once and placed in the tree later ({@link placeSome},
   * {@link placeUnder}). In the activity order it goes after the topics
   * restored before it and before every topic active since the start (so
   * the newest, when only restores happened). What it counts in `bytes` is
   * what exists: its nodes are counted when they are made. Precondition: it
   * does not exist.
   */
  restore(name: string, now: number): Topic {
    const topic = new Topic(name, undefined);
    topic.lastActive = now;
    this.#index.set(name, topic);
    this.#bytes += TOPIC_BYTES + name.length;
    const before = this.#restoredNewest;
    const after = before === undefined ? this.#oldest : before.newer;
    topic.older = before;
    topic.newer = after;
    if (before !== undefined) before.newer = topic;
    else this.#oldest = topic;
    if (after !== undefined) after.older = topic;
    else this.#newest = topic;
    this.#restoredNewest = topic;
    const cut = name.indexOf("/", 1);
    const first = cut < 0 ? name.slice(1) : name.slice(1, cut);
    const list = this.#unplaced.get(first);
    if (list === undefined) this.#unplaced.set(first, [topic]);
    else list.push(topic);
    this.#unplacedCount++;
    return topic;
  }

  /** Restored topics still waiting to be placed in the tree (forgotten ones included). */
  get unplaced(): number {
    return this.#unplacedCount;
  }

  /**
   * Places every restored topic that a walk of `pattern` may meet: those
   * under its first segment, or all for a pattern that begins with `+` (or
   * is `/`). Call before walking the tree from its root.
   */
  placeUnder(pattern: readonly string[]): void {
    if (this.#unplacedCount === 0) return;
    if (pattern.length === 0 || pattern[0] === ONE_SEGMENT) {
      this.placeSome(Infinity);
      return;
    }
    const list = this.#unplaced.get(pattern[0]);
    if (list === undefined) return;
    this.#unplaced.delete(pattern[0]);
    this.#placeList(list, list.length);
  }

  /** Places up to `n` restored topics in the tree; returns whether any are left. */
  placeSome(n: number): boolean {
    for (const [first, list] of this.#unplaced) {
      if (n <= 0) break;
      const take = Math.min(n, list.length);
      n -= take;
      this.#placeList(list, take);
      if (list.length === 0) this.#unplaced.delete(first);
    }
    return this.#unplacedCount > 0;
  }

  /** Places the last `take` topics of `list` (removed from it). */
  #placeList(list: Topic[], take: number): void {
    for (let i = 0; i < take; i++) {
      const topic = list.pop()!;
      // Forgotten while it waited.
      if (this.#index.get(topic.name) !== topic) continue;
      this.#bytes += placeTopic(this.root, topic);
      if (topic.retained !== undefined) this.retainedChanged(topic, 1);
    }
    this.#unplacedCount -= take;
  }

  /** Records activity on a topic: it becomes the most recently active. */
  touch(topic: Topic, now: number): void {
    topic.lastActive = now;
    const made = topic.made;
    if (made !== undefined && made.newest !== topic) {
      userUnlink(topic);
      userAppend(made, topic);
    }
    if (this.#newest === topic) {
      // Active now: what is restored later goes before it.
      if (topic === this.#restoredNewest) this.#restoredNewest = topic.older;
      return;
    }
    this.#unlink(topic);
    this.#append(topic);
  }

  /**
   * Passes a topic over: it goes to the most recent end of the order, its
   * `lastActive` unchanged (see topic_shares.ts).
   */
  pass(topic: Topic): void {
    if (this.#newest === topic) return;
    this.#unlink(topic);
    this.#append(topic);
  }

  /** The least recently active topic (follow `newer` from it). */
  get oldest(): Topic | undefined {
    return this.#oldest;
  }

  /** The most recently active topic (follow `older` from it). */
  get newest(): Topic | undefined {
    return this.#newest;
  }

  /** Messages in and out of the `limit` most recently active topics. */
  perTopic(limit: number): Record<string, { in: number; out: number }> {
    const out: Record<string, { in: number; out: number }> = {};
    let topic = this.newest;
    for (let i = 0; i < limit && topic !== undefined; i++, topic = topic.older) {
      out[topic.name] = { in: topic.messagesIn, out: topic.messagesOut };
    }
    return out;
  }

  /** A topic gained (+1) or lost (-1) its retained value. */
  retainedChanged(topic: Topic, delta: number): void {
    // An unplaced topic's value is counted when it is placed.
    for (let n: TopicNode | undefined = topic.node; n !== undefined; n = n.parent) {
      n.retained += delta;
    }
  }

  /**
   * Forgets a topic: it leaves the index and the order, and its nodes go
   * too unless other topics hang below them. The caller has released its
   * retained value.
   */
  forget(topic: Topic): void {
    if (this.#index.get(topic.name) !== topic) return;
    this.#index.delete(topic.name);
    this.#unlink(topic);
    this.#bytes -= TOPIC_BYTES + topic.name.length;
    this.onForgotten(topic);
    if (topic.node === undefined) return; // still unplaced: skipped when its turn comes
    this.#bytes += unplaceTopic(this.root, topic);
    topic.node = undefined;
  }

  /** Whether a pattern (its segments) may cover a retained value (exactly, without `+`). */
  retainedUnder(segments: readonly string[]): boolean {
    const plus = segments.indexOf(ONE_SEGMENT);
    const node = nodeUnder(this.root, plus < 0 ? segments : segments.slice(0, plus));
    return node !== undefined && node.retained > 0;
  }

  /**
   * Calls `visit` for every existing topic that `pattern` covers: the topic
   * itself and its subtree, `+` matching any one segment, parents before
   * children. Only branches holding topics are walked. `visit` returns
   * false to stop.
   */
  walk(pattern: readonly string[], visit: (topic: Topic) => boolean | void): void {
    this.need(pattern);
    this.placeUnder(pattern);
    const walk = new TopicWalk(this.root, pattern, (n) => n.topics === 0);
    const budget = { left: Infinity };
    for (let node = walk.next(budget); node !== undefined; node = walk.next(budget)) {
      if (visit(node.topic!) === false) return;
    }
  }

  #append(topic: Topic): void {
    topic.older = this.#newest;
    topic.newer = undefined;
    if (this.#newest !== undefined) this.#newest.newer = topic;
    else this.#oldest = topic;
    this.#newest = topic;
  }

  #unlink(topic: Topic): void {
    if (topic === this.#restoredNewest) this.#restoredNewest = topic.older;
    if (topic.older !== undefined) topic.older.newer = topic.newer;
    else if (this.#oldest === topic) this.#oldest = topic.newer;
    if (topic.newer !== undefined) topic.newer.older = topic.older;
    else if (this.#newest === topic) this.#newest = topic.older;
    topic.older = topic.newer = undefined;
  }
}

/**
 * Refuses a client's publish to `/$SYS/…` (the broker's own statistics);
 * one character compared for every other topic.
 */
export function refuseSystemTopic(name: string): void {
  if (name.charCodeAt(1) !== 36 /* $ */ || !(name === "/$SYS" || name.startsWith("/$SYS/"))) return;
  throw new DistError(
    "UNAUTHORIZED",
    `Topics under /$SYS are the broker's own statistics, not for clients to publish (${cut(name)})`,
  );
}
