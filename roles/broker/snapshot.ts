/**
 * A new subscription's retained values, read from the topic tree as its
 * subscriber takes them (see Subscription.setSnapshot).
 */
import { Message, type Snapshot } from "./subscriber.ts";
import { type TopicNode, TopicWalk, type WalkBudget } from "./topics.ts";

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
    while (true) {
      const node = this.#walk.next(budget);
      if (node === undefined) return this.#walk.done ? undefined : null;
      const topic = node.topic;
      if (topic === undefined) continue; // an exact walk meets inner nodes too
      const value = topic.retained;
      if (value === undefined || topic.retainedSeq > this.#since) continue;
      if (this.#hideDollar && topic.name.startsWith("/$")) continue;
      this.#counted();
      return new Message(topic.name, value, true);
    }
  }
}
