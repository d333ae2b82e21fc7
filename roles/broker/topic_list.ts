/**
 * `broker.topics`: the existing topics a pattern covers, a page at a time
 * (hostile review 31, W5). The walk of the topic tree and the counting of
 * each listed topic's subscribers have a work bound each, so a listing is
 * bounded however large the trees are; a topic whose subscribers cost more
 * to count than its share (patterns that mix names and `+` over many
 * levels can make one topic's match 2^17 visits) is listed with the
 * subscribers found so far, marked as a floor, and the walk goes on. An
 * answer that stopped (at its limit, its bytes, or the walk's bound) names where:
 * `next`, which a later request passes as `after` to go on from there.
 */
import type { TopicInfo } from "../../clients/contracts/broker.ts";
import { jsonStringBytes } from "../../wire/mod.ts";
import { cachedTargets, findTargets } from "./matching.ts";
import type { Subscription } from "./subscriber.ts";
import { Match, type SubscriptionTree, type Targets } from "./subscriptions.ts";
import type { Topic, TopicNode } from "./topics.ts";
import { TopicWalk, type WalkBudget } from "./topic_walk.ts";

/** Topic tree nodes one `broker.topics` may visit (then it stops, with `next`). */
export const LIST_VISITS = 65_536;

/**
 * Most bytes of a page (either codec), whatever its `limit`: 10,000 entries
 * of short names, or 1,000 of long ones, would pass the 1 MiB frame limit.
 */
export const PAGE_BYTES = 512 * 1024;

/**
 * What an entry takes besides its name, at most: its keys, a time, five
 * numbers of up to 16 digits and the floor flag.
 */
const ENTRY_BYTES = 200;

/** Subscription tree nodes one `broker.topics` may visit counting subscribers, together. */
export const COUNT_VISITS = 65_536;

/** Of those, what counting one topic's subscribers may take (past it: a floor). */
export const COUNT_VISITS_PER_TOPIC = 8192;

/** What `broker.topics` answers. */
export interface TopicListing {
  topics: TopicInfo[];
  /** There may be more: stopped at the limit or at the walk's bound. */
  truncated: boolean;
  /** Where it stopped (with `truncated`): pass it as `after` to go on. */
  next?: string;
}

/** Skips branches that hold no topic. */
const noTopics = (node: TopicNode) => node.topics === 0;

/** Walks kept for the next page, for listings of no one in particular (see TopicLister). */
const KEPT_WALKS = 16;

/** Walks kept for the next page, for one connection's listings. */
const KEPT_WALKS_EACH = 4;

/** Where a listing stopped: its walk, and a topic met but not listed (past the limit). */
interface Kept {
  walk: TopicWalk;
  pending: TopicNode | undefined;
}

/**
 * Lists topics a page at a time. The walk of an answer that stopped is kept
 * (the last KEPT_WALKS_EACH of its connection), so the next page goes on
 * from it at once; a page whose walk is not kept seeks its place
 * (TopicWalk.seek), stepping over the siblings before each node on its way
 * within the same bound as the walk: past a level of more siblings than
 * that, the answer lists nothing and names the same place as `next`, and
 * the connection's next page goes on stepping from where this one stopped
 * (hostile review 32, X4: a seek of 500,000 siblings cost 22-57 ms a call).
 * Walks are kept per connection so that other clients' listings cannot
 * push a connection's out.
 */
export class TopicLister {
  readonly #kept = new Map<string, Kept>();
  readonly #keptBy = new WeakMap<object, Map<string, Kept>>();

  /**
   * The existing topics under `pattern` (`prefix`, normalised, as segments),
   * parents before children, at most `limit`, after the place `after` names
   * (a `next` of an earlier answer; see TopicWalk.seek).
   */
  list(
    root: TopicNode,
    subscriptions: SubscriptionTree<Subscription>,
    options: {
      prefix: string;
      pattern: readonly string[];
      limit: number;
      after?: string;
      /** Most bytes the page's entries may take (the front's PAGE_BYTES); one is always listed. */
      bytes?: number;
    },
    /** Whose listing (a connection): its walks are kept apart from others'. */
    owner?: object,
  ): TopicListing {
    const { prefix, limit, after } = options;
    const keep = owner === undefined ? this.#kept : this.#keptBy.get(owner) ?? new Map();
    let kept = after === undefined ? undefined : keep.get(`${prefix}\n${after}`);
    if (kept !== undefined) keep.delete(`${prefix}\n${after}`);
    else {
      kept = { walk: new TopicWalk(root, options.pattern, noTopics), pending: undefined };
      if (after !== undefined) kept.walk.seek(after);
    }
    const { walk } = kept;
    const budget = { left: LIST_VISITS };
    const counting = { left: COUNT_VISITS };
    const topics: TopicInfo[] = [];
    let room = options.bytes ?? Infinity;
    let next: string | undefined;
    let node = kept.pending;
    kept.pending = undefined;
    for (;;) {
      // A topic met past the last page's limit, if it still is one.
      if (node?.topic === undefined) node = walk.next(budget);
      if (node === undefined) {
        if (!walk.done) next = walk.position;
        break;
      }
      const cost = ENTRY_BYTES + jsonStringBytes(node.topic!.name);
      if (topics.length >= limit || (topics.length > 0 && cost > room)) {
        // One more there: the next page begins with it.
        next = topics[topics.length - 1].topic;
        kept.pending = node;
        break;
      }
      room -= cost;
      topics.push(describe(node.topic!, subscriptions, counting));
      node = undefined;
    }
    if (next === undefined) return { topics, truncated: false };
    keep.set(`${prefix}\n${next}`, kept);
    if (owner !== undefined) this.#keptBy.set(owner, keep);
    const most = owner === undefined ? KEPT_WALKS : KEPT_WALKS_EACH;
    if (keep.size > most) keep.delete(keep.keys().next().value!);
    return { topics, truncated: true, next };
  }
}

/** A topic as listed, its subscribers counted within `counting`. */
function describe(
  topic: Topic,
  subscriptions: SubscriptionTree<Subscription>,
  counting: WalkBudget,
): TopicInfo {
  const { found, floor } = countable(subscriptions, topic, counting);
  let subscribers = found.plain.length;
  for (const g of found.groups) subscribers += g.members.length;
  const info: TopicInfo = {
    topic: topic.name,
    retained: topic.retained !== undefined,
    last_active: new Date(topic.lastActive * 1000).toISOString(),
    subscribers,
    messages: topic.messagesIn,
    delivered: topic.messagesOut,
  };
  if (floor) info.subscribers_floor = true;
  return info;
}

/**
 * A topic's subscriptions and groups, cached or found within its share of
 * `counting`; past it, those found so far (`floor`).
 */
function countable(
  subscriptions: SubscriptionTree<Subscription>,
  topic: Topic,
  counting: WalkBudget,
): { found: Targets<Subscription>; floor: boolean } {
  const cached = cachedTargets(subscriptions, topic);
  if (cached !== undefined) return { found: cached, floor: false };
  if (counting.left <= 0) return { found: NONE, floor: true };
  const budget = { left: Math.min(COUNT_VISITS_PER_TOPIC, counting.left) };
  const given = budget.left;
  const found = findTargets(subscriptions, topic, budget);
  counting.left -= given - budget.left;
  return found instanceof Match ? { found: found.found, floor: true } : { found, floor: false };
}

const NONE: Targets<Subscription> = { plain: [], groups: [] };
