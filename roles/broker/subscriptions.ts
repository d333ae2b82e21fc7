/**
 * The subscription tree: patterns stored one segment per level, `+` as a
 * child of its own, so the subscriptions a topic reaches are found by
 * walking the topic's segments (and the `+` branches beside them), in time
 * that depends on the topic's depth, not on how many subscriptions or topics
 * there are (nats-server's sublist, mosquitto's subs.c). A subscription on
 * a node covers that node's whole subtree, so every node met on the way
 * contributes its subscriptions.
 *
 * Subscriptions with a queue group join the group of their pattern and name:
 * a message matched at that node goes to one member, in rotation.
 *
 * An exact subscription (an MQTT filter without `#`) covers only the topics
 * at its own depth: it is kept apart on its node and collected only when
 * the topic ends there. A topic whose first segment starts with `$`
 * (`/$SYS/…`) is never reached through a `+` or the root at the first
 * level, as MQTT has it for `#` and `+`: it must be named.
 */
import { ONE_SEGMENT } from "../../clients/contracts/mod.ts";
import { CHILDREN_BYTES } from "./topics.ts";

/**
 * Bytes of one pattern node beyond its segment's characters (and its
 * parent's children map, counted apart as CHILDREN_BYTES), measured on V8:
 * 5,000 patterns of 64 new segments of 7.6 characters took 332 bytes a
 * node of heap after a collection (the object and its empty subscription
 * list, the segment string's header, the map entry). A subscription is
 * counted at SUBSCRIPTION_BYTES besides, what a pattern of one or two shared
 * nodes costs; a deep pattern of new segments costs far more (64 levels:
 * about 21 KB), and is counted so.
 */
export const PATTERN_NODE_BYTES = 160;

/** What the tree needs to know of a subscription. */
export interface Subscribable {
  readonly segments: readonly string[];
  readonly group?: string;
  readonly exact?: boolean;
}

/** Subscribers that share the messages of one pattern: each message to one member. */
export class Group<S> {
  readonly name: string;
  readonly members: S[] = [];
  #next = 0;

  constructor(name: string) {
    this.name = name;
  }

  /** The member whose turn it is. Precondition: the group has members. */
  pick(): S {
    if (this.#next >= this.members.length) this.#next = 0;
    return this.members[this.#next++];
  }
}

/** What a topic reaches: plain subscriptions (each gets every message) and groups. */
export interface Targets<S> {
  plain: S[];
  groups: Group<S>[];
}

class PatternNode<S> {
  readonly segment: string;
  readonly parent: PatternNode<S> | undefined;
  children: Map<string, PatternNode<S>> | undefined;
  plain: S[] = [];
  groups: Map<string, Group<S>> | undefined;
  /** Exact subscriptions and groups: only for topics that end at this node. */
  exactPlain: S[] | undefined;
  exactGroups: Map<string, Group<S>> | undefined;

  constructor(segment: string, parent: PatternNode<S> | undefined) {
    this.segment = segment;
    this.parent = parent;
  }

  get empty(): boolean {
    return this.plain.length === 0 && this.groups === undefined && this.children === undefined &&
      this.exactPlain === undefined && this.exactGroups === undefined;
  }
}

export class SubscriptionTree<S extends Subscribable> {
  #root = new PatternNode<S>("", undefined);
  #count = 0;
  #generation = 0;
  #bytes = 0;

  /** What the tree's nodes take in memory, as counted (see PATTERN_NODE_BYTES). */
  get bytes(): number {
    return this.#bytes;
  }

  /** Number of subscriptions. */
  get size(): number {
    return this.#count;
  }

  /** Changes whenever a subscription is added or removed (for caches of `match`). */
  get generation(): number {
    return this.#generation;
  }

  add(sub: S): void {
    let node = this.#root;
    for (const segment of sub.segments) {
      if (node.children === undefined) {
        node.children = new Map();
        this.#bytes += CHILDREN_BYTES;
      }
      let child = node.children.get(segment);
      if (child === undefined) {
        child = new PatternNode(segment, node);
        node.children.set(segment, child);
        this.#bytes += PATTERN_NODE_BYTES + segment.length;
      }
      node = child;
    }
    if (sub.group === undefined) {
      if (sub.exact === true) (node.exactPlain ??= []).push(sub);
      else node.plain.push(sub);
    } else {
      const groups = sub.exact === true
        ? (node.exactGroups ??= new Map())
        : (node.groups ??= new Map());
      let group = groups.get(sub.group);
      if (group === undefined) {
        group = new Group(sub.group);
        groups.set(sub.group, group);
      }
      group.members.push(sub);
    }
    this.#count++;
    this.#generation++;
  }

  /** Removes a subscription; returns false when it was not in the tree. */
  remove(sub: S): boolean {
    let node: PatternNode<S> | undefined = this.#root;
    for (const segment of sub.segments) {
      node = node.children?.get(segment);
      if (node === undefined) return false;
    }
    const exact = sub.exact === true;
    if (sub.group === undefined) {
      const list = exact ? node.exactPlain : node.plain;
      if (list === undefined || !removeFrom(list, sub)) return false;
      if (exact && list.length === 0) node.exactPlain = undefined;
    } else {
      const groups = exact ? node.exactGroups : node.groups;
      const group = groups?.get(sub.group);
      if (group === undefined || !removeFrom(group.members, sub)) return false;
      if (group.members.length === 0) {
        groups!.delete(sub.group);
        if (groups!.size === 0) {
          if (exact) node.exactGroups = undefined;
          else node.groups = undefined;
        }
      }
    }
    this.#count--;
    this.#generation++;
    // Prune the branch back to the last node still in use.
    while (node.parent !== undefined && node.empty) {
      const parent: PatternNode<S> = node.parent;
      parent.children!.delete(node.segment);
      this.#bytes -= PATTERN_NODE_BYTES + node.segment.length;
      if (parent.children!.size === 0) {
        parent.children = undefined;
        this.#bytes -= CHILDREN_BYTES;
      }
      node = parent;
    }
    return true;
  }

  /**
   * Every subscription and group whose pattern covers the topic with these
   * segments. A topic nobody covers gets one shared empty answer (callers
   * never change it), so keeping answers per topic costs nothing for those.
   */
  match(segments: readonly string[]): Targets<S> {
    const out: Targets<S> = { plain: [], groups: [] };
    this.#collect(this.#root, segments, 0, out);
    return out.plain.length + out.groups.length === 0 ? NOBODY as Targets<S> : out;
  }

  #collect(node: PatternNode<S>, segments: readonly string[], depth: number, out: Targets<S>) {
    // A `$` topic is reached only by patterns that name its first segment.
    const hidden = depth === 0 && segments.length > 0 && segments[0].startsWith("$");
    if (!hidden) {
      for (const sub of node.plain) out.plain.push(sub);
      if (node.groups !== undefined) {
        for (const group of node.groups.values()) out.groups.push(group);
      }
    }
    if (depth === segments.length) {
      if (node.exactPlain !== undefined) { for (const sub of node.exactPlain) out.plain.push(sub); }
      if (node.exactGroups !== undefined) {
        for (const group of node.exactGroups.values()) out.groups.push(group);
      }
      return;
    }
    if (node.children === undefined) return;
    const named = node.children.get(segments[depth]);
    if (named !== undefined) this.#collect(named, segments, depth + 1, out);
    const any = hidden ? undefined : node.children.get(ONE_SEGMENT);
    if (any !== undefined && any !== named) this.#collect(any, segments, depth + 1, out);
  }
}

const NOBODY: Targets<never> = Object.freeze({
  plain: Object.freeze([]) as never[],
  groups: Object.freeze([]) as never[],
});

/** Removes one item from an array by swapping in the last (order does not matter). */
function removeFrom<T>(items: T[], item: T): boolean {
  const i = items.indexOf(item);
  if (i < 0) return false;
  items[i] = items[items.length - 1];
  items.pop();
  return true;
}
