/**
 * The topics that hold cached targets (what a topic's publish reaches:
 * matching.ts keeps it on the topic until a subscription that may cover the
 * topic comes or goes), swept for the subscriptions that went.
 *
 * A cache made stale by a change was only replaced at the topic's next
 * publish, so a topic published once held the subscriptions it reached —
 * each with its session and what that holds, about 1.2 KB an MQTT session,
 * counted 16 bytes — long after they ended: 60,000 sessions on `#` that came
 * and went while topics were published once held 204 MiB of heap against 58
 * MiB counted (hostile45b K-B5). So a removal starts (or extends) a sweep of
 * the topics that hold targets, which drops the cache of each topic under
 * the removed pattern's fixed prefix (the part before its first `+`): it
 * would be made again at the topic's next publish anyway. The sweep is
 * bounded work a turn of the event loop (SWEEP_WORK_PER_TURN), and a pass
 * over the caches serves every removal made before it began, not one walk
 * a removal: the removals of a turn share its first slice, made at the end
 * of that turn, and those made while a pass goes on are served by the next
 * pass. A topic is checked in a number of lookups that depends on its depth,
 * not on how many removals there were. A subscription that ends is held by
 * caches until the sweep has passed them, no longer.
 */

/** What holds a cache: a topic (topics.ts). */
export interface CacheHolder {
  readonly name: string;
  cache: unknown;
  cacheGeneration: number;
  cacheCost: number;
  lossy: unknown;
}

/** What a sweep asks of the subscription tree (subscriptions.ts). */
export interface SweptTree {
  readonly generation: number;
  cacheBytes: number;
}

/** Work of a sweep per turn: 1 a topic, plus 1 a segment of its name looked up. */
export const SWEEP_WORK_PER_TURN = 4096;

/**
 * Prefixes of removals remembered for the next pass; past them every cache
 * is swept (dropping too many costs matches made again, not memory).
 */
const PREFIXES = 1024;

export class CacheSweep {
  readonly #tree: SweptTree;
  /** The topics whose caches hold targets (a cache of nobody holds nothing). */
  readonly #holders = new Set<CacheHolder>();
  /** Where the pass under way is: a live iterator of #holders (topics added meanwhile are met). */
  #at: Iterator<CacheHolder> | undefined = undefined;
  /** The fixed prefixes (see SubscriptionTree.unchangedFor) of the removals the pass sweeps for. */
  #sweeping = new Set<string>();
  /** Whether one of them is "" (a pattern from the root or a `+` first): every cache is stale. */
  #all = false;
  /** The tree's generation when the pass began: caches kept since hold none of its removals. */
  #passFrom = 0;
  /** The prefixes of removals made since the pass began: the next pass's. */
  #next = new Set<string>();
  #scheduled = false;
  /** Stale caches dropped by sweeps, so far. */
  dropped = 0;

  constructor(tree: SweptTree) {
    this.#tree = tree;
  }

  /** Topics whose caches hold targets. */
  get holders(): number {
    return this.#holders.size;
  }

  /** `topic`'s cache was just set: it holds targets (`holds`) or none. */
  kept(topic: CacheHolder, holds: boolean): void {
    if (holds) this.#holders.add(topic);
    else this.#holders.delete(topic);
  }

  /** Drops `topic`'s cache (and its QoS 0 view); returns what it counted (cacheBytes). */
  drop(topic: CacheHolder): number {
    const cost = topic.cacheCost;
    this.#tree.cacheBytes -= cost;
    topic.cacheCost = 0;
    topic.cache = topic.lossy = undefined;
    topic.cacheGeneration = -1;
    this.#holders.delete(topic);
    return cost;
  }

  /**
   * A subscription whose pattern's fixed prefix is `prefix` (`/a/b`, "" for
   * none) went: every cache of a topic under it is swept soon.
   */
  removed(prefix: string): void {
    if (this.#holders.size === 0) return;
    const next = this.#next;
    if (next.size < PREFIXES) next.add(prefix);
    else if (!next.has("")) {
      next.clear();
      next.add("");
    }
    if (this.#scheduled) return;
    this.#scheduled = true;
    // At the end of this turn: the turn's removals (a session's subscriptions) share one slice.
    queueMicrotask(this.#sweep);
  }

  /** One turn's slice of the sweep; the next one in a later turn when there is more. */
  readonly #sweep = (): void => {
    this.#scheduled = false;
    let work = SWEEP_WORK_PER_TURN;
    while (work > 0) {
      if (this.#at === undefined) {
        // Every cache was passed since the last removal.
        if (this.#next.size === 0) return;
        this.#sweeping = this.#next;
        this.#all = this.#sweeping.has("");
        this.#next = new Set();
        this.#passFrom = this.#tree.generation;
        this.#at = this.#holders.values();
      }
      const next = this.#at.next();
      if (next.done === true) {
        this.#at = undefined;
        continue;
      }
      const topic = next.value;
      work--;
      if (topic.cacheGeneration >= this.#passFrom) continue;
      if (this.#all) this.#dropStale(topic);
      else {
        // Under a prefix swept for: one of the name's own prefixes, segment by segment.
        const name = topic.name;
        for (let i = name.indexOf("/", 1);; i = name.indexOf("/", i + 1)) {
          work--;
          if (this.#sweeping.has(i < 0 ? name : name.slice(0, i))) {
            this.#dropStale(topic);
            break;
          }
          if (i < 0) break;
        }
      }
    }
    this.#scheduled = true;
    setTimeout(this.#sweep, 0);
  };

  #dropStale(topic: CacheHolder): void {
    this.drop(topic);
    this.dropped++;
  }
}
