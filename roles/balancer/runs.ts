/**
 * Which backend takes a request, in batches: the policy's pick (policies.ts),
 * except that the requests one client connection hands over in one turn of
 * the event loop (the frames of one read) stay together on one backend
 * while no other backend is idle.
 *
 * Why: on loopback a write costs several µs in the kernel (the peer's
 * receive path and wake-up run in the writer's time), more than all the
 * JavaScript of a forwarded request. With a pick per request, a client's
 * batch of N requests cost a write to each backend and a write back from
 * each, and arrived back at the client in pieces, so its next batch was
 * split the same way; kept together, it costs one write each way, and the
 * backend reads and answers it in one go too.
 *
 * What stays: an idle backend (nothing in flight for IDLE_MS) takes a new
 * run before a busy one (requests sent to it lately: STUCK_MS) and ends a run, so requests still spread while a
 * backend is idle (two slow calls sent at once to idle backends run on two
 * of them). One that has just answered does not count: under load every
 * answered batch leaves its backend empty for a moment, and counting that
 * split the next batch in two (writes to backends of a single request went
 * from a quarter of them to 5 % with 1 ms). A run is at most RUN_MAX long;
 * the policy picks where each run starts, so runs rotate as picks did. Large pools (workers) keep a pick per
 * request: looking for an idle backend looks at each.
 */
import type { Backend, Pool } from "./backends.ts";
import type { Policy } from "./policies.ts";

/**
 * Most requests of one connection's turn sent to one backend in a row: a
 * read of up to four shares (what a connection may have on the backends
 * while nothing waits, shares.ts) goes in one write. At 32, a client's reads
 * of 64 went to two backends and came back in two writes: 0.05 writes a
 * request against 0.032 (a relay's), 0.2 µs a request more (balancer-floor).
 */
export const RUN_MAX = 64;
/** Pools larger than this get a pick per request. */
export const RUN_POOL = 16;
/** How long a backend must have had nothing in flight to count as idle (ms). */
export const IDLE_MS = 1;

export class Runs {
  #pool: Pool;
  #policy: Policy;
  /** The run of this turn: whose requests, to which backend, how many so far. */
  #flow: object | undefined;
  #backend: Backend | undefined;
  #length = 0;
  /** Where the next look for an idle backend starts (see #idle). */
  #idleFrom = 0;
  /** When the run's look for an idle backend last found none (NaN: not in this run). */
  #busyAt = NaN;
  /** Ends the run at the end of the turn (one function for the picker's life). */
  #end = () => this.#flow = undefined;

  #now: () => number;

  /** Requests on a backend sent lately (shares.ts young); those older it sits on. */
  #young: (b: Backend) => number;

  constructor(pool: Pool, policy: Policy, now: () => number, young: (b: Backend) => number) {
    this.#pool = pool;
    this.#policy = policy;
    this.#now = now;
    this.#young = young;
  }

  /**
   * The backend for a request of `flow` (its client connection; undefined:
   * a pick of its own), other than `avoid` (a retry) unless it is the only
   * one; undefined when none is available; `trial` false: not a trial
   * (policies.ts `Guarded`).
   */
  pick(flow: object | undefined, avoid: Backend | undefined, trial = true): Backend | undefined {
    const list = this.#pool.list;
    if (flow === undefined || avoid !== undefined || list.length > RUN_POOL) {
      return this.#policy.pick(list, avoid, trial);
    }
    if (flow === this.#flow && this.#length < RUN_MAX) {
      const run = this.#backend!;
      if (
        run.available && (trial || !run.untried) &&
        (this.#busyAt === this.#now() || this.#stillBusy(run))
      ) {
        this.#length++;
        return run;
      }
    }
    let backend = this.#policy.pick(list, undefined, trial);
    if (backend === undefined) return undefined;
    // Busy with requests sent lately; one that only sits on old ones (a client's `sleep`) is not:
    // one slow request on each server sent every other request to a worker answering at once
    // (hostile44a H-A4: 100 % of an honest client's calls, nothing failed).
    if (backend.inflight > 0 && this.#young(backend) > 0) backend = this.#idle(backend) ?? backend;
    if (this.#flow === undefined) queueMicrotask(this.#end);
    this.#flow = flow;
    this.#backend = backend;
    this.#length = 1;
    this.#busyAt = NaN;
    return backend;
  }

  /** Whether no backend but `run` is idle now (remembered for this time: #busyAt). */
  #stillBusy(run: Backend): boolean {
    if (this.#idle(run) !== undefined) return false;
    this.#busyAt = this.#now();
    return true;
  }

  /**
   * An available backend other than `not` idle for IDLE_MS, in turn. Once
   * none is, none becomes so at the same time (a backend emptied now has
   * been idle for no time), so the run's later requests do not look again
   * until the clock moves (#busyAt): a look per read, not per request.
   */
  #idle(not: Backend): Backend | undefined {
    const list = this.#pool.list;
    const n = list.length;
    let before = NaN;
    for (let k = 0; k < n; k++) {
      const b = list[(this.#idleFrom + k) % n];
      if (b === not || b.inflight > 0) continue;
      if (before !== before) before = this.#now() - IDLE_MS;
      // One failing lately (success_rate.ts) is idle because it fails at once: not a better pick.
      if (b.idleSince > before || !b.available || b.penalty > 0) continue;
      this.#idleFrom = (this.#idleFrom + k + 1) % n;
      return b;
    }
    return undefined;
  }
}
