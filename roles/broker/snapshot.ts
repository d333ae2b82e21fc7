/**
 * What a new subscription covers: the existing topics it names and counts
 * (bounded work), and its retained snapshot, read from the topic tree as
 * its subscriber takes the values (see Subscription.setSnapshot). While
 * topics restored at start still wait for their branches, a subscription
 * to the whole tree (`/`) reads the index instead, so it does not wait for
 * the build (see TopicTree.restore).
 */
import { EncodedValue, Message, type Snapshot } from "./subscriber.ts";
import type { Topic, TopicNode, TopicTree } from "./topics.ts";
import { TopicWalk, type WalkBudget } from "./topic_walk.ts";
import { jsonStringBytes } from "../../wire/mod.ts";
import { convertedInTurn, deliveredThisTurn } from "./conversion.ts";
import { expiredRetained, expiredValue } from "./values.ts";

/** Most topic names a subscribe answer lists (the count says how many there are). */
export const TOPIC_NAMES_LIMIT = 1000;
/**
 * Most bytes of topic names a subscribe answer lists, in either codec (a
 * name may take 3 KB: 1,000 of them would pass the frame limit, and the
 * answer must always fit: the subscription is made when it is sent).
 */
export const TOPIC_NAMES_BYTES = 256 * 1024;

/** What a name takes in an answer's list, in JSON or MessagePack (a comma, or a header's extra). */
function nameBytes(name: string): number {
  return jsonStringBytes(name) + 3;
}
/**
 * Tree nodes a subscribe may visit to name and count the topics it covers,
 * each (about half a millisecond): its cost never grows with the tree.
 * Counting reads each matched branch's topic count, so only a `+` over a
 * level wider than this leaves the count incomplete.
 */
export const SUBSCRIBE_VISITS = 8192;

/**
 * Bytes of retained values a snapshot may have converted for its
 * subscriber's codec (see conversion.ts) in one turn of the event loop
 * before it goes on in the next: a value of the other codec is parsed and
 * encoded anew for each delivery, tens to hundreds of milliseconds per
 * megabyte of small objects, so a snapshot of many large values converts
 * about one per turn and other clients are served in between (hostile
 * review Z3: 40 values of 1 MB in one turn held every client for 13 s).
 */
export const SNAPSHOT_CONVERT_BYTES = 64 * 1024;
/**
 * Bytes of retained values all snapshots together deliver in one turn of
 * the event loop before they go on in the next (copying them costs little,
 * but a sink that drains at once would otherwise take them all in one).
 */
export const SNAPSHOT_BYTES_PER_TURN = 4 * 1024 * 1024;

/**
 * A snapshot's pace: once this turn of the event loop (see conversion.ts)
 * has converted SNAPSHOT_CONVERT_BYTES of kept values (any snapshot's, or
 * any delivery's) or delivered SNAPSHOT_BYTES_PER_TURN of retained values,
 * the next value waits for the next turn.
 */
function more(): boolean {
  return convertedInTurn() < SNAPSHOT_CONVERT_BYTES &&
    deliveredThisTurn(0) < SNAPSHOT_BYTES_PER_TURN;
}

/** Counts a value delivered against the turn's bytes. */
function charge(value: unknown): void {
  if (value instanceof EncodedValue) deliveredThisTurn(value.byteLength);
  else if (typeof value === "string") deliveredThisTurn(value.length);
}

/** Skips branches that hold no topic. */
const noTopics = (node: TopicNode) => node.topics === 0;
/** Skips branches that hold no retained value. */
const noRetained = (node: TopicNode) => node.retained === 0;

/** What a subscription covers (see {@link coverage}). */
export interface Coverage {
  /** Existing topics it covers (at most TOPIC_NAMES_LIMIT, of at most the bytes asked for). */
  topics: string[];
  /** How many (at least, when not `complete`). */
  topicCount: number;
  /** False when counting stopped at its work bound (SUBSCRIBE_VISITS). */
  complete: boolean;
  /**
   * Its retained values as a cursor (undefined when there can be none): the
   * values set before the broker's publish count `since`.
   */
  snapshot(since: number, counted: () => void): Snapshot | undefined;
}

/** Whether a subscription reads the whole tree from the index (see the module comment). */
export function wholeTree(tree: TopicTree, segments: readonly string[], exact: boolean): boolean {
  return segments.length === 0 && !exact && tree.unplaced > 0;
}

/**
 * Names, counts and snapshots what `segments` covers. Precondition: the
 * restored topics it may meet are placed (TopicTree.placeUnder), unless
 * {@link wholeTree}.
 */
export function coverage(
  tree: TopicTree,
  segments: readonly string[],
  options: { exact: boolean; namesBytes?: number; count?: boolean },
): Coverage {
  const exact = options.exact;
  let room = options.namesBytes ?? TOPIC_NAMES_BYTES;
  if (wholeTree(tree, segments, exact)) {
    const topics: string[] = [];
    for (const topic of tree.values()) {
      if (topics.length >= TOPIC_NAMES_LIMIT) break;
      room -= nameBytes(topic.name);
      if (room < 0) break;
      topics.push(topic.name);
    }
    return {
      topics,
      topicCount: tree.size,
      complete: true,
      snapshot: (since, counted) => new IndexSnapshot(tree.values(), since, counted),
    };
  }
  // Counting reads the topic count of each branch the pattern names. Neither walk is made when
  // nothing is to be counted or named (an MQTT SUBSCRIBE): each is up to SUBSCRIBE_VISITS, and 500
  // exact filters that match nothing walked 16,384 nodes each for nothing (hostile46b M-B8).
  let budget = { left: options.count === false ? 0 : SUBSCRIBE_VISITS };
  const ends = new TopicWalk(tree.root, segments, noTopics, true);
  let topicCount = 0;
  for (let node = ends.next(budget); node !== undefined; node = ends.next(budget)) {
    topicCount += node.topics;
  }
  budget = { left: room > 0 ? SUBSCRIBE_VISITS : 0 };
  const names = new TopicWalk(tree.root, segments, noTopics);
  const topics: string[] = [];
  while (topics.length < TOPIC_NAMES_LIMIT) {
    const node = names.next(budget);
    if (node === undefined) break;
    const name = node.topic!.name;
    room -= nameBytes(name);
    if (room < 0) break;
    topics.push(name);
  }
  return {
    topics,
    topicCount: Math.max(topicCount, topics.length),
    complete: ends.done,
    snapshot: (since, counted) =>
      tree.retainedUnder(segments)
        ? new RetainedSnapshot(tree.root, segments, since, exact, counted)
        : undefined,
  };
}

/**
 * A subscription's retained snapshot as a cursor over the tree: each value
 * is read when the sink has room for it. A topic whose retained value
 * changed after the subscribe is left out: the change reaches the
 * subscription live (it was subscribed by then), after the snapshot, so a
 * subscriber never gets an older value after a newer one. An exact
 * subscription's snapshot holds only the topics the pattern names, and a
 * pattern that begins with `+` (or is `/`) leaves `$` topics out.
 */
export class RetainedSnapshot implements Snapshot {
  readonly #walk: TopicWalk;
  readonly #since: number;
  readonly #counted: () => void;
  readonly #hideDollar: boolean;

  constructor(
    root: TopicNode,
    segments: readonly string[],
    since: number,
    exact: boolean,
    counted: () => void,
  ) {
    this.#counted = counted;
    this.#since = since;
    this.#hideDollar = segments.length === 0 || segments[0] === "+";
    this.#walk = new TopicWalk(root, segments, noRetained, exact);
  }

  next(budget: WalkBudget): Message | null | undefined {
    if (!more()) return null;
    while (true) {
      const node = this.#walk.next(budget);
      if (node === undefined) return this.#walk.done ? undefined : null;
      const topic = node.topic;
      // An exact walk meets inner nodes too, and nodes below where the pattern ends in an edge.
      if (topic === undefined || this.#walk.inside) continue;
      const value = topic.retained;
      if (value === undefined || topic.retainedSeq > this.#since) continue;
      if (expiredValue(value)) { // (hostile review 37 K3)
        expiredRetained.count++;
        continue;
      }
      if (this.#hideDollar && topic.name.startsWith("/$")) continue;
      this.#counted();
      charge(value);
      return new Message(topic.name, value, true);
    }
  }
}

/**
 * The whole tree's retained values read from the index of topics (a live
 * iterator: a topic forgotten before it is reached is not met), `$` topics
 * left out, as RetainedSnapshot does for `/`.
 */
class IndexSnapshot implements Snapshot {
  readonly #topics: Iterator<Topic>;
  readonly #since: number;
  readonly #counted: () => void;

  constructor(topics: Iterator<Topic>, since: number, counted: () => void) {
    this.#topics = topics;
    this.#since = since;
    this.#counted = counted;
  }

  next(budget: WalkBudget): Message | null | undefined {
    if (!more()) return null;
    while (true) {
      if (budget.left <= 0) return null;
      budget.left--;
      const step = this.#topics.next();
      if (step.done) return undefined;
      const topic = step.value;
      const value = topic.retained;
      if (value === undefined || topic.retainedSeq > this.#since) continue;
      if (expiredValue(value)) { // (hostile review 37 K3)
        expiredRetained.count++;
        continue;
      }
      if (topic.name.startsWith("/$")) continue;
      this.#counted();
      charge(value);
      return new Message(topic.name, value, true);
    }
  }
}
