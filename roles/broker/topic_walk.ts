/**
 * A walk of the topic tree that can stop and go on later (see TopicWalk):
 * what a subscribe names and counts, and the retained values it sends, are
 * made a bounded amount of work at a time.
 */
import { ONE_SEGMENT } from "../../clients/contracts/mod.ts";
import type { TopicNode } from "./topics.ts";

/** How many node visits a walk may still make (shared by the walks of one piece of work). */
export interface WalkBudget {
  left: number;
}

interface Frame {
  /** Nodes at `depth` (the root is at 0), met through the pattern so far. */
  nodes: Iterator<TopicNode>;
  depth: number;
}

/**
 * A walk of what a pattern covers that can stop and go on later, in
 * pre-order (parents before children, siblings in insertion order): each
 * `next()` spends at most the budget it is given. The tree may change
 * between calls: topics added behind the walk's position are met, removed
 * ones are not (map iterators are live).
 */
export class TopicWalk {
  readonly #pattern: readonly string[];
  readonly #skip: (node: TopicNode) => boolean;
  readonly #ends: boolean;
  readonly #stack: Frame[];
  /** Whether the walk has met everything. */
  done = false;

  /**
   * @param skip subtrees to leave out (e.g. those with no retained value)
   * @param ends meet the nodes the pattern itself names (one per match,
   * existing or not) instead of the topics in their subtrees
   */
  constructor(
    root: TopicNode,
    pattern: readonly string[],
    skip: (node: TopicNode) => boolean,
    ends = false,
  ) {
    this.#pattern = pattern;
    this.#skip = skip;
    this.#ends = ends;
    this.#stack = [{ nodes: [root].values(), depth: 0 }];
  }

  /**
   * The next node met: an existing topic's node (or, with `ends`, a node the
   * pattern names). Undefined when the walk is done, or when the budget ran
   * out first (then `done` is false: call again with more).
   */
  next(budget: WalkBudget): TopicNode | undefined {
    const stack = this.#stack;
    const pattern = this.#pattern;
    while (stack.length > 0) {
      if (budget.left <= 0) return undefined;
      const top = stack[stack.length - 1];
      const step = top.nodes.next();
      if (step.done) {
        stack.pop();
        continue;
      }
      budget.left--;
      const node = step.value;
      if (this.#skip(node)) continue;
      const depth = top.depth;
      const children = node.children;
      if (depth < pattern.length) {
        // Still on the pattern's way: only the children it names.
        if (children === undefined) continue;
        const segment = pattern[depth];
        if (segment === ONE_SEGMENT) {
          stack.push({ nodes: children.values(), depth: depth + 1 });
        } else {
          const child = children.get(segment);
          if (child !== undefined) stack.push({ nodes: [child].values(), depth: depth + 1 });
        }
        continue;
      }
      if (this.#ends) return node;
      if (children !== undefined) stack.push({ nodes: children.values(), depth: depth + 1 });
      if (node.topic !== undefined) return node;
    }
    this.done = true;
    return undefined;
  }
}
