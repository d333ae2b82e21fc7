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
 * `--users`, or with the shared `--token`, no topic has one) may have made
 * at most an eighth of `--max-topics` of the topics that exist, and their
 * bytes at most an eighth of `--max-topic-bytes` or of what `--max-memory`
 * may count of topics (as subscriptions: shares.ts) — while the tree is
 * near its limits (SHARED_ROOM of them; of bytes, of the smaller of the
 * two). Below that a user alone may use the whole tree (hostile review 35
 * H6: a share counted every topic its user ever made, and alice alone was
 * refused new topics for good after her eighth, with the tree 7/8 empty).
 * Near the limits, a new topic of a user past its share takes the place of
 * that user's own least recently active topic (one holding no retained
 * value first, never one holding another user's): the user's count never
 * grows past what it holds; and each new topic of a user within its share
 * forgets one (holding no user's value) of the user furthest past its share,
 * until it is back within it, so the room one user took alone comes back to
 * the others (a limit of `--max-memory` is not one the tree evicts at). It
 * is refused (OVERLOADED) only when nothing of its own may go.
 *
 * And the limits never
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
import {
  type Topic,
  TOPIC_BYTES,
  type TopicTree,
  userAppend,
  type UserTopics,
  userUnlink,
} from "./topics.ts";

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

/** The part of the tree's limits below which no share applies (see the module comment). */
export const SHARED_ROOM = 7 / 8;

/** The topic tree's limits, each user's share of them, and what evicts what. */
export class TopicShares {
  readonly maxTopics: number;
  readonly maxTopicBytes: number;
  /** Most topics one user may have made, once the tree is near its limits. */
  readonly perUser: number;
  /** Most bytes (names and objects: TOPIC_BYTES each) one user's topics may take, likewise. */
  readonly perUserBytes: number;
  /** New topics refused for their user's share, or for lack of a topic to forget. */
  refused = 0;
  /** Topics passed over by the limits (they held another user's retained value). */
  spared = 0;
  /** A user's own topics forgotten for its new ones, past its share. */
  replaced = 0;
  /** Topics and bytes below which the tree is not near its limits. */
  readonly #roomTopics: number;
  readonly #roomBytes: number;
  readonly #made = new Map<string, UserTopics>();

  constructor(maxTopics: number, maxTopicBytes: number, maxMemory: number) {
    this.maxTopics = maxTopics;
    this.maxTopicBytes = maxTopicBytes;
    this.perUser = maxTopics === Infinity
      ? Infinity
      : Math.max(1, Math.floor(maxTopics * SOURCE_SHARE));
    this.perUserBytes = userShare(maxTopicBytes, maxMemory);
    this.#roomTopics = maxTopics * SHARED_ROOM;
    this.#roomBytes = Math.min(maxTopicBytes, maxMemory / HEAP_HEADROOM) * SHARED_ROOM;
  }

  /**
   * Makes `name` a topic of `user` (see TopicTree.create): past the user's
   * share with the tree near its limits, in place of its own least recently
   * active topics; then forgets topics until the tree is within its limits.
   * @throws {DistError} OVERLOADED when the user's share holds nothing it may forget, or when no topic may be forgotten
   */
  create(topics: TopicTree, name: string, now: number, user: string | undefined): Topic {
    // The shared token's holders (every client may hold it) are no one user: no share.
    const held = user === TOKEN_USER ? undefined : user;
    const cost = TOPIC_BYTES + name.length;
    let made = held === undefined ? undefined : this.#made.get(held);
    const near = topics.size + 1 > this.#roomTopics || topics.bytes + cost > this.#roomBytes;
    if (near && made !== undefined && this.#over(made, 1, cost)) {
      this.#replaceOwn(made, topics, cost);
      made = this.#made.get(made.user);
    } else if (near && held !== undefined) this.#takeBack(topics, held);
    const topic = topics.create(name, now);
    if (held !== undefined) {
      if (made === undefined) {
        made = { user: held, topics: 0, bytes: 0, oldest: undefined, newest: undefined };
        this.#made.set(held, made);
      }
      made.topics++;
      made.bytes += cost;
      userAppend(made, topic);
    }
    this.#makeRoom(topics, topic, user);
    return topic;
  }

  /**
   * Forgets `made`'s least recently active topics (those holding no retained
   * value first; never one holding another user's) for a new topic of
   * `cost` bytes: one, and more while the bytes are past both the share and
   * what they were. Its count never grows so; other users' new topics at
   * the tree's limits bring it back to its share (#makeRoom).
   * @throws {DistError} OVERLOADED when nothing of its own may go
   */
  #replaceOwn(made: UserTopics, topics: TopicTree, cost: number): void {
    const most = Math.max(this.perUserBytes, made.bytes);
    let first = true;
    while (first || made.bytes + cost > most) {
      const victim = cost > this.perUserBytes ? undefined : this.#ownVictim(made);
      if (victim === undefined) {
        this.refused++;
        const bytes = this.perUserBytes === Infinity ? "" : `, ${this.perUserBytes} bytes`;
        throw new DistError(
          "OVERLOADED",
          `User ${made.user} made its share of the topics (${this.perUser} topics${bytes}: an ` +
            "eighth of max-topics, and of max-topic-bytes or of max-memory) and the broker is " +
            "near its limits: no new topics, since none of its own may be forgotten (they hold " +
            "other users' retained values, or the name is larger than the share)",
        );
      }
      first = false;
      this.clearRetained(victim);
      this.forget(topics, victim);
      this.replaced++;
      this.onEvicted();
    }
  }

  /** Whether `made` with `topics` and `bytes` more is past its share. */
  #over(made: UserTopics, topics: number, bytes: number): boolean {
    return made.topics + topics > this.perUser || made.bytes + bytes > this.perUserBytes;
  }

  /**
   * For a new topic of `user` (within its share) near the tree's limits:
   * forgets the least recently active topic holding no user's value of the
   * user furthest past its share, if any, so that the room it took alone
   * comes back to the others (hostile review 34 Z10: a limit of
   * `--max-memory` is not one the tree evicts at).
   */
  #takeBack(topics: TopicTree, user: string): void {
    let most: UserTopics | undefined;
    let past = 1;
    for (const made of this.#made.values()) {
      const by = Math.max(made.topics / this.perUser, made.bytes / this.perUserBytes);
      if (by > past && made.user !== user) [most, past] = [made, by];
    }
    if (most === undefined) return;
    let n = 0;
    for (let t = most.oldest; t !== undefined && n < SPARED_PER_TOPIC; t = t.userNewer, n++) {
      if (t.retained === undefined || t.retainedBy === undefined) {
        this.clearRetained(t);
        this.forget(topics, t);
        this.replaced++;
        this.onEvicted();
        return;
      }
    }
  }

  /** `made`'s topic to forget for its new one, if any (within SPARED_PER_TOPIC of its oldest). */
  #ownVictim(made: UserTopics): Topic | undefined {
    let fallback: Topic | undefined;
    let n = 0;
    for (let t = made.oldest; t !== undefined && n < SPARED_PER_TOPIC; t = t.userNewer, n++) {
      if (t.retained === undefined) return t;
      if (fallback === undefined && (t.retainedBy === undefined || t.retainedBy === made.user)) {
        fallback = t;
      }
    }
    return fallback;
  }

  /** Forgets `topic` (its retained value already cleared), giving back its user's share. */
  forget(topics: TopicTree, topic: Topic): void {
    const made = topic.made;
    if (made !== undefined) {
      userUnlink(topic);
      topic.made = undefined;
      made.bytes -= TOPIC_BYTES + topic.name.length;
      if (--made.topics <= 0) this.#made.delete(made.user);
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

  /** How many topics `user` made, and their bytes. */
  madeBy(user: string): { topics: number; bytes: number } {
    const made = this.#made.get(user);
    return { topics: made?.topics ?? 0, bytes: made?.bytes ?? 0 };
  }
}
