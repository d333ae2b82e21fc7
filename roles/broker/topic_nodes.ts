/**
 * The nodes of the topic tree ({@link TopicTree}), as a radix tree: a chain
 * of segments that lead to one place only is one node, whose edge (the
 * segments from its parent) is read from a topic name, not copied. A node
 * holds the name of some topic in its subtree: its first `end` characters
 * are the node's path (`/a/b`). A topic of 60 new segments is one node, not
 * 60 nodes and 60 maps: fewer objects make less memory and less of the
 * collector's work.
 *
 * Every node but the root is a topic's, or has two children or more
 * (splits and merges keep it so). Children are found by the first segment
 * of their edge.
 */
import type { Topic } from "./topics.ts";

/**
 * Bytes of one node beyond its first segment's characters, measured on V8
 * (heap after a collection): the object (80), its first segment as a key
 * of its parent's children map (an internalized string: 24 and its
 * characters rounded up) and its entry there.
 */
export const NODE_BYTES = 128;
/**
 * Bytes of a node's children map, made with its first child (an empty V8
 * Map with room for 4 entries: 184).
 */
export const CHILDREN_BYTES = 168;

const SLASH = 47;

/** One place in the tree: a topic when `topic` is set, else a branch to two or more. */
export class TopicNode {
  /** Its parent; undefined for the root. */
  parent: TopicNode | undefined;
  /** Children by the first segment of their edge. */
  children: Map<string, TopicNode> | undefined = undefined;
  /** The topic this node stands for, while it exists. */
  topic: Topic | undefined = undefined;
  /** Existing topics in this subtree, this node's own included. */
  topics = 0;
  /** Retained values in this subtree, this node's own included. */
  retained = 0;
  /** The name of a topic in this subtree: its first `end` characters are this node's path. */
  name: string;
  /** Length of this node's path in `name` (0 for the root). */
  readonly end: number;

  constructor(parent: TopicNode | undefined, name: string, end: number) {
    this.parent = parent;
    this.name = name;
    this.end = end;
  }

  /** The node's path: a topic name (`/` for the root). */
  get path(): string {
    return this.end === 0 ? "/" : this.name.slice(0, this.end);
  }
}

/** Where the segment that starts at `at` ends in `name` (at most `end`). */
export function segmentEnd(name: string, at: number, end: number): number {
  const cut = name.indexOf("/", at);
  return cut < 0 || cut > end ? end : cut;
}

/** The first segment of a node's edge: its key in its parent's children. */
function keyOf(node: TopicNode, parent: TopicNode): string {
  const at = parent.end + 1;
  return node.name.slice(at, segmentEnd(node.name, at, node.end));
}

/**
 * Hangs a topic that has no node on the tree under `root`: on the node of
 * its path, made (as a leaf, or by splitting an edge where its name parts
 * from it) if there is none. Returns the bytes counted for what was made.
 */
export function placeTopic(root: TopicNode, topic: Topic): number {
  const name = topic.name;
  const length = name === "/" ? 0 : name.length;
  let node = root;
  let bytes = 0;
  while (node.end < length) {
    const at = node.end + 1;
    const cut = segmentEnd(name, at, length);
    const key = name.slice(at, cut);
    const child = node.children?.get(key);
    if (child === undefined) {
      const leaf = new TopicNode(node, name, length);
      if (node.children === undefined) {
        node.children = new Map();
        bytes += CHILDREN_BYTES;
      }
      node.children.set(key, leaf);
      bytes += NODE_BYTES + key.length;
      node = leaf;
      break;
    }
    // The child's edge against the name, past the first segment (the key: the same).
    const other = child.name;
    const stop = Math.min(child.end, length);
    let j = cut;
    while (j < stop && other.charCodeAt(j) === name.charCodeAt(j)) j++;
    if (j === child.end && (j === length || name.charCodeAt(j) === SLASH)) {
      node = child;
      continue;
    }
    // They part inside the edge: it is split at the last boundary they share.
    const split = j === length && other.charCodeAt(j) === SLASH ? j : other.lastIndexOf("/", j - 1);
    const mid = new TopicNode(node, other, split);
    const below = other.slice(split + 1, segmentEnd(other, split + 1, child.end));
    mid.children = new Map([[below, child]]);
    mid.topics = child.topics;
    mid.retained = child.retained;
    node.children!.set(key, mid);
    child.parent = mid;
    bytes += NODE_BYTES + CHILDREN_BYTES + below.length;
    node = mid;
  }
  topic.node = node;
  node.topic = topic;
  for (let n: TopicNode | undefined = node; n !== undefined; n = n.parent) n.topics++;
  return bytes;
}

/**
 * Takes a topic off its node (the topic keeps `node`, unused after): the
 * node goes if nothing hangs below it, a node left with one child and no
 * topic is merged into that child, and every node that read its path from
 * the topic's name reads it from another's. Returns the bytes counted for
 * what went (negative).
 */
export function unplaceTopic(root: TopicNode, topic: Topic): number {
  const node = topic.node!;
  node.topic = undefined;
  for (let n: TopicNode | undefined = node; n !== undefined; n = n.parent) n.topics--;
  let bytes = 0;
  let n = node;
  while (n !== root && n.topic === undefined && n.children === undefined) {
    // A leaf of no topic: it goes.
    const parent = n.parent!;
    const key = keyOf(n, parent);
    parent.children!.delete(key);
    bytes -= NODE_BYTES + key.length;
    if (parent.children!.size === 0) {
      parent.children = undefined;
      bytes -= CHILDREN_BYTES;
    }
    n = parent;
  }
  if (n !== root && n.topic === undefined && n.children?.size === 1) {
    // A branch to one place only: its child takes its edge (and its place among its siblings).
    const parent = n.parent!;
    const child: TopicNode = n.children!.values().next().value!;
    bytes -= NODE_BYTES + CHILDREN_BYTES + keyOf(child, n).length;
    parent.children!.set(keyOf(n, parent), child);
    child.parent = parent;
    n = parent;
  }
  // Whatever read its path from the name that goes reads it from a topic still there.
  const gone = topic.name;
  for (let a: TopicNode = n; a !== root; a = a.parent!) {
    if (a.name === gone) a.name = a.topic?.name ?? a.children!.values().next().value!.name;
  }
  return bytes;
}

/**
 * The node whose subtree is what a pattern without `+` covers: the node of
 * its path, or the node below the place in an edge where the pattern ends.
 */
export function nodeUnder(root: TopicNode, segments: readonly string[]): TopicNode | undefined {
  let node = root;
  let depth = 0;
  while (depth < segments.length) {
    const child = node.children?.get(segments[depth]);
    if (child === undefined) return undefined;
    const name = child.name;
    let at = node.end + 1;
    while (at < child.end && depth < segments.length) {
      const cut = segmentEnd(name, at, child.end);
      const want = segments[depth];
      if (cut - at !== want.length || !name.startsWith(want, at)) return undefined;
      depth++;
      at = cut + 1;
    }
    node = child;
  }
  return node;
}
