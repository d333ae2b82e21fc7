/**
 * How long a backend that failed a trial waits for its next (trials.ts):
 * plain data, kept by its backend (backends.ts), and for a worker also by
 * its source (workers.ts: {@link SourceTrials}).
 */
import { BACKOFF_MAX_MS, BACKOFF_MS } from "./outlier.ts";
import { turnMs } from "../../wire/turn.ts";

/** Read once a turn: a policy asks every backend of a pick whether it is available. */
const turnNow = turnMs;

/** {@link BACKOFF_MS}, twice that for each failure past `free`, up to {@link BACKOFF_MAX_MS}. */
function backoffMs(failed: number, free: number): number {
  return Math.min(BACKOFF_MAX_MS, BACKOFF_MS * 2 ** (failed - 1 - free));
}

/**
 * The failed trials of every worker registered from one source (its user,
 * else its address: workers.ts), whatever their names: a fake that fails
 * its trial, leaves and registers again under a new name is the same
 * source with a new name (hostile40c V3: such fakes held one client
 * request a second for a second each, for good). The first failure is its
 * worker's alone ({@link SOURCE_FREE_FAILURES}: one slow worker of `dist
 * up`, or a fake that took a free name, P8, keeps its siblings or the real
 * worker from nothing); from the second on, no worker of the source that
 * has answered nothing gets a trial for 10 s, then 20 s … up to 5 min.
 * Workers of the source that have answered are not touched.
 */
export class SourceTrials {
  /** Trials its workers failed, and lost requests of its workers that never answered one. */
  failed = 0;
  /** No trial for its untried workers before this (performance.now() ms). */
  after = -Infinity;
  /** When the last failure was (performance.now() ms). */
  lastAt = -Infinity;

  get waiting(): boolean {
    return this.after !== -Infinity && turnNow() < this.after;
  }

  /** A failure at `now`. @returns how long its untried workers now wait (ms; 0: none) */
  fail(now: number): number {
    this.lastAt = now;
    if (++this.failed <= SOURCE_FREE_FAILURES) return 0;
    const ms = backoffMs(this.failed, SOURCE_FREE_FAILURES);
    this.after = Math.max(this.after, now + ms);
    return ms;
  }
}

/** Failures of a source's workers that cost only the worker that failed (see {@link SourceTrials}). */
export const SOURCE_FREE_FAILURES = 1;

/** Failed trials of a network's workers past which its untried workers' trials come later. */
export const NET_FREE_FAILURES = 2;
/** How long a network's failed trials count after its last (ms). */
const NET_MEMORY_MS = 60_000;

/**
 * The failed trials of the workers of one network (an IPv4 /24 or an IPv6 /48:
 * redial_nets.ts), as a rank only: past {@link NET_FREE_FAILURES}, its
 * untried workers' trials come after those of networks that failed fewer
 * (policies.ts nextTrial), no backoff. hostile43a A6: fakes registering
 * from fresh addresses, each source's first failure free, were always the
 * newest untried of rank 0 and took every trial, a second each, so real
 * workers that joined before them never had one; a network's count ranks
 * them behind a real worker of another network.
 */
export class NetTrials {
  failed = 0;
  lastAt = -Infinity;
  readonly #free: number;

  /** @param free failed trials that rank none of its workers back */
  constructor(free = NET_FREE_FAILURES) {
    this.#free = free;
  }

  fail(now: number): void {
    if (now - this.lastAt >= NET_MEMORY_MS) this.failed = 0;
    this.failed++;
    this.lastAt = now;
  }

  /** How far back its untried workers' trials come. */
  get rank(): number {
    return turnNow() - this.lastAt < NET_MEMORY_MS ? Math.max(0, this.failed - this.#free) : 0;
  }
}

export class TrialBackoff {
  /** Trials failed: held past their bound while a proven backend answered the same request within it. */
  failed = 0;
  /** No trial before this (performance.now() ms). */
  after = -Infinity;
  /** A worker's source, whose failures it shares (workers.ts). */
  source: SourceTrials | undefined;
  /** A worker's network, whose failures rank it (worker_sources.ts). */
  net: NetTrials | undefined;
  /** A worker's wider network (an IPv4 /16, an IPv6 /32), whose failures rank it too. */
  wide: NetTrials | undefined;

  /**
   * How far back its trial comes among untried backends (policies.ts
   * `nextTrial`): its failed trials, or its source's past the free ones,
   * or its network's past its free ones, whichever is more, and its wider
   * network's past its free ones on top (hostile43a A14: fakes each from a
   * fresh /24 of one /16 had a rank of 0 each).
   */
  get rank(): number {
    const source = (this.source?.failed ?? 0) - SOURCE_FREE_FAILURES;
    return Math.max(this.failed, source, this.net?.rank ?? 0) + (this.wide?.rank ?? 0);
  }

  /** Whether it may have no trial now: its own backoff, or its source's. */
  get waiting(): boolean {
    return (this.after !== -Infinity && turnNow() < this.after) || this.source?.waiting === true;
  }

  /**
   * A trial failed at `now`: no trial for {@link BACKOFF_MS}, twice that the
   * next time, up to {@link BACKOFF_MAX_MS}, and its source counts it; the
   * backend stays connected and untried. @returns that time in ms, its
   * source's if longer
   */
  fail(now: number): number {
    const ms = backoffMs(++this.failed, 0);
    this.after = now + ms;
    this.net?.fail(now);
    this.wide?.fail(now);
    return Math.max(ms, this.source?.fail(now) ?? 0);
  }

  /** A trial held until `until` has no verdict yet: no other trial before then. */
  pause(until: number): void {
    this.after = Math.max(this.after, until);
  }
}
