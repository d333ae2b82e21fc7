/**
 * Each user's share of the topic tree, and whose topics its limits evict
 * (hostile review 34 Z6, Z10). With `--users`, past `--max-topics` or
 * `--max-topic-bytes` the least recently active topic was forgotten with
 * its retained value, whoever made either: mallory, allowed to publish
 * under `/m` only and retaining nothing, published to 230,000 new topics
 * and alice's retained `/a/config` was gone; and one user's topics (counted
 * in `--max-memory` with no share) filled the budget, and every other
 * user's subscribe and new topic was refused for good.
 *
 * So a user (a publisher that logged in as one of its own: without
 * `--users`, or with the shared `--token`, no topic has one) may have made at most an eighth of `--max-topics` of the topics
 * that exist, and their bytes at most an eighth of `--max-topic-bytes` or of
 * what `--max-memory` may count of topics (as subscriptions: shares.ts),
 * past which its new topics are refused (OVERLOADED). And the limits never
 * forget a topic holding a user's retained value for another user's new
 * topic: such a topic is passed over (it goes to the newest end of the
 * order) and a topic that holds no one else's value goes instead; when
 * every topic within reach holds someone else's value, the new topic is
 * refused. Only its own user's new topics (or publishes of no user, and
 * topics read back from a data file) evict a user's retained topic.
 */
import { DistError } from "../../wire/mod.ts";
import { TOKEN_USER } from "../../auth/mod.ts";
import { SOURCE_SHARE } from "./shares.ts";
import { HEAP_HEADROOM } from "./memory.ts";
import { type Topic, TOPIC_BYTES, type TopicTree } from "./topics.ts";

/** Topics passed over (another user's retained values) at most, for one new topic. */
export const SPARED_PER_TOPIC = 1000;

/**
 * One user's share of a byte limit of topic data (`--max-topic-bytes`, or
 * `--retain-bytes`: see retained.ts): an eighth of it, or of what
 * `--max-memory` may count of such data (it counts it HEAP_HEADROOM times).
 */
export function userShare(limit: number, maxMemory: number): number {
  const bytes = Math.min(limit, maxMemory / HEAP_HEADROOM);
  return bytes === Infinity ? Infinity : Math.floor(bytes * SOURCE_SHARE);
}

/** What one user made. */
interface Made {
  topics: number;
  bytes: number;
}

/** The topic tree's limits, each user's share of them, and what evicts what. */
export class TopicShares {
  readonly maxTopics: number;
  readonly maxTopicBytes: number;
  /** Most topics one user may have made. */
  readonly perUser: number;
  /** Most bytes (names and objects: TOPIC_BYTES each) one user's topics may take. */
  readonly perUserBytes: number;
  /** New topics refused for their user's share, or for lack of a topic to forget. */
  refused = 0;
  /** Topics passed over by the limits (they held another user's retained value). */
  spared = 0;
  readonly #made = new Map<string, Made>();

  constructor(maxTopics: number, maxTopicBytes: number, maxMemory: number) {
    this.maxTopics = maxTopics;
    this.maxTopicBytes = maxTopicBytes;
    this.perUser = maxTopics === Infinity
      ? Infinity
      : Math.max(1, Math.floor(maxTopics * SOURCE_SHARE));
    this.perUserBytes = userShare(maxTopicBytes, maxMemory);
  }

  /**
   * Makes `name` a topic of `user` (see TopicTree.create), within the user's
   * share, then forgets topics until the tree is within its limits.
   * @throws {DistError} OVERLOADED past the user's share, or when no topic may be forgotten
   */
  create(topics: TopicTree, name: string, now: number, user: string | undefined): Topic {
    // The shared token's holders (every client may hold it) are no one user: no share.
    const held = user === TOKEN_USER ? undefined : user;
    if (held !== undefined) {
      const made = this.#made.get(held);
      if (
        made !== undefined &&
        (made.topics >= this.perUser ||
          made.bytes + TOPIC_BYTES + name.length > this.perUserBytes)
      ) {
        this.refused++;
        const bytes = this.perUserBytes === Infinity ? "" : `, ${this.perUserBytes} bytes`;
        throw new DistError(
          "OVERLOADED",
          `User ${held} made its share of the topics (${this.perUser} topics${bytes}: an eighth ` +
            "of max-topics, and of max-topic-bytes or of max-memory): no new topics until some " +
            "are forgotten",
        );
      }
    }
    const topic = topics.create(name, now);
    if (held !== undefined) {
      topic.creator = held;
      const made = this.#made.get(held);
      if (made === undefined) this.#made.set(held, { topics: 1, bytes: TOPIC_BYTES + name.length });
      else {
        made.topics++;
        made.bytes += TOPIC_BYTES + name.length;
      }
    }
    this.#makeRoom(topics, topic, user);
    return topic;
  }

  /** Forgets `topic` (its retained value already cleared), giving back its user's share. */
  forget(topics: TopicTree, topic: Topic): void {
    const user = topic.creator;
    if (user !== undefined) {
      const made = this.#made.get(user);
      if (made !== undefined) {
        if (--made.topics <= 0) this.#made.delete(user);
        else made.bytes -= TOPIC_BYTES + topic.name.length;
      }
      topic.creator = undefined;
    }
    topics.forget(topic);
  }

  /** Told to clear a topic's retained value before it is forgotten (the broker's store). */
  clearRetained: (topic: Topic) => void = () => {};
  /** Counts a forgotten topic. */
  onEvicted: () => void = () => {};

  /**
   * Forgets the least recently active topics until the tree is within its
   * limits (a topic restored or placed from a data file may go first; the
   * newest never), as a publish of no user does.
   */
  makeRoom(topics: TopicTree): void {
    this.#makeRoom(topics, undefined, undefined);
  }

  /**
   * As {@link makeRoom}, for `made`, just made by `user`'s publish: a topic
   * holding a retained value of a user other than `user` is passed over
   * (see the module comment); `made` itself is never forgotten to make
   * room, except when every topic within reach was passed over: then it is
   * forgotten and refused.
   */
  #makeRoom(topics: TopicTree, made: Topic | undefined, user: string | undefined): void {
    let spared = 0;
    while (topics.size > this.maxTopics || topics.bytes > this.maxTopicBytes) {
      const oldest = topics.oldest!;
      // The newest alone past the limits (a long name) stays, as before.
      if (oldest === topics.newest && spared === 0) return;
      const owner = oldest.retained === undefined ? undefined : oldest.retainedBy;
      const theirs = user !== undefined && owner !== undefined && owner !== user;
      if (oldest !== made && theirs && spared < SPARED_PER_TOPIC) {
        spared++;
        this.spared++;
        topics.pass(oldest);
        continue;
      }
      if (made !== undefined && (oldest === made || theirs)) {
        this.refused++;
        this.forget(topics, made);
        throw new DistError(
          "OVERLOADED",
          "The broker holds its most topics (max-topics or max-topic-bytes), and those it " +
            "could forget hold other users' retained values: no new topics",
        );
      }
      if (oldest === topics.newest) return;
      this.clearRetained(oldest);
      this.forget(topics, oldest);
      this.onEvicted();
    }
  }

  /** What `user` made. */
  madeBy(user: string): Made {
    return this.#made.get(user) ?? { topics: 0, bytes: 0 };
  }
}
