/**
 * A walk of the topic tree that can stop and go on later (see TopicWalk):
 * what a subscribe names and counts, and the retained values it sends, are
 * made a bounded amount of work at a time.
 */
import { ONE_SEGMENT } from "../../clients/contracts/mod.ts";
import { segmentEnd, type TopicNode } from "./topic_nodes.ts";

const SLASH = 47;
const NONE: TopicNode[] = [];

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
  /**
   * Set by `seek`: `nodes` are stepped over up to this one, each step from
   * the budget as a visit (a level may hold any number of siblings before
   * it); it is met too with `meet`.
   */
  skip?: TopicNode;
  meet?: boolean;
  /** With `skip`: the level, read again from its start if `skip` left it meanwhile. */
  level?: Map<string, TopicNode>;
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
  readonly #root: TopicNode;
  /** The node met last (see `position`). */
  #last: TopicNode;
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
    this.#root = root;
    this.#last = root;
  }

  /**
   * The next node met: an existing topic's node (or, with `ends`, a node the
   * pattern names). Undefined when the walk is done, or when the budget ran
   * out first (then `done` is false: call again with more).
   */
  next(budget: WalkBudget): TopicNode | undefined {
    const stack = this.#stack;
    while (stack.length > 0) {
      if (budget.left <= 0) return undefined;
      const top = stack[stack.length - 1];
      const step = top.nodes.next();
      if (step.done) {
        if (top.skip !== undefined) {
          // The node sought left the level meanwhile: all of it again (met again, none missed).
          top.skip = undefined;
          top.nodes = top.level!.values();
          continue;
        }
        stack.pop();
        continue;
      }
      budget.left--;
      const node = step.value;
      if (top.skip !== undefined) {
        if (node !== top.skip) continue;
        top.skip = undefined;
        if (!top.meet) continue;
      }
      this.#last = node;
      if (this.#enter(node, top.depth, top.from)) return node;
    }
    this.done = true;
    return undefined;
  }

  /**
   * The path of the node met last (`/` before any), whichever it was: a
   * walk made with `seek(position)` goes on from the same place.
   */
  get position(): string {
    return this.#last.path;
  }

  /**
   * Places a new walk (nothing met yet) after the node at `path` in its
   * order, that node's subtree next (see `position`): so a listing can
   * resume where an earlier one stopped. A path the tree no longer holds,
   * or one the walk would not meet, resumes at the start of the first level
   * where it is not found (names may then be met again, none missed). The
   * siblings before each node on its way are stepped over (a Map has no
   * other way to go on from an entry) by later `next` calls, each step
   * spent from their budget: a seek past many siblings is bounded work per
   * call like the rest of the walk (hostile review 32, X4), not done here.
   */
  seek(path: string): void {
    const stack = this.#stack;
    const pattern = this.#pattern;
    const length = path === "/" ? 0 : path.length;
    let node = this.#root;
    let top = stack[0];
    top.nodes = NONE.values();
    for (;;) {
      // `node` is on the way, and its frame goes on after it.
      this.#last = node;
      const depth = stack.length;
      this.#enter(node, top.depth, top.from);
      if (stack.length === depth || node.end >= length) return;
      // Its children the pattern reaches are in the frame just pushed: the next on the way?
      top = stack[depth];
      const children = node.children!;
      const at = node.end + 1;
      const key = path.slice(at, segmentEnd(path, at, length));
      const next = children.get(key);
      const named = top.depth < pattern.length && pattern[top.depth] !== ONE_SEGMENT;
      if (next === undefined || (named && key !== pattern[top.depth])) return; // the whole level
      if (named) top.nodes = NONE.values();
      else {
        top.nodes = children.values();
        top.skip = next;
        top.level = children;
      }
      const end = next.end;
      if (
        end <= length && (end === length || path.charCodeAt(end) === SLASH) &&
        path.startsWith(next.name.slice(0, end))
      ) {
        node = next;
        continue;
      }
      // The path ends inside its edge (so it comes after) or parts from it: it comes next.
      if (named) top.nodes = [next].values();
      else top.meet = true;
      return;
    }
  }

  /**
   * Pushes the frame of a node's children that the pattern reaches, if any;
   * true when the node is to be met (see `next`).
   */
  #enter(node: TopicNode, depth: number, from: number): boolean {
    const stack = this.#stack;
    const pattern = this.#pattern;
    if (this.#skip(node)) return false;
    const end = node.end;
    let inside = false;
    if (depth < pattern.length) {
      // Still on the pattern's way: its segments against the edge's.
      const name = node.name;
      let at = from;
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
        if (at < end) return false; // parted
        // The edge matched: only the children the pattern names.
        const children = node.children;
        if (children === undefined) return false;
        const segment = pattern[depth];
        if (segment === ONE_SEGMENT) {
          stack.push({ nodes: children.values(), depth, from: end + 1 });
        } else {
          const child = children.get(segment);
          if (child !== undefined) stack.push({ nodes: [child].values(), depth, from: end + 1 });
        }
        return false;
      }
      inside = at < end;
    }
    if (this.#ends) {
      this.inside = inside;
      return true;
    }
    const children = node.children;
    if (children !== undefined) stack.push({ nodes: children.values(), depth, from: end + 1 });
    return node.topic !== undefined;
  }
}
