/**
 * Matching bounded per turn of the event loop (hostile review H10). A topic
 * reaches one node of the subscription tree per pattern prefix it matches,
 * so patterns that mix names and `+` over many levels (65,536 of them over
 * 16 levels, within the subscription caps) made one publish walk 2^17 nodes:
 * about 230 ms of a loaded broker, with every client waiting. nats-server's
 * sublist and mosquitto have the same shape and no bound.
 *
 * So a match makes at most the turn's share of node visits at once (at
 * least MATCH_VISITS_AT_ONCE, so that an ordinary publish never waits); a
 * larger one becomes a waiting publish, gone on with in later turns (a timer
 * each, so that every connection's reads and writes come in between: see
 * `nextTurn`), a slice at a time in rotation: over sources (a publisher's
 * user when it authenticated as one of its own, else its address), and
 * within a source over its publishers, so that a source's share does not
 * grow with the connections it opens (hostile review 31 W4: 64 connections
 * kept another's match of 16 slices waiting a second), and a publisher
 * whose match is small is not kept behind a large one. Meanwhile a
 * publisher whose match waits is held back (no frame of it is read), and
 * any publish of it that came anyway waits behind, so one publisher's
 * messages keep their order; those of others go on (order is per
 * publisher: DESIGN.md). A waiting publish goes to the subscriptions there
 * were when it came that are still there when its deliveries are made, each
 * once (see Match.run). What a match found stays cached on its topic until
 * a subscription that may cover the topic comes or goes (see
 * SubscriptionTree.unchangedFor); when one goes, the caches that may hold it
 * are dropped by a sweep in the turns after (cache_sweep.ts).
 */
import { PENDING_BYTES, type Publisher } from "./fanout.ts";
import { EncodedValue, type Message, type Subscription } from "./subscriber.ts";
import { Match, type SubscriptionTree, type Targets, type WalkBudget } from "./subscriptions.ts";
import { topicSegments } from "../../clients/contracts/mod.ts";
import type { Topic, TopicTree } from "./topics.ts";
import { HEAP_HEADROOM } from "./memory.ts";
import { valueBytes } from "./values.ts";
import { AWAY, NOT_PARKED, parking, STALLED } from "./parking.ts";

/**
 * Node visits of matches per turn of the event loop: about 3 ms (0.36 µs a
 * node on an idle machine, about twice that under load).
 */
export const MATCH_VISITS_PER_TURN = 8192;

/** Visits a publish may always make at once, whatever the turn has left (0.4 ms at most). */
export const MATCH_VISITS_AT_ONCE = 1024;

/** Visits a waiting source (one of its publishers) gets in its round before the next one's. */
const SLICE = 1024;

/** A source's publishers with publishes waiting, each in order; the map's order is its rotation. */
type Publishers = Map<Publisher | undefined, Waiting[]>;

/** A publish whose deliveries wait: for its match, or behind another of its publisher's. */
interface Waiting {
  /** What is left of its match, or its targets when they were known from the start. */
  found: Match<Subscription> | Targets<Subscription>;
  /** What it holds (counted in the broker's memory). */
  bytes: number;
  /** Makes its deliveries (or has them made in later turns); returns how many. */
  deliver: (targets: Targets<Subscription>) => number;
  resolve: (deliveries: number) => void;
  reject: (err: unknown) => void;
}

export class MatchQueue {
  #left = MATCH_VISITS_PER_TURN;
  #counting = false;
  /** Each publisher's waiting publishes, in order. */
  readonly #queues = new Map<Publisher | undefined, Waiting[]>();
  /** The same, by source (one without a source is its own); the map's order is the rotation. */
  readonly #sources = new Map<unknown, Publishers>();
  #scheduled = false;
  /** Publishes waiting. */
  waiting = 0;
  /** What they hold. */
  bytes = 0;
  /** Publishes that waited, so far. */
  deferred = 0;
  /** QoS 0 deliveries to parked subscriptions dropped unmade, by kind (parking.ts). */
  readonly parkedDrops = { stalled: 0, away: 0 };
  /** Holds a publisher back (true) or lets it go on (false). */
  readonly #hold: (from: Publisher, hold: boolean) => void;

  constructor(hold: (from: Publisher, hold: boolean) => void) {
    this.#hold = hold;
  }

  /** A budget for a match begun now: what this turn has left, at least MATCH_VISITS_AT_ONCE. */
  budget(): WalkBudget {
    this.#startTurn();
    return { left: Math.max(MATCH_VISITS_AT_ONCE, this.#left) };
  }

  /** Counts what a match begun with `budget()` spent. */
  spent(budget: WalkBudget, given: number): void {
    this.#left = Math.max(0, this.#left - (given - budget.left));
  }

  /**
   * The subscriptions and groups a topic reaches, cached on it until they
   * change; a Match to go on with when finding them takes more node visits
   * than this turn has left (see `budget`).
   */
  targets(
    tree: SubscriptionTree<Subscription>,
    topic: Topic,
    qos = 2,
  ): Targets<Subscription> | Match<Subscription> {
    const cached = cachedTargets(tree, topic);
    if (cached !== undefined) return qos === 0 ? this.#lossy(topic, cached) : cached;
    const budget = this.budget();
    const given = budget.left;
    const found = findTargets(tree, topic, budget);
    this.spent(budget, given);
    return found;
  }

  /**
   * A QoS 0 publish's targets: the topic's without the parked subscriptions
   * (parking.ts), each of which would drop it at once; their drops counted.
   */
  #lossy(topic: Topic, all: Targets<Subscription>): Targets<Subscription> {
    let view = topic.lossy as LossyTargets | undefined;
    if (view === undefined || view.of !== all || view.generation !== parking.generation) {
      view = lossyTargets(all);
      topic.lossy = view;
    }
    if (view.targets !== all) {
      this.parkedDrops.stalled += view.stalled;
      this.parkedDrops.away += view.away;
    }
    return view.targets;
  }

  /** Whether a publish of `from` must wait behind one of its own. */
  busy(from: Publisher | undefined): boolean {
    return this.waiting !== 0 && this.#queues.has(from);
  }

  /**
   * Queues a publish behind its publisher's others (held back while any
   * wait), its message held (off the publisher's frame); `deliver` is
   * called with its targets once they are found, and the promise resolves
   * with what it returns.
   */
  add(
    from: Publisher | undefined,
    found: Match<Subscription> | Targets<Subscription>,
    msg: Message,
    deliver: (targets: Targets<Subscription>) => number,
  ): Promise<number> {
    if (msg.value instanceof EncodedValue) msg.value = msg.value.detach();
    const bytes = PENDING_BYTES + valueBytes(msg.value);
    let queue = this.#queues.get(from);
    if (queue === undefined) {
      queue = [];
      this.#queues.set(from, queue);
      const source = from?.source ?? from;
      let publishers = this.#sources.get(source);
      if (publishers === undefined) this.#sources.set(source, publishers = new Map());
      publishers.set(from, queue);
      if (from !== undefined) this.#hold(from, true);
    }
    const { promise, resolve, reject } = Promise.withResolvers<number>();
    // Nobody may wait for it (an MQTT publish, a will): an error must not go unhandled.
    promise.catch(() => {});
    queue.push({ found, bytes, deliver, resolve, reject });
    this.waiting++;
    this.deferred++;
    this.bytes += bytes;
    this.#schedule();
    return promise;
  }

  /** This turn's budget: refilled once the turn's synchronous work and microtasks are done. */
  #startTurn(): void {
    if (this.#counting) return;
    this.#counting = true;
    queueMicrotask(() => {
      this.#left = MATCH_VISITS_PER_TURN;
      this.#counting = false;
    });
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    nextTurn(this.#turn);
  }

  /**
   * One turn's work, within its budget: a slice for each waiting source in
   * rotation, given to the first of its publishers in their rotation.
   */
  readonly #turn = (): void => {
    this.#scheduled = false;
    this.#startTurn();
    const sources = this.#sources;
    while (this.#left > 0 && sources.size > 0) {
      const [source, publishers] = sources.entries().next().value!;
      const [from, queue] = publishers.entries().next().value!;
      const budget = { left: Math.min(SLICE, this.#left) };
      const given = budget.left;
      while (queue.length > 0) {
        const waiting = queue[0];
        const found = waiting.found;
        if (found instanceof Match && !found.run(budget)) break;
        queue.shift();
        this.waiting--;
        this.bytes -= waiting.bytes;
        try {
          waiting.resolve(waiting.deliver(live(found instanceof Match ? found.targets : found)));
        } catch (err) {
          waiting.reject(err);
        }
        if (budget.left <= 0) break;
      }
      this.spent(budget, given);
      // Not done: to the end of the rotations.
      publishers.delete(from);
      if (queue.length > 0) publishers.set(from, queue);
      else {
        this.#queues.delete(from);
        if (from !== undefined) this.#hold(from, false);
      }
      sources.delete(source);
      if (publishers.size > 0) sources.set(source, publishers);
    }
    if (sources.size > 0) this.#schedule();
  };
}

/**
 * Runs `turn` in a later turn of the event loop, after the sockets ready
 * by then were read: a timer, which sleeps its least delay first (1 ms idle,
 * about 2 ms loaded; turns are about 3 ms). Tried without the sleep (hostile
 * review 31 W4), and measured worse for everyone else: an immediate or a
 * MessageChannel keeps Deno from polling its sockets for dozens of turns
 * (see durable.ts), and an operation completed on another thread (a digest
 * of one byte, on Deno's blocking pool) did too when it was done before the
 * turn: in broker_wildcard_flood_test.ts a plain publisher's delivery took a
 * median 29–48 ms against 14–17 with timers (load 11), and 10–11 against
 * 5–8 with the two alternated (load 7–10), for 10–20 % more match turns.
 */
function nextTurn(turn: () => void): void {
  setTimeout(turn, 0);
}

/** A topic's targets cached on it, if still current (see SubscriptionTree.unchangedFor). */
export function cachedTargets(
  tree: SubscriptionTree<Subscription>,
  topic: Topic,
): Targets<Subscription> | undefined {
  const generation = tree.generation;
  if (topic.cacheGeneration === generation) return topic.cache as Targets<Subscription>;
  if (topic.cache === undefined || !tree.unchangedFor(topic.name, topic.cacheGeneration)) {
    return undefined;
  }
  topic.cacheGeneration = generation;
  return topic.cache as Targets<Subscription>;
}

/**
 * Keeps a topic's targets found by a match begun at `generation` (unless
 * newer ones are kept), if no subscription that may cover it came or went
 * since: a match that went on over turns may hold one removed meanwhile,
 * after the sweep of caches for it (cache_sweep.ts), and the next publish
 * would not use them anyway.
 */
export function keepTargets(
  tree: SubscriptionTree<Subscription>,
  topic: Topic,
  found: Targets<Subscription>,
  generation: number,
): void {
  if (cachedTargets(tree, topic) === undefined && tree.unchangedFor(topic.name, generation)) {
    keep(tree, topic, found, generation);
  }
}

/** Bytes of a cached targets list beside 8 a target (its array; a QoS 0 view may copy it). */
const TARGETS_BYTES = 64;

/**
 * Keeps `found` on `topic`, what it takes counted on `tree` (memoryBytes):
 * 400 away sessions on `#` and QoS 0 to 40,000 new topics grew the heap by
 * 250-490 MiB under `--max-memory 64 MiB`, counted 26 (hostile44b H-B3).
 * Counted twice over: the QoS 0 view without parked subscriptions (#lossy).
 */
function keep(
  tree: SubscriptionTree<Subscription>,
  topic: Topic,
  found: Targets<Subscription>,
  generation: number,
): void {
  const n = found.plain.length + found.groups.length;
  const cost = n === 0 ? 0 : 2 * (TARGETS_BYTES + 8 * n);
  tree.cacheBytes += cost - topic.cacheCost;
  topic.cacheCost = cost;
  topic.cache = found;
  topic.lossy = undefined; // made of the cache replaced
  topic.cacheGeneration = generation;
  tree.caches.kept(topic, n > 0);
}

/** Least time between two drops of cached targets for refusals (ms; see dropCaches). */
const DROP_EVERY_MS = 100;
/** When each tree's caches were last dropped for a refusal. */
const dropped = new WeakMap<object, number>();

/**
 * Drops cached targets, least recently active topics first, until `want`
 * counted bytes (of memoryBytes, where a cache counts HEAP_HEADROOM times)
 * are freed, and at least half of what caches hold: they are derived, made
 * again at a topic's next publish, so the memory guard and the budget's
 * refusals take them before anyone's subscription, topic or connection
 * (hostile45b K-B2: caches of topics published once kept the broker past
 * --max-memory for good, every new topic was refused and honest
 * subscribers were cut for bytes no cut could free). @returns counted bytes freed
 */
export function dropCaches(
  topics: TopicTree,
  tree: SubscriptionTree<Subscription>,
  want: number,
  refusal = false,
): number {
  if (refusal) {
    // For a refusal: only when the caches can make room, what it needs, at most every
    // DROP_EVERY_MS: a stranger's refused publish before each honest one dropped the honest
    // topic's cache each time, and every publish matched again, 500x slower (review45 R4).
    const now = performance.now();
    if (
      tree.cacheBytes * HEAP_HEADROOM < want ||
      now - (dropped.get(tree) ?? -Infinity) < DROP_EVERY_MS
    ) {
      return 0;
    }
    dropped.set(tree, now);
  }
  const goal = refusal ? want / HEAP_HEADROOM : Math.max(want / HEAP_HEADROOM, tree.cacheBytes / 2);
  let freed = 0;
  for (let t = topics.oldest; t !== undefined && freed < goal && tree.cacheBytes > 0; t = t.newer) {
    if (t.cache === undefined && t.lossy === undefined) continue;
    freed += tree.caches.drop(t);
  }
  return freed * HEAP_HEADROOM;
}

/** A topic's targets found within `budget` (and cached on it), else a Match to go on with. */
export function findTargets(
  tree: SubscriptionTree<Subscription>,
  topic: Topic,
  budget: WalkBudget,
): Targets<Subscription> | Match<Subscription> {
  const generation = tree.generation;
  const found = tree.start(topicSegments(topic.name), budget);
  if (found instanceof Match) return found;
  keep(tree, topic, found, generation);
  return found;
}

/** A topic's targets for QoS 0 publishes, as made from `of` at parking `generation`. */
interface LossyTargets {
  of: Targets<Subscription>;
  generation: number;
  /** `of` itself when none is parked. */
  targets: Targets<Subscription>;
  /** Parked subscriptions left out, by kind. */
  stalled: number;
  away: number;
}

/** `all` without its parked subscriptions (the groups as they are: their members are not parked). */
function lossyTargets(all: Targets<Subscription>): LossyTargets {
  const generation = parking.generation;
  let stalled = 0, away = 0;
  for (const sub of all.plain) {
    if (sub.parked === STALLED) stalled++;
    else if (sub.parked === AWAY) away++;
  }
  if (stalled + away === 0) return { of: all, generation, targets: all, stalled, away };
  const plain = all.plain.filter((sub) => sub.parked === NOT_PARKED);
  return { of: all, generation, targets: { plain, groups: all.groups }, stalled, away };
}

/** Targets without the subscriptions cut off meanwhile, and groups left empty (not counted). */
function live(targets: Targets<Subscription>): Targets<Subscription> {
  const { plain, groups } = targets;
  if (!plain.some((s) => s.cancelled) && !groups.some((g) => g.members.length === 0)) {
    return targets;
  }
  return {
    plain: plain.filter((s) => !s.cancelled),
    groups: groups.filter((g) => g.members.length > 0),
  };
}
