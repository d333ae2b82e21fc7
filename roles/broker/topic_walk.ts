/**
 * A walk of the topic tree that can stop and go on later (see TopicWalk):
 * what a subscribe names and counts, and the retained values it sends, are
 * made a bounded amount of work at a time.
 */
import { ONE_SEGMENT } from "../../clients/contracts/mod.ts";
import { segmentEnd, type TopicNode } from "./topic_nodes.ts";

/** How many node visits a walk may still make (shared by the walks of one piece of work). */
export interface WalkBudget {
  left: number;
}

interface Frame {
  /** Nodes whose edges begin at segment `depth` of the pattern... */
  nodes: Iterator<TopicNode>;
  depth: number;
  /** ...and at character `from` of their names. */
  from: number;
}

/**
 * A walk of what a pattern covers that can stop and go on later, in
 * pre-order (parents before children, siblings in insertion order): each
 * `next()` spends at most the budget it is given. The tree may change
 * between calls: topics added behind the walk's position are met, removed
 * ones are not (map iterators are live), and an edge split or merged
 * meanwhile is read from where the walk is (a frame knows where its nodes'
 * edges begin in their names, whatever their parents are now).
 */
export class TopicWalk {
  readonly #pattern: readonly string[];
  readonly #skip: (node: TopicNode) => boolean;
  readonly #ends: boolean;
  readonly #stack: Frame[];
  /** Whether the walk has met everything. */
  done = false;
  /**
   * With `ends`: the pattern ended inside the edge above the node last
   * met, so it names no node (nor topic) of its own, but covers what this
   * node's subtree holds.
   */
  inside = false;

  /**
   * @param skip subtrees to leave out (e.g. those with no retained value)
   * @param ends meet the nodes the pattern itself names (one per match,
   * existing or not, see `inside`) instead of the topics in their subtrees
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
    this.#stack = [{ nodes: [root].values(), depth: 0, from: 0 }];
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
      const end = node.end;
      let depth = top.depth;
      let inside = false;
      if (depth < pattern.length) {
        // Still on the pattern's way: its segments against the edge's.
        const name = node.name;
        let at = top.from;
        while (at < end && depth < pattern.length) {
          const cut = segmentEnd(name, at, end);
          const want = pattern[depth];
          if (want !== ONE_SEGMENT && (cut - at !== want.length || !name.startsWith(want, at))) {
            break;
          }
          depth++;
          at = cut + 1;
        }
        if (depth < pattern.length) {
          if (at < end) continue; // parted
          // The edge matched: only the children the pattern names.
          const children = node.children;
          if (children === undefined) continue;
          const segment = pattern[depth];
          if (segment === ONE_SEGMENT) {
            stack.push({ nodes: children.values(), depth, from: end + 1 });
          } else {
            const child = children.get(segment);
            if (child !== undefined) stack.push({ nodes: [child].values(), depth, from: end + 1 });
          }
          continue;
        }
        inside = at < end;
      }
      if (this.#ends) {
        this.inside = inside;
        return node;
      }
      const children = node.children;
      if (children !== undefined) stack.push({ nodes: children.values(), depth, from: end + 1 });
      if (node.topic !== undefined) return node;
    }
    this.done = true;
    return undefined;
  }
}
