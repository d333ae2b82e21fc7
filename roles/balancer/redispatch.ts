/**
 * Where a request lost with its backend's connection goes again, and
 * whether that loss spends one of its attempts (forward.ts failover;
 * hostile46a G5): a request lost on a dial-in worker that is not steady —
 * in rotation for less than {@link STEADY_MS}, or less than CHURN_YOUNG_MS
 * when its name's registrations ended young lately (churn.ts) — is sent
 * again without counting that send against `--retries`, at most
 * {@link FREE_RESENDS} times a request, and to a steady backend that has
 * answered when one has room (HAProxy's `option redispatch`, Envoy's `previous_hosts` retry
 * predicate); such a resend takes nothing from the retry budget, one with
 * no steady backend to go to does. A server's loss counts as before (the
 * operator chose it; its connection dropping is a failure). Before, 16
 * workers that dropped their connection every 100–300 ms took all three
 * of a client's attempts, one drop each.
 */
import type { Backend } from "./backends.ts";
import { CHURN_YOUNG_MS } from "./churn.ts";

/** A backend in rotation for less than this (ms) is not steady yet. */
export const STEADY_MS = 2_000;
/** Most sends of one request that a loss on an unsteady backend does not count. */
export const FREE_RESENDS = 3;

/** Whether a loss on `b` at `now` is not counted: a worker (one that dialed in) not steady. */
export function unsteadyWorker(b: Backend, now: number): boolean {
  return b.kind === "worker" && !steady(b, now);
}

/**
 * Whether `b`, up or just lost, had been in rotation STEADY_MS at `now`
 * (CHURN_YOUNG_MS for a worker whose name's registrations ended young: as
 * long as clears them).
 */
export function steady(b: Backend, now: number): boolean {
  return now - b.upAt >= (b.churn > 0 ? CHURN_YOUNG_MS : STEADY_MS);
}

/**
 * The steady backend with room that has answered, other than `avoid`, with
 * the fewest requests in flight for its capacity; undefined when none.
 */
export function steadyBackend(
  list: readonly Backend[],
  avoid: Backend,
  now: number,
): Backend | undefined {
  let best: Backend | undefined;
  let load = Infinity;
  for (const b of list) {
    if (b === avoid || !b.available || b.untried || !steady(b, now)) continue;
    const l = (b.inflight + b.penalty) / b.capacity;
    if (l < load) [best, load] = [b, l];
  }
  return best;
}

/** The free resends each request has had (the jobs are the dispatcher's own types). */
export class FreeResends {
  #taken = new WeakMap<object, number>();

  /** Takes one for `job` when it has one left. @returns whether it did */
  take(job: object): boolean {
    const n = this.#taken.get(job) ?? 0;
    if (n >= FREE_RESENDS) return false;
    this.#taken.set(job, n + 1);
    return true;
  }
}
