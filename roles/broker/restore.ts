/**
 * Putting back into the broker's core what its data file holds (the glue
 * between durable.ts and the core): retained values read back at start
 * make their topics flat (in the index and the order only: see
 * TopicTree.restore), placed in the topic tree later in slices or when a
 * walk needs them, the tree kept within its limits all along.
 */
import type { RetainedStore } from "./retained.ts";
import type { TopicShares } from "./topic_shares.ts";
import type { Topic, TopicTree } from "./topics.ts";
import { keptForm, valueBytes } from "./values.ts";

/** What restoring needs of the core (a BrokerCore). */
export interface Restorable {
  readonly topics: TopicTree;
  readonly retained: RetainedStore<Topic>;
  readonly topicShares: TopicShares;
}

/**
 * Puts back a retained value read from the data file at start: the topic
 * is made (as a publish would, within the topic limits) and the value
 * retained within the budget; no subscription covers it yet (one made
 * while the file is read reads back what it covers first: TopicTree.need),
 * so nothing is delivered. A topic the tree holds takes the value given.
 * The value is `owner`'s (the user whose publish set it; none: no one in
 * particular), as it was before the restart (see RetainedStore).
 * @param updatedAt when it was set (epoch seconds)
 * @param unique no other row can name it (a key stored normalised): no lookup first
 */
export function restoreRetained(
  core: Restorable,
  name: string,
  value: unknown,
  updatedAt: number,
  unique = false,
  owner?: string,
): void {
  const topic = unique ? undefined : core.topics.peek(name);
  // A row of MessagePack read back decoded is kept as MessagePack again (see keptForm).
  value = keptForm(value, true);
  const bytes = name.length + valueBytes(value);
  if (topic !== undefined) {
    topic.retainedBy = owner; // (its user, before the data file may write the row: see durable.ts)
    core.retained.set(topic, value, bytes, updatedAt, owner);
    return;
  }
  // Flat: placed in the tree later (placeRestored) or when a walk needs it. Older than what
  // was set since the start, in both orders; the limits then hold (this topic may go first).
  const restored = core.topics.restore(name, updatedAt);
  // Its user's again: in that user's pool and share, and passed over for other users' new
  // topics as a live one is (topic_shares.ts).
  restored.retainedBy = owner;
  core.retained.restore(restored, value, bytes, updatedAt, owner);
  core.topicShares.makeRoom(core.topics);
}

/**
 * Places up to `n` restored topics in the tree (a slice of the build that
 * follows a restart), then keeps the tree within its limits (its nodes
 * count as they are made); returns whether any are left to place.
 */
export function placeRestored(core: Restorable, n: number): boolean {
  const left = core.topics.placeSome(n);
  core.topicShares.makeRoom(core.topics);
  return left;
}

/** Places the restored topics a walk of `segments` may meet (see TopicTree.placeUnder). */
export function placeUnder(core: Restorable, segments: readonly string[]): void {
  if (core.topics.unplaced === 0) return;
  core.topics.placeUnder(segments);
  core.topicShares.makeRoom(core.topics);
}
