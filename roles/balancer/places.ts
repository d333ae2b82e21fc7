/**
 * Places past `--max-backends` (sources.ts, ServerSet.sync): while a
 * service has more instances than places ("pressed"), a place is kept by
 * serving. hostile35 H4: 300 fake instances that answer their handshake
 * and health checks but no request took every place for good, and a real
 * server registered after them was never dialed: every request timed out.
 *
 * While pressed, each instance dialed is judged ({@link judge}):
 * - one that has answered a request ("tried") keeps its place while it is
 *   in rotation or out for its answers only; down (its connection, its
 *   checks) for {@link ROTATE_MS}, it gives it to one waiting;
 * - one that has answered none ("untried") and failed a trial (trials.ts:
 *   it held a request past the trial's bound that a proven backend then
 *   answered within it), or answered its requests only with failures, or
 *   — while no backend that has answered is in rotation, so that no trial
 *   can be judged — holds a request for {@link holdFor}, is dropped at
 *   once (its requests are sent again elsewhere) and benched: not dialed
 *   again for {@link BACKOFF_MS}, twice that the next time, up to
 *   {@link BACKOFF_MAX_MS} (outlier.ts's backoff);
 * - an untried one still down (no handshake) after {@link DOWN_MS} gives
 *   its place to one waiting;
 * - at most {@link TRIALS} untried ones are dialed at once (or as many as
 *   there are tried ones, so a fleet of real servers grows quickly), so
 *   requests meet few untried backends and those waiting are tried in turn,
 *   never dialed first ({@link Bench.order}).
 * The pool is guarded meanwhile: requests go to tried backends first, the
 * untried get trials (policies.ts).
 */
import type { Backend } from "./backends.ts";
import { BACKOFF_MAX_MS, BACKOFF_MS, REMEMBER_MAX } from "./outlier.ts";

/**
 * Least time an untried backend may hold a request while others wait for a
 * place (ms); longer when the tried ones are slow ({@link holdFor}).
 */
export const HOLD_MS = 1_000;
/** How long an untried instance may stay down (no handshake) while others wait (ms). */
export const DOWN_MS = 2_000;
/** How long a tried instance out of rotation keeps its place while others wait (ms). */
export const ROTATE_MS = 5_000;
/** Requests a tried instance has served past which it keeps its place while out for its answers. */
export const KEPT_SERVED = 16;
/** Untried instances dialed at once while pressed (at least). */
export const TRIALS = 16;
/** How often a pressed service's places are looked at (ms). */
export const TICK_MS = 250;

/** What becomes of a dialed instance while its service is pressed. */
export type Verdict = "tried" | "untried" | "bench" | "stale";

/** What the judge keeps of a dialed instance between looks. */
export interface Held {
  /** When it was added (performance.now()). */
  readonly added: number;
  /** Since when it was seen holding requests while untried. */
  holding?: number;
}

/**
 * The verdict on `b` (dialed as `held`) at `now`, while pressed; `hold`
 * gives the hold bound ({@link holdFor}; Infinity while a backend that has
 * answered is in rotation: trials.ts judges then), asked only when needed.
 */
export function judge(b: Backend, held: Held, now: number, hold: () => number): Verdict {
  if (b.served > 0) {
    held.holding = undefined;
    // Out for its answers, its connection and checks fine, it keeps its place: a client's slow
    // requests take a real server out at will (hostile45a K-A6: then an instance a stranger
    // registered took its place, and the server was dialed no more).
    // ... one that served its first few only, then held them, is a fake and gives it (review45 R12).
    const kept = b.ejected && b.served > KEPT_SERVED;
    return b.state !== "up" && !kept && now - b.since >= ROTATE_MS ? "stale" : "tried";
  }
  // Lost, timed out, or answered only INTERNAL, UNAVAILABLE, OVERLOADED; or failed a trial.
  if (b.failures > 0 || b.trial.failed > 0) return "bench";
  if (b.inflight > 0) {
    held.holding ??= now;
    if (now - held.holding >= hold()) return "bench";
  } else held.holding = undefined;
  return b.state !== "up" && now - held.added >= DOWN_MS ? "stale" : "untried";
}

/**
 * How long an untried backend may hold a request: {@link HOLD_MS}, or 4x
 * the slowest p99 of the tried backends `tried` (the first 32), when their
 * requests take that long.
 */
export function holdFor(tried: Iterable<Backend>): number {
  let p99 = 0;
  let n = 0;
  for (const b of tried) {
    if (b.served === 0) continue;
    p99 = Math.max(p99, b.latency.percentiles().p99);
    if (++n >= 32) break;
  }
  return Math.max(HOLD_MS, 4 * p99);
}

/**
 * Addresses benched for holding requests they never answered, and until
 * when; and when each was last dialed.
 */
export class Bench {
  #byKey = new Map<string, { until: number; times: number }>();
  #dialed = new Map<string, number>();

  /** `key` is dialed at `now`. */
  dialed(key: string, now: number): void {
    this.#dialed.delete(key);
    this.#dialed.set(key, now);
    if (this.#dialed.size > REMEMBER_MAX) this.#dialed.delete(this.#dialed.keys().next().value!);
  }

  /** Whether `key` may not be dialed at `now`. */
  has(key: string, now: number): boolean {
    const e = this.#byKey.get(key);
    return e !== undefined && now < e.until;
  }

  /** Benches `key` from `now`, longer each time. @returns for how long (ms) */
  add(key: string, now: number): number {
    const times = this.#byKey.get(key)?.times ?? 0;
    const ms = Math.min(BACKOFF_MAX_MS, BACKOFF_MS * 2 ** times);
    this.#byKey.delete(key);
    this.#byKey.set(key, { until: now + ms, times: times + 1 });
    if (this.#byKey.size > REMEMBER_MAX) this.#byKey.delete(this.#byKey.keys().next().value!);
    return ms;
  }

  /** `key` served: its next bench is a first one. */
  forget(key: string): void {
    this.#byKey.delete(key);
  }

  /**
   * Sorts `waiting` (by their keys) in the order they are to be dialed: never
   * dialed (or too long ago to remember) first, in a random order (an
   * attacker cannot place its instances ahead of a real server), then
   * those dialed longest ago.
   */
  order<T extends { key: string }>(waiting: T[], random = Math.random): T[] {
    const at = new Map<T, number>();
    for (const w of waiting) at.set(w, this.#dialed.get(w.key) ?? -1 - random());
    return waiting.sort((a, b) => at.get(a)! - at.get(b)!);
  }
}

/**
 * `ordered` (each registrant's in their order) taken one registrant at a
 * time in turn, the first after `last` (in name order) first: instances of
 * a registrant that holds hundreds wait their turn behind one of each other
 * registrant (binder.ts `registrant`: who registered it). O(n log g).
 */
export function byRegistrant<T extends { registrant: string }>(
  ordered: readonly T[],
  last: string | undefined,
): T[] {
  const groups = new Map<string, T[]>();
  for (const t of ordered) {
    const g = groups.get(t.registrant);
    if (g === undefined) groups.set(t.registrant, [t]);
    else g.push(t);
  }
  if (groups.size <= 1) return [...ordered];
  const names = [...groups.keys()].sort();
  const first = last === undefined ? 0 : Math.max(0, names.findIndex((n) => n > last));
  let active = [...names.slice(first), ...names.slice(0, first)].map((n) => groups.get(n)!);
  const out: T[] = [];
  for (let round = 0; active.length > 0; round++) {
    for (const g of active) if (round < g.length) out.push(g[round]);
    active = active.filter((g) => g.length > round + 1);
  }
  return out;
}
