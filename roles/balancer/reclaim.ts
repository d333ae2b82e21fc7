/**
 * Memory given back after backends leave in numbers (issue 16: 3,000 fake
 * workers took a balancer from 60 to 220 MiB, which stayed after they left).
 *
 * What a departed worker held is garbage at once, but V8 collects it only
 * when the program allocates again, and keeps the pages it grew into; on an
 * idle balancer neither happens, so RSS stays at its peak. After a run of
 * departures this asks V8 for one full, memory-reducing collection (the
 * `gc()` that `--expose-gc` gives, reached through node:v8 and node:vm as in
 * Node), once the departures have stopped for a moment and at most every
 * few seconds. It stops the event loop while it runs: about a quarter of a
 * second after 3,000 workers left (a collection of the whole heap; V8's own
 * would spread that work out, but only once the program allocates again),
 * so only after many left.
 */
import { log } from "./log.ts";

/** Departures that make a collection worth its pause. */
export const RECLAIM_AFTER = 64;
/** Quiet after the last departure before collecting (ms): a churn is collected once. */
const SETTLE_MS = 1000;
/** Shortest time between two collections (ms). */
const MIN_GAP_MS = 10_000;

type GcOptions = { type: "major"; execution: "sync" };
let collector: ((options: GcOptions) => void) | undefined;

/**
 * The runtime's gc(), exposed on first use. node:v8 and node:vm are loaded
 * only then: loading Node's compatibility layer at start cost every
 * forwarded request CPU (its tick hooks run on each turn of the event loop).
 */
async function gc(): Promise<(options: GcOptions) => void> {
  if (collector === undefined) {
    const [{ setFlagsFromString }, { runInNewContext }] = await Promise.all([
      import("node:v8"),
      import("node:vm"),
    ]);
    setFlagsFromString("--expose-gc");
    collector = runInNewContext("gc") as (options: GcOptions) => void;
  }
  return collector;
}

export class Reclaimer {
  #left = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #last = -Infinity;
  #stopped = false;
  /** Collections made (for sys.stats). */
  collections = 0;

  /** A backend left the pool. */
  left(): void {
    if (this.#stopped || ++this.#left < RECLAIM_AFTER) return;
    clearTimeout(this.#timer);
    const wait = Math.max(SETTLE_MS, this.#last + MIN_GAP_MS - performance.now());
    this.#timer = setTimeout(() => this.#collect(), wait);
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  async #collect(): Promise<void> {
    this.#timer = undefined;
    const before = Deno.memoryUsage().rss;
    let t0 = performance.now();
    try {
      const collect = await gc();
      if (this.#stopped) return;
      t0 = performance.now();
      collect({ type: "major", execution: "sync" });
    } catch (err) {
      // A runtime without gc(): memory comes back when V8 decides.
      log.debug("No memory collection: {error}", { error: (err as Error).message });
      this.#stopped = true;
      return;
    }
    this.#last = performance.now();
    this.collections++;
    log.debug("{n} backends left: collected in {ms} ms, RSS {before} -> {after} MiB", {
      n: this.#left,
      ms: Math.round(this.#last - t0),
      before: Math.round(before / 1048576),
      after: Math.round(Deno.memoryUsage().rss / 1048576),
    });
    this.#left = 0;
  }
}
