/**
 * The sources of the workers on the worker port (their user, else their
 * address: workers.ts), by what their workers did: their failed trials
 * (trial_backoff.ts {@link SourceTrials}), and how many of the
 * `--max-workers` slots their untried workers hold.
 */
import type { Backend } from "./backends.ts";
import { REMEMBER_MAX, REMEMBER_MS } from "./outlier.ts";
import { SourceTrials } from "./trial_backoff.ts";

/**
 * The share of `--max-workers` one source's untried workers may keep once
 * the slots are full: a newcomer of a source holding less takes the place
 * of the oldest untried worker of the source holding the most (hostile40c
 * V3: fakes of one address could fill all 1,000 slots, and real workers
 * were refused OVERLOADED), as `--max-connections-per-source` gives a
 * source a quarter while full.
 */
export const UNTRIED_SHARE = 4;

interface Source {
  readonly trials: SourceTrials;
  /** Its registered workers, oldest first. */
  readonly workers: Set<Backend>;
}

export class WorkerSources {
  #sources = new Map<string, Source>();

  /** `backend` registered from `source`: it shares the source's failed trials. */
  join(source: string, backend: Backend, now = performance.now()): void {
    let s = this.#sources.get(source);
    if (s !== undefined && s.workers.size === 0 && now - s.trials.lastAt >= REMEMBER_MS) {
      this.#sources.delete(source);
      s = undefined;
    }
    if (s === undefined) {
      s = { trials: new SourceTrials(), workers: new Set() };
      this.#sources.set(source, s);
    }
    s.workers.add(backend);
    backend.trial.source = s.trials;
  }

  /** `backend` of `source` left: a source whose workers never failed is forgotten with its last. */
  leave(source: string, backend: Backend): void {
    const s = this.#sources.get(source);
    if (s === undefined || !s.workers.delete(backend) || s.workers.size > 0) return;
    this.#sources.delete(source);
    // Kept while its failures count (REMEMBER_MS), as the last of the map: the oldest go first.
    if (s.trials.failed === 0) return;
    this.#sources.set(source, s);
    if (this.#sources.size <= REMEMBER_MAX) return;
    for (const [key, old] of this.#sources) {
      if (old.workers.size > 0) continue;
      this.#sources.delete(key);
      break;
    }
  }

  /**
   * With every slot taken (`max`), the worker a newcomer of `source` may
   * take the place of: the oldest untried one of the source holding the most
   * untried workers, when that holds more than 1/{@link UNTRIED_SHARE} of
   * `max` and `source` holds fewer. O(workers).
   */
  displaced(source: string, max: number): Backend | undefined {
    const share = Math.max(1, Math.floor(max / UNTRIED_SHARE));
    let most: Source | undefined;
    let mostN = share;
    let own = 0;
    for (const [key, s] of this.#sources) {
      let n = 0;
      for (const b of s.workers) if (b.served === 0) n++;
      if (key === source) own = n;
      if (n > mostN) [most, mostN] = [s, n];
    }
    if (most === undefined || own >= share || most === this.#sources.get(source)) return undefined;
    for (const b of most.workers) if (b.served === 0) return b;
    return undefined;
  }
}
