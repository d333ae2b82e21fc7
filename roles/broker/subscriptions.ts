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
 * a message matched at that node goes to one member, in rotation, skipping
 * members that are behind when the caller says how far behind each is.
 *
 * A match is bounded work at a time: patterns mixing names and `+` over
 * many levels make a topic reach one node per pattern prefix it matches
 * (65,536 patterns over 16 levels: 2^17 nodes, 50 ms of CPU). So a match
 * visits at most the nodes its budget allows and, past it, is a
 * {@link Match} that goes on later (core.ts spreads it over turns of the
 * event loop), leaving out subscriptions added after it began.
 *
 * An exact subscription (an MQTT filter without `#`) covers only the topics
 * at its own depth: it is kept apart on its node and collected only when
 * the topic ends there. A topic whose first segment starts with `$`
 * (`/$SYS/…`) is never reached through a `+` or the root at the first
 * level, as MQTT has it for `#` and `+`: it must be named.
 */
import { ONE_SEGMENT } from "../../clients/contracts/mod.ts";
import { CHILDREN_BYTES } from "./topics.ts";
import { Group } from "./group.ts";
import { CacheSweep } from "./cache_sweep.ts";

// The queue groups of a pattern (group.ts); importers of this module keep working.
export { Group, PICK_WINDOW } from "./group.ts";

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

/**
 * Subscription changes remembered for `unchangedFor`: a stale answer is
 * checked against at most this many (about 1 µs), else found again.
 */
const CHANGES = 256;

const SLASH = 47;

/** What the tree needs to know of a subscription. */
export interface Subscribable {
  /** Larger for each subscription added (a match that goes on leaves out those added since it began). */
  readonly sid: number;
  readonly segments: readonly string[];
  readonly group?: string;
  readonly exact?: boolean;
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
  /** The fixed prefix (`/a/b`, "" for none) of the pattern changed at each recent generation. */
  readonly #changes: string[] = new Array(CHANGES).fill("");
  #bytes = 0;
  /** What the topics' cached targets take (matching.ts keep; part of memoryBytes: hostile44b H-B3). */
  cacheBytes = 0;
  /** The topics whose cached targets may hold a subscription, swept when one goes (cache_sweep.ts). */
  readonly caches: CacheSweep = new CacheSweep(this);
  /** The largest sid added so far. */
  #lastSid = 0;

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

  /**
   * Whether no subscription that may cover the topic `name` came or went
   * since generation `since`: then what `match` found for it then is still
   * its answer. Subscriptions changed elsewhere (another pattern's fixed
   * prefix) leave a topic's answer as it was (hostile review 31 W4: any
   * change dropped every topic's cached answer). False when more changes
   * than are remembered (CHANGES) came since.
   */
  unchangedFor(name: string, since: number): boolean {
    const now = this.#generation;
    if (since < 0 || now - since > CHANGES) return false;
    const changes = this.#changes;
    for (let g = since + 1; g <= now; g++) {
      const prefix = changes[g % CHANGES];
      if (
        prefix.length === 0 || (name.startsWith(prefix) &&
          (name.length === prefix.length || name.charCodeAt(prefix.length) === SLASH))
      ) return false;
    }
    return true;
  }

  /** A subscription came or went: a new generation, and its pattern's fixed prefix remembered. */
  #changed(segments: readonly string[]): void {
    const plus = segments.indexOf(ONE_SEGMENT);
    const fixed = plus < 0 ? segments : segments.slice(0, plus);
    this.#changes[++this.#generation % CHANGES] = fixed.length === 0 ? "" : "/" + fixed.join("/");
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
        group = new Group(sub.group, sub.sid);
        groups.set(sub.group, group);
      }
      group.members.push(sub);
    }
    this.#count++;
    this.#changed(sub.segments);
    if (sub.sid > this.#lastSid) this.#lastSid = sub.sid;
  }

  /** The queue group `sub` is (or would be) a member of, if it has members. */
  groupOf(sub: S): Group<S> | undefined {
    if (sub.group === undefined) return undefined;
    let node: PatternNode<S> | undefined = this.#root;
    for (const segment of sub.segments) {
      node = node.children?.get(segment);
      if (node === undefined) return undefined;
    }
    return (sub.exact === true ? node.exactGroups : node.groups)?.get(sub.group);
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
    this.#changed(sub.segments);
    this.caches.removed(this.#changes[this.#generation % CHANGES]);
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
   * segments, however many nodes that takes. A topic nobody covers gets one
   * shared empty answer (callers never change it), so keeping answers per
   * topic costs nothing for those.
   */
  match(segments: readonly string[]): Targets<S> {
    const found = this.start(segments, { left: Infinity });
    return found instanceof Match ? found.targets : found;
  }

  /**
   * Begins a match that visits at most `budget.left` nodes now (taken from
   * it): its answer when that was enough, else a {@link Match} to go on with.
   */
  start(segments: readonly string[], budget: WalkBudget): Targets<S> | Match<S> {
    const out: Targets<S> = { plain: [], groups: [] };
    STACK_NODES[0] = this.#root;
    STACK_DEPTHS[0] = 0;
    const sp = walk(segments, out, budget, Infinity, STACK_NODES, STACK_DEPTHS, 1);
    if (sp === 0) return out.plain.length + out.groups.length === 0 ? NOBODY as Targets<S> : out;
    const match = new Match(
      segments,
      out,
      this.#lastSid + 1,
      STACK_NODES.slice(0, sp),
      STACK_DEPTHS.slice(0, sp),
    );
    return match;
  }

  /**
   * A match not begun yet, of subscriptions added up to now only: for a
   * publish that waits behind another of its publisher's.
   */
  later(segments: readonly string[]): Match<S> {
    return new Match(segments, { plain: [], groups: [] }, this.#lastSid + 1, [this.#root], [0]);
  }
}

/** How many node visits a match may still make (shared by the matches of one turn). */
export interface WalkBudget {
  left: number;
}

/** A match that goes on (see SubscriptionTree.start): each `run` visits at most its budget. */
export class Match<S extends Subscribable> {
  readonly #segments: readonly string[];
  readonly #out: Targets<S>;
  readonly #since: number;
  readonly #nodes: PatternNode<S>[];
  readonly #depths: number[];
  #sp: number;

  constructor(
    segments: readonly string[],
    out: Targets<S>,
    since: number,
    nodes: PatternNode<S>[],
    depths: number[],
  ) {
    this.#segments = segments;
    this.#out = out;
    this.#since = since;
    this.#nodes = nodes;
    this.#depths = depths;
    this.#sp = nodes.length;
  }

  /** Whether every node is visited. */
  get done(): boolean {
    return this.#sp === 0;
  }

  /** Nodes still to visit at least (for the memory count). */
  get stacked(): number {
    return this.#sp;
  }

  /**
   * Goes on within `budget` (taken from it); true once done. Subscriptions
   * and groups added since it began are left out; ones removed before their
   * node is visited are not found, later ones are (and skipped by delivery:
   * they are cancelled), so each subscription present throughout gets it once.
   */
  run(budget: WalkBudget): boolean {
    this.#sp = walk(
      this.#segments,
      this.#out,
      budget,
      this.#since,
      this.#nodes,
      this.#depths,
      this.#sp,
    );
    return this.#sp === 0;
  }

  /** What it found so far (a floor of what it finds). */
  get found(): Targets<S> {
    return this.#out;
  }

  /** What it found. Precondition: done. */
  get targets(): Targets<S> {
    const out = this.#out;
    return out.plain.length + out.groups.length === 0 ? NOBODY as Targets<S> : out;
  }
}

/** The stack of a match that ends within its budget (most do): made once, not per match. */
// deno-lint-ignore no-explicit-any
const STACK_NODES: PatternNode<any>[] = [];
const STACK_DEPTHS: number[] = [];

/**
 * Visits the nodes on the stack (`nodes`/`depths` up to `sp`) and those the
 * topic reaches below them, depth first, at most `budget.left` of them;
 * collects their subscriptions (those with a sid below `since`) into `out`.
 * Returns how many nodes are left on the stack (0: done).
 */
function walk<S extends Subscribable>(
  segments: readonly string[],
  out: Targets<S>,
  budget: WalkBudget,
  since: number,
  nodes: PatternNode<S>[],
  depths: number[],
  sp: number,
): number {
  const end = segments.length;
  // A `$` topic is reached only by patterns that name its first segment.
  const hiddenTop = end > 0 && segments[0].startsWith("$");
  const all = since === Infinity;
  let left = budget.left;
  while (sp > 0 && left > 0) {
    left--;
    const node = nodes[--sp];
    const depth = depths[sp];
    const hidden = hiddenTop && depth === 0;
    if (!hidden && (node.plain.length !== 0 || node.groups !== undefined)) {
      collect(node.plain, node.groups, out, all, since);
    }
    if (depth === end) {
      if (node.exactPlain !== undefined || node.exactGroups !== undefined) {
        collect(node.exactPlain ?? EMPTY, node.exactGroups, out, all, since);
      }
      continue;
    }
    const children = node.children;
    if (children === undefined) continue;
    const named = children.get(segments[depth]);
    const any = hidden ? undefined : children.get(ONE_SEGMENT);
    if (any !== undefined && any !== named) {
      nodes[sp] = any;
      depths[sp++] = depth + 1;
    }
    if (named !== undefined) {
      nodes[sp] = named;
      depths[sp++] = depth + 1;
    }
  }
  budget.left = left;
  return sp;
}

const EMPTY: never[] = [];

/** Adds a node's subscriptions and groups to `out` (with `all` false, only those older than `since`). */
function collect<S extends Subscribable>(
  plain: readonly S[],
  groups: Map<string, Group<S>> | undefined,
  out: Targets<S>,
  all: boolean,
  since: number,
): void {
  const into = out.plain;
  if (all) {
    for (let i = 0; i < plain.length; i++) into.push(plain[i]);
    if (groups !== undefined) { for (const group of groups.values()) out.groups.push(group); }
    return;
  }
  for (let i = 0; i < plain.length; i++) if (plain[i].sid < since) into.push(plain[i]);
  if (groups !== undefined) {
    for (const group of groups.values()) if (group.since < since) out.groups.push(group);
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
