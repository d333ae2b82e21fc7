/**
 * The sources of the workers on the worker port (their user, else their
 * address: workers.ts), by what their workers did: their failed trials
 * (trial_backoff.ts {@link SourceTrials}), and how many of the
 * `--max-workers` slots their untried workers hold.
 */
import type { Backend } from "./backends.ts";
import { REMEMBER_MAX, REMEMBER_MS } from "./outlier.ts";
import { WINDOW_MS } from "./success_rate.ts";
import { NetTrials, SourceTrials } from "./trial_backoff.ts";
import { networkOf, wideNetworkOf } from "./redial_nets.ts";

/**
 * The share of `--max-workers` one source's untried workers may keep once
 * the slots are full: a newcomer of a source holding less takes the place
 * of the oldest worker of the source holding the most untried ones that
 * has shown it does not serve ({@link unproven}; hostile40c V3: fakes of
 * one address could fill all 1,000 slots, and real workers were refused
 * OVERLOADED), as `--max-connections-per-source` gives a source a quarter
 * while full.
 */
export const UNTRIED_SHARE = 4;

/**
 * Whether `b`, which has served nothing, has shown it does not serve: it
 * failed a trial (held a request a proven backend answered in time, or
 * refused or failed it), its source failed past its free failures (every
 * untried worker of it waits a trial backoff: trial_backoff.ts), or a
 * request it was sent timed out, failed or was lost. One that merely has
 * not been sent anything yet has shown nothing: in a pool with no traffic
 * yet, or just restarted, an operator's fleet registered from one source
 * is untried too, and fakes answering only their hello from three other
 * addresses closed three of its four (hostile42a Y2). Only these verdicts
 * count, which a client cannot give a real worker: its slow or bad
 * requests fail no trial (trials.ts).
 */
export function unproven(b: Backend): boolean {
  return b.served === 0 && (b.trialRank > 0 || b.failures > 0);
}

/**
 * Whether `b` serves nobody now: untried, out for its answers (timeouts,
 * failures: backends.ts `ejected`), or failing requests (in the success
 * window) with no result for {@link WINDOW_MS}, counted from the latest time it
 * may still be running a request of a method it never answered in time that
 * timed out (slow_methods.ts: slow on it, maybe; hostile45a K-A1). Such workers count against their
 * source's share of the slots, and those of them that served once, or are
 * {@link unproven}, give theirs up: hostile43a A3, fakes that answered one
 * task each and then held every task kept all `--max-workers` slots for
 * good, and a real worker was refused OVERLOADED.
 */
export function idle(b: Backend, now: number): boolean {
  if (b.served === 0) return true;
  // Out, and no answer even late for the window: a worker that answers late is slow, not a holder
  // (hostile44a H-A3: a client's requests past --timeout, replayed on fakes that answer at once,
  // took the real workers out, and their slots went to the attacker's next fakes). Late answers
  // are a sign of life from one that answers late at least half of what failed on it: a fake
  // holding its tasks kept its slot answering one of them late every 10 s (review44 R8).
  // A request of a method it never answered in time that timed out may still run: slow on it,
  // maybe, until the longest a built-in operation takes (slow_methods.ts; hostile45a K-A1: a
  // client's sleeps over 10 s past --timeout left a real worker silent that long).
  const running = b.slow.until;
  if (b.ejected) {
    const late = b.lateAnswers * 2 >= b.failures ? b.lateAt : -Infinity;
    return now - Math.max(b.lastAnswerAt, late, running) >= WINDOW_MS;
  }
  return now - Math.max(b.lastResultAt, running) >= WINDOW_MS && b.outcomes.failed(now) > 0;
}

interface Source {
  readonly trials: SourceTrials;
  /** Its registered workers, oldest first. */
  readonly workers: Set<Backend>;
}

export class WorkerSources {
  #sources = new Map<string, Source>();
  /** Failed trials by network (an IPv4 /24 and /16, an IPv6 /48 and /32), oldest first. */
  #nets = new Map<string, NetTrials>();

  /**
   * `backend` registered from `source`: it shares the source's failed
   * trials, and is ranked by its network's (`address`: its address's
   * source, redial_nets.ts networkOf).
   */
  join(source: string, backend: Backend, address?: string, now = performance.now()): void {
    backend.trial.net = this.#netOf(networkOf(address));
    backend.trial.wide = this.#netOf(wideNetworkOf(address));
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

  /** The failed trials of network `net` (an IPv4 /24 or /16, an IPv6 /48 or /32). */
  #netOf(net: string | undefined): NetTrials | undefined {
    if (net === undefined) return undefined;
    let n = this.#nets.get(net);
    if (n === undefined) {
      if (this.#nets.size >= REMEMBER_MAX) this.#nets.delete(this.#nets.keys().next().value!);
      this.#nets.set(net, n = new NetTrials());
    }
    return n;
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
   * take the place of: the oldest {@link unproven} or served-once idle one
   * of the source holding the most idle workers (untried, out, or failing
   * all) among those that have one, when that holds more than 1/{@link UNTRIED_SHARE} of `max`
   * and `source` holds fewer; else the oldest that served and stopped of the
   * source holding the most such. Untried workers that have shown nothing keep
   * their slots: the newcomer is refused until trials speak (hostile42a
   * Y2). O(workers).
   */
  displaced(source: string, max: number, now = performance.now()): Backend | undefined {
    const share = Math.max(1, Math.floor(max / UNTRIED_SHARE));
    let out: Backend | undefined;
    let mostN = share;
    // Workers that served, then stopped (out, or failing with no result), go whatever their
    // source's share (hostile43a A12: such fakes of 4 addresses, one slot each, kept all 4).
    let gone: Backend | undefined;
    let goneN = 0;
    for (const [key, s] of this.#sources) {
      let n = 0, stopped = 0;
      let first: Backend | undefined, firstStopped: Backend | undefined;
      for (const b of s.workers) {
        if (!idle(b, now)) continue;
        n++;
        if (first === undefined && (b.served > 0 || unproven(b))) first = b;
        if (b.served > 0 && stopped++ === 0) firstStopped = b;
      }
      if (key === source && n >= share) return undefined;
      if (key !== source && first !== undefined && n > mostN) [out, mostN] = [first, n];
      if (key !== source && stopped > goneN) [gone, goneN] = [firstStopped, stopped];
    }
    return out ?? gone;
  }
}
