/**
 * The broker's process-wide memory budget (max-memory) kept: what the
 * subscribers' transports hold is sampled into the core's count, and past
 * the budget the subscribers with the most pending are cut off, whatever
 * their policy, on every front end (dist protocol and MQTT alike: they are
 * all sinks of the core's subscriptions); MQTT persistent sessions whose
 * clients are away are not cut but held to their share of the budget
 * (AWAY_SHARE: squats ended, then the largest queues trimmed).
 *
 * And the process's memory kept near what is counted. Under a flood of
 * deliveries to subscribers that never read, what is live stays within a
 * few percent of the count (measured after a full collection), but V8
 * collects late: its young generation grows to about 50 MiB of mostly free
 * space and freed queue buffers wait for the next full collection, so RSS
 * grew by about twice what was counted. While the broker holds a real
 * amount (COLLECT_FROM) and RSS has grown past RSS_PER_COUNTED times it,
 * the guard asks V8 for one full collection (which also shrinks the young
 * generation), at most every MIN_GAP_MS, and less often while collections
 * give little back (then what is held is live and a collection is no help);
 * again only once RSS has grown well past what the last one left, so a
 * broker whose live data is larger than counted is not collected over and
 * over. And once COLLECT_FROM of what was counted is gone (sessions ended,
 * queues read), one collection, so what held it can go back to the system
 * (with obs/heap_trim.ts for the C heap).
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { getLogger } from "@logtape/logtape";
import { DistError, memoMemory, processOutbound } from "../../wire/mod.ts";
import type { BrokerCore } from "./core.ts";
import { PATTERN_NODE_BYTES } from "./subscriptions.ts";
import { CHILDREN_BYTES, NODE_BYTES, TOPIC_BYTES } from "./topics.ts";
import { ENTRY_OVERHEAD } from "./retained.ts";
import type { Sink } from "./subscriber.ts";
import { dropCaches } from "./matching.ts";
import { releaseEmptySlabs } from "./byte_queue.ts";
import { AWAY_SHARE, awayBytes, type AwaySessions, AwayShare } from "./away_share.ts";

export { AWAY_SHARE, type AwaySession, type AwaySessions } from "./away_share.ts";

const log = getLogger(["dist", "broker"]);
const MIB = 1024 * 1024;
/** Counted bytes from which the process's own growth is watched (below, the runtime's slack dominates). */
const COLLECT_FROM = 32 * MIB;
/** RSS growth past this multiple of the counted bytes asks for a collection. */
const RSS_PER_COUNTED = 1.35;
/** Shortest time between two collections (ms), and the longest wait after fruitless ones. */
const MIN_GAP_MS = 1000;
const MAX_GAP_MS = 60_000;

/**
 * What a subscription costs in memory (its objects, its entries in the
 * subscription tree and its connection's table, its encoded sid): about
 * 800 bytes of live heap, but a broker's RSS grows by about 2.6 KB for each
 * of 20,000 subscriptions (the collector keeps its heap well ahead of what
 * is live), and that is what a budget of the process's memory must count.
 */
export const SUBSCRIPTION_BYTES = 2560;

/**
 * What the process's RSS grows by, at most, per byte of topic data (the
 * tree's and the retained values' counted bytes): V8 lets its heap grow to
 * about twice what is live before it collects, and keeps the pages a
 * collection frees for 8 s before it gives them back. Measured under a
 * flood of retained publishes to new topics of 60 segments: RSS peaked at
 * 2.3–2.6× what they count (150,000 topics: 453 MiB for 199 MiB; 60,000:
 * 231 MiB for 89 MiB), 1.3–1.9× once settled. `--max-memory` counts them
 * this many times, so that it bounds the process's memory, not only what
 * is live; `topic_bytes` and `--max-topic-bytes`, `retained.bytes` and
 * `--retain-bytes` count them once.
 */
export const HEAP_HEADROOM = 2;

/**
 * At most what a new subscription of `segments` adds to `memoryBytes`: its
 * own SUBSCRIPTION_BYTES and, should none of its pattern's nodes exist yet,
 * a node (and a children table) for each segment. Checked before it is
 * added (BrokerCore.wouldCross).
 */
export function subscriptionCost(segments: readonly string[]): number {
  let n = SUBSCRIPTION_BYTES;
  for (const segment of segments) n += PATTERN_NODE_BYTES + CHILDREN_BYTES + segment.length;
  return n;
}

/** At most what a new topic `name` adds to `memoryBytes` (its nodes as new; see subscriptionCost). */
export function topicCost(name: string): number {
  let n = TOPIC_BYTES + name.length;
  for (let i = 0; i < name.length; i++) {
    if (name.charCodeAt(i) === 47) n += NODE_BYTES + CHILDREN_BYTES;
  }
  return (n + name.length) * HEAP_HEADROOM;
}

/** What a retained value of `bytes` adds to `memoryBytes` over the one it replaces (`was`). */
export function retainedCost(bytes: number, was: number): number {
  return (bytes + ENTRY_OVERHEAD - was) * HEAP_HEADROOM;
}

/**
 * Bytes of MQTT read buffers beyond their idle size: packets being received
 * (up to --max-frame each), and the names of the Topic Aliases clients set
 * (up to 64 of 1,024 characters a connection: mqtt/publish_in.ts). Counted
 * in max-memory; past it a connection may not grow its buffer for a large
 * packet, nor set an alias.
 */
export const readBuffers = { bytes: 0 };

/**
 * What MQTT clients leave held for them (mqtt/sessions.ts, mqtt/wills.ts):
 * persistent sessions, connected or away (with their client ids, filters
 * and the deliveries they keep in flight for a redelivery), and wills,
 * live or waiting for their delay. Counted in max-memory.
 */
export const sessionMemory = { bytes: 0 };

/** Why a subscribe or a new topic is refused past max-memory. */
export function overloaded(what: string): DistError {
  return new DistError("OVERLOADED", `The broker is at its memory budget (max-memory): ${what}`);
}

type GcOptions = { type: "major"; execution: "sync" };
let collector: ((options: GcOptions) => void) | null | undefined;

/** The runtime's gc(), exposed on first use; null when the runtime has none. */
function gc(): ((options: GcOptions) => void) | null {
  if (collector === undefined) {
    try {
      setFlagsFromString("--expose-gc");
      collector = runInNewContext("gc") as (options: GcOptions) => void;
    } catch (err) {
      log.debug("No memory collection: {error}", { error: (err as Error).message });
      collector = null;
    }
  }
  return collector;
}

export class MemoryGuard {
  readonly #core: BrokerCore;
  /** Subscribers cut off to keep within max-memory. */
  shed = 0;

  /** Away sessions ended to hold them to their share. */
  get awayEnded(): number {
    return this.#away.ended;
  }
  /** The sessions kept for absent clients (the MQTT front end's), when there is one. */
  away: AwaySessions | undefined = undefined;
  /** Holds them to their share of the budget (away_share.ts). */
  readonly #away = new AwayShare();
  /** Full collections asked for to keep RSS near what is counted. */
  collections = 0;
  /** RSS when watching began: growth is measured from it. */
  #baseRss = 0;
  #nextCollect = 0;
  /** RSS growth the last collection left. */
  #keptRss = 0;
  /** Most counted since the last collection: once COLLECT_FROM of it is gone, one collection. */
  #peak = 0;
  #gap = MIN_GAP_MS;
  /**
   * What was counted when a shed last found nobody to cut (-1: none since the
   * last sample): no new search until the count has grown past it.
   */
  #searchedAt = -1;

  constructor(core: BrokerCore) {
    this.#core = core;
  }

  /**
   * Samples every `everyMs` and sheds past the budget (checked there and
   * once per turn after publishes). Returns the function that stops it.
   */
  watch(everyMs = 100): () => void {
    this.#baseRss = Deno.memoryUsage().rss;
    const timer = setInterval(() => {
      this.#sample();
      this.#searchedAt = -1;
      this.#away.keep(this.#core, this.away);
      if (this.#core.overBudget) this.#shed();
      this.#collect();
    }, everyMs);
    Deno.unrefTimer(timer);
    this.#core.onOverBudget = () => this.#shed();
    return () => {
      clearInterval(timer);
      this.#core.onOverBudget = undefined;
    };
  }

  /**
   * `memory` of sys.stats: what the broker counts (`bytes`, against
   * `budget`) beside what the process holds (RSS, the JS heap, memory
   * outside it such as buffers), so the two can be compared.
   */
  stats(): {
    bytes: number;
    budget: number | null;
    shed: number;
    trimmed: number;
    away_bytes: number;
    away_ended: number;
    collections: number;
    memos: number;
    rss: number;
    heap_used: number;
    heap_total: number;
    external: number;
  } {
    const core = this.#core;
    // What the transports hold now, not at the last sample (they drain between samples).
    this.#sample();
    const process = Deno.memoryUsage();
    return {
      bytes: core.memoryBytes,
      budget: core.maxMemory === Infinity ? null : core.maxMemory,
      shed: this.shed,
      // Bytes dropped from, and sessions ended of, those kept for absent clients past their share.
      trimmed: this.#away.trimmed,
      away_bytes: awayBytes(this.away),
      away_ended: this.#away.ended,
      collections: this.collections,
      // The publishers' memos of their last frames (part of `bytes`; wire/publish_memo.ts).
      memos: memoMemory.bytes,
      rss: process.rss,
      heap_used: process.heapUsed,
      heap_total: process.heapTotal,
      external: process.external,
    };
  }

  /** One full collection when RSS has grown well past what is counted (see above). */
  #collect(): void {
    const counted = this.#core.memoryBytes;
    if (counted > this.#peak) this.#peak = counted;
    if (performance.now() < this.#nextCollect) return;
    if (counted < COLLECT_FROM && this.#peak - counted < COLLECT_FROM) return;
    const before = Deno.memoryUsage().rss - this.#baseRss;
    // What was counted and is gone (sessions ended, queues read) is garbage until a collection.
    const gone = this.#peak - counted >= COLLECT_FROM && before > counted + 16 * MIB;
    // Past the count, and grown since the last collection left it (what that one kept is live).
    const kept = this.#keptRss;
    if (
      !gone &&
      (before <= RSS_PER_COUNTED * counted || before <= kept + Math.max(16 * MIB, kept / 4))
    ) return;
    this.#peak = counted;
    const collect = gc();
    if (collect === null) return;
    const t0 = performance.now();
    collect({ type: "major", execution: "sync" });
    const t1 = performance.now();
    this.collections++;
    const after = Deno.memoryUsage().rss - this.#baseRss;
    this.#keptRss = after;
    // Little given back: what is held is live, not garbage; ask again later and later.
    this.#gap = before - after < (before - counted) / 4
      ? Math.min(MAX_GAP_MS, this.#gap * 2)
      : MIN_GAP_MS;
    // A collection stops the broker (2 s for 700 MiB of deep topics, which came back at once):
    // at most a twentieth of the time goes to them.
    this.#nextCollect = t1 + Math.min(MAX_GAP_MS, Math.max(this.#gap, 20 * (t1 - t0)));
    log.debug("Collected in {ms} ms: RSS grew {before} -> {after} MiB for {counted} MiB counted", {
      ms: Math.round(t1 - t0),
      before: Math.round(before / MIB),
      after: Math.round(after / MIB),
      counted: Math.round(counted / MIB),
    });
  }

  #sample(): void {
    let n = 0;
    for (const sink of this.#core.sinks()) if (!sink.closed) n += sink.pendingBytes;
    this.#core.outboundBytes = n;
    this.#core.outboundAt = processOutbound.pending;
  }

  /**
   * Holds away sessions to their share (away_share.ts), then cuts off
   * the connected subscribers with the most pending until the broker is
   * within its budget; an MQTT persistent session is kept (only its
   * connection is cut). Away sessions within their share are not touched
   * (hostile review 39b Q2): what is over then is not theirs.
   */
  #shed(): void {
    const core = this.#core;
    // Cached targets first: derived, made again at a publish; no cut frees them (hostile45b K-B2).
    if (dropCaches(core.topics, core.subscriptions, core.memoryBytes - core.maxMemory) > 0) {
      if (!core.overBudget) return;
    }
    // Then the queues' slabs that hold nothing (byte_queue.ts): memory no cut could free.
    if (releaseEmptySlabs() > 0 && !core.overBudget) return;
    if (this.#searchedAt >= 0 && core.memoryBytes <= this.#searchedAt) return;
    this.#sample();
    this.#away.keep(this.#core, this.away);
    const cut = new Set<Sink>();
    // What away sessions hold, and what cuts moved to them since (read once: a cut session is
    // away only once its connection has closed, after this pass).
    let awayHeld = -1;
    while (core.overBudget) {
      const [worst, most] = this.#worst(cut);
      const sub = worst === undefined ? undefined : core.subscriptionOf(worst);
      if (worst === undefined || sub === undefined) {
        // What is over is not pending deliveries: subscribes and new topics are refused meanwhile.
        this.#searchedAt = core.memoryBytes;
        return;
      }
      cut.add(worst);
      this.shed++;
      const before = core.memoryBytes;
      worst.slow(
        sub,
        new DistError(
          "SLOW_CONSUMER",
          `Cut off to keep the broker within its memory budget (max-memory ${core.maxMemory}): ` +
            `this connection had the most pending (${most} bytes)`,
        ),
      );
      this.#sample();
      if (before - core.memoryBytes < most / 2) {
        // Its queue stayed: a persistent session's, away from now on. What away sessions hold is
        // the away share's to trim once they are away (next sample), not paid for by cutting the
        // next reader (hostile review 41b X9: 100 stalled sessions cut, then two honest readers
        // with 64 KB pending each).
        awayHeld = (awayHeld < 0 ? awayBytes(this.away) : awayHeld) + most;
        if (awayHeld > core.maxMemory * AWAY_SHARE) return;
      }
    }
  }

  /** The connected sink with the most pending, not cut yet (away sessions are held to their share). */
  #worst(cut: Set<Sink>): [Sink | undefined, number] {
    let worst: Sink | undefined;
    let most = 0;
    for (const sink of this.#core.sinks()) {
      const pending = sink.queued.bytes + sink.pendingBytes;
      if (!sink.closed && !cut.has(sink) && sink.kept !== true && pending > most) {
        worst = sink;
        most = pending;
      }
    }
    return [worst, most];
  }
}
