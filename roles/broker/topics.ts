/**
 * The topic tree: every topic that exists (was published to), one node per
 * segment, so that "every topic under `/telephony`" or "every topic matching
 * `/+/orange`" is a walk of the matching branches, never a scan of all
 * topics. Nodes also keep their topic's counters and its place in the
 * activity order, so the least recently active topic is found in O(1) when
 * the tree is at its size limit.
 */
import { ONE_SEGMENT } from "../_topic.ts";
import type { RetainedEntry } from "./retained.ts";

/** One segment of the tree; a topic when `exists`, else only a branch on the way to one. */
export class TopicNode {
  /** The normalised topic this node stands for (`/a/b`). */
  readonly topic: string;
  readonly segment: string;
  readonly parent: TopicNode | undefined;
  children: Map<string, TopicNode> | undefined;
  /** Published to at least once (and not forgotten since). */
  exists = false;
  messagesIn = 0;
  messagesOut = 0;
  /** Epoch seconds of the last publish. */
  lastActive = 0;
  /** The retained value, owned by the RetainedStore. */
  retained: RetainedEntry<TopicNode> | undefined = undefined;
  /**
   * Free for the broker: what the subscriptions matching this topic were
   * when `cacheGeneration` was current.
   */
  cache: unknown = undefined;
  cacheGeneration = -1;
  /** Neighbours in the activity order (least recent first). */
  older: TopicNode | undefined = undefined;
  newer: TopicNode | undefined = undefined;

  constructor(topic: string, segment: string, parent: TopicNode | undefined) {
    this.topic = topic;
    this.segment = segment;
    this.parent = parent;
  }
}

/** The tree of existing topics. */
export class TopicTree {
  readonly root: TopicNode = new TopicNode("/", "", undefined);
  /** Nodes by topic, existing or not: a publish finds its node in one lookup. */
  #index = new Map<string, TopicNode>([["/", this.root]]);
  #count = 0;
  #oldest: TopicNode | undefined;
  #newest: TopicNode | undefined;

  /** Number of existing topics. */
  get size(): number {
    return this.#count;
  }

  /** The node of a normalised topic, if the tree has one (it may not exist as a topic). */
  get(topic: string): TopicNode | undefined {
    return this.#index.get(topic);
  }

  /** The node of a normalised topic, with its branch created as needed. */
  node(topic: string, segments: readonly string[]): TopicNode {
    let node = this.#index.get(topic);
    if (node !== undefined) return node;
    node = this.root;
    let path = "";
    for (const segment of segments) {
      path += "/" + segment;
      node.children ??= new Map();
      let child = node.children.get(segment);
      if (child === undefined) {
        child = new TopicNode(path, segment, node);
        node.children.set(segment, child);
        this.#index.set(path, child);
      }
      node = child;
    }
    return node;
  }

  /** Makes a node a topic (counted, newest in the activity order). */
  create(node: TopicNode, now: number): void {
    if (node.exists) return;
    node.exists = true;
    node.lastActive = now;
    this.#count++;
    this.#append(node);
  }

  /** Records activity on an existing topic: it becomes the most recently active. */
  touch(node: TopicNode, now: number): void {
    node.lastActive = now;
    if (this.#newest === node) return;
    this.#unlink(node);
    this.#append(node);
  }

  /** The least recently active topic (follow `newer` from it). */
  get oldest(): TopicNode | undefined {
    return this.#oldest;
  }

  /** The most recently active topic (follow `older` from it). */
  get newest(): TopicNode | undefined {
    return this.#newest;
  }

  /**
   * Forgets a topic: its counters go, and its node too unless other topics
   * hang below it (then only the branch stays). The caller has released its
   * retained value.
   */
  forget(node: TopicNode): void {
    if (!node.exists) return;
    node.exists = false;
    node.messagesIn = node.messagesOut = 0;
    node.cache = undefined;
    node.cacheGeneration = -1;
    this.#count--;
    this.#unlink(node);
    // Prune branches that lead nowhere any more.
    let n: TopicNode | undefined = node;
    while (
      n !== undefined && n !== this.root && !n.exists && (n.children?.size ?? 0) === 0 &&
      n.retained === undefined
    ) {
      const parent: TopicNode = n.parent!;
      parent.children!.delete(n.segment);
      if (parent.children!.size === 0) parent.children = undefined;
      this.#index.delete(n.topic);
      n = parent;
    }
  }

  /**
   * Calls `visit` for every existing topic that `pattern` covers: the topic
   * itself and its subtree, `+` matching any one segment. Only matching
   * branches are walked. `visit` returns false to stop the walk.
   */
  walk(pattern: readonly string[], visit: (node: TopicNode) => boolean | void): void {
    const stack: [TopicNode, number][] = [[this.root, 0]];
    while (stack.length > 0) {
      const [node, depth] = stack.pop()!;
      if (depth === pattern.length) {
        if (!this.#subtree(node, visit)) return;
        continue;
      }
      const children = node.children;
      if (children === undefined) continue;
      const segment = pattern[depth];
      if (segment === ONE_SEGMENT) {
        // Reversed so that the walk visits siblings in insertion order.
        for (const child of [...children.values()].reverse()) stack.push([child, depth + 1]);
      } else {
        const child = children.get(segment);
        if (child !== undefined) stack.push([child, depth + 1]);
      }
    }
  }

  /** Visits the existing topics of a subtree, parents before children; false if stopped. */
  #subtree(top: TopicNode, visit: (node: TopicNode) => boolean | void): boolean {
    const stack = [top];
    while (stack.length > 0) {
      const node = stack.pop()!;
      if (node.exists && visit(node) === false) return false;
      if (node.children !== undefined) {
        for (const child of [...node.children.values()].reverse()) stack.push(child);
      }
    }
    return true;
  }

  #append(node: TopicNode): void {
    node.older = this.#newest;
    node.newer = undefined;
    if (this.#newest !== undefined) this.#newest.newer = node;
    else this.#oldest = node;
    this.#newest = node;
  }

  #unlink(node: TopicNode): void {
    if (node.older !== undefined) node.older.newer = node.newer;
    else if (this.#oldest === node) this.#oldest = node.newer;
    if (node.newer !== undefined) node.newer.older = node.older;
    else if (this.#newest === node) this.#newest = node.older;
    node.older = node.newer = undefined;
  }
}
