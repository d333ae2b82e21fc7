/**
 * A backend's failures judged against the other backends' (Envoy's
 * success-rate outlier detection; hostile review 35, H3 and H10). Plain
 * data: backends.ts records each outcome here and asks before it takes a
 * backend out for its answers.
 *
 * Failures are timeouts and error answers that say the backend could not
 * serve: `INTERNAL` (its own, or a code outside the protocol's), and
 * `UNAVAILABLE` and `OVERLOADED` answered by it. Counting them alone takes
 * out healthy backends whenever the cause is elsewhere: a client whose
 * input makes every backend's handler throw took 3 of 4 backends out in
 * 11 ms (H10); a client's 60 s `sleep`s past a 30 s `--timeout` took out
 * the servers that ran them as asked; a shared dependency down would take
 * out all but one. Not counting them kept a backend answering every task
 * `UNAVAILABLE` at once in rotation for good, and under `least-loaded` it
 * drew 9,072 of 14,254 requests (H3).
 *
 * So a backend is out for its answers only when they fail well above the
 * others' over the same window: its failure share at least
 * {@link MIN_PART} of its outcomes and {@link RATIO} × the other
 * backends' together (a request that fails
 * everywhere alike condemns none), and no more than {@link MAX_OUT_PART}
 * of the pool out for answers at once (at least one may be; the last one
 * up stays: Envoy's `max_ejection_percent`). The rules that name a
 * candidate are outlier.ts's (failures or timeouts in a row or over the
 * window) and, for `UNAVAILABLE`/`OVERLOADED` answers that count in no
 * rule there, {@link candidate}: at least {@link MIN_SHARE} of at least
 * {@link MIN_OUTCOMES} outcomes, beside at least two other backends with
 * as many (Envoy's `success_rate_minimum_hosts` and `request_volume`).
 *
 * A fast failure is not a fast success either: `least-loaded` and `p2c`
 * count each failure among a backend's last {@link RECENT} outcomes as a
 * request in flight ({@link Outcomes.penalty}), so one that fails at once
 * no longer looks the least loaded.
 */

import { WindowCounts } from "./window_counts.ts";

/** Outcomes are counted over this to twice this (ms), as outlier.ts's window. */
export { WINDOW_MS } from "./window_counts.ts";

/** A candidate fails at least this many times the others' share to be out. */
export const RATIO = 2;
/**
 * Its failures must be at least this part of its window's outcomes: 3
 * timeouts in a row among thousands of answers (a client's 60 s `sleep`s
 * past `--timeout`, all timing out together) are no sign of a bad backend,
 * even when another's have not timed out yet.
 */
export const MIN_PART = 0.25;
/** At most this part of the pool out for its answers at once (at least one backend). */
export const MAX_OUT_PART = 0.5;
/** UNAVAILABLE/OVERLOADED answers: the share of outcomes that names a candidate … */
export const MIN_SHARE = 0.5;
/** … among at least this many outcomes in the window (and as many on two others). */
export const MIN_OUTCOMES = 20;
/**
 * Outcomes in the window, none failed, that make a backend that is up
 * sound beside a candidate (see {@link mayEject}) at a low rate, where
 * {@link MIN_OUTCOMES} are never reached, when they are also at least as
 * many as the candidate's failures: hostile43a A13, one call every 0.3 s
 * beside four fakes that answered once and then held every task, the
 * server had a fifth of them.
 */
export const SOUND_FEW = 3;
/** Outcomes remembered for the policies' penalty (a bit each). */
export const RECENT = 16;

/** What the window counts. */
const TOTAL = 0, FAILED = 1;

/** Outcomes and failures over the window (window_counts.ts), and the last few outcomes. */
export class Outcomes {
  readonly #window = new WindowCounts(2);
  /** The last RECENT outcomes, a bit each (1: failed), and how many bits are set. */
  #recent = 0;
  #recentFailed = 0;

  /** Records an outcome at `now`. */
  add(now: number, failed: boolean): void {
    this.#window.add(now, TOTAL);
    if (failed) this.#window.add(now, FAILED);
    const out = (this.#recent >>> (RECENT - 1)) & 1;
    this.#recent = ((this.#recent << 1) | (failed ? 1 : 0)) & ((1 << RECENT) - 1);
    this.#recentFailed += (failed ? 1 : 0) - out;
  }

  /** Outcomes in the window at `now`. */
  total(now: number): number {
    return this.#window.count(now, TOTAL);
  }

  /** Failures in the window at `now`. */
  failed(now: number): number {
    return this.#window.count(now, FAILED);
  }

  /** Failures among the last RECENT outcomes: what least-loaded adds to its requests in flight. */
  get penalty(): number {
    return this.#recentFailed;
  }

  /** Forgets the window (it was taken out: it starts again when back). */
  clear(): void {
    this.#window.clear();
  }
}

/** What the judgement reads of a backend. */
export interface Judged {
  /** A server (named by the operator or a binder) or a worker that dialed in (anyone may). */
  readonly kind?: "server" | "worker";
  /** Where it came from: "backends" (the operator's list), a service's binders, the worker port. */
  readonly source?: string;
  readonly outcomes: Outcomes;
  readonly state: "up" | "down";
  /** Out for its answers (not for checks or its connection), until it is back up. */
  readonly ejected: boolean;
  /** Requests it answered with a result since it joined. */
  readonly served?: number;
  /** A server that runs `sleep` as asked, and never answered one sooner (sleep_check.ts). */
  readonly witness?: boolean;
}

/** A server of `--backends` (a judged backend of no stated source counts as one). */
function vouched(o: Judged): boolean {
  return o.kind !== "worker" && (o.source === undefined || o.source === "backends");
}

/**
 * Whether `b`'s failures at `now` name it a candidate by themselves (the
 * rule for answers outlier.ts does not count): {@link MIN_SHARE} of at
 * least {@link MIN_OUTCOMES}.
 */
export function candidate(b: Judged, now: number): boolean {
  const n = b.outcomes.total(now);
  return n >= MIN_OUTCOMES && b.outcomes.failed(now) >= MIN_SHARE * n;
}

/**
 * Whether `b`, a candidate, may be taken out at `now`: its failure share
 * is at least {@link MIN_PART} and {@link RATIO} × the others' together, fewer than
 * {@link MAX_OUT_PART} of `pool` (at least one) are out for their answers,
 * and another backend is up. With `peers`, at least two others must have
 * {@link MIN_OUTCOMES} outcomes in the window (the rule of
 * {@link candidate}). The cap and the others' share do not hold it in
 * when another backend that is up, a server of `--backends` or one that
 * runs `sleep` as asked (sleep_check.ts: an instance a binder named, review45
 * R3), with {@link MIN_OUTCOMES} outcomes,
 * fails at most 1/{@link RATIO} as much, or with {@link SOUND_FEW} and
 * as many as `b` failed fails none: hostile43a A4, four fakes that
 * answered once and then held every task beside one server, two stayed in
 * for good (the cap) and the clients got their TIMEOUTs; K7, a fleet of
 * fakes failing alike, none out (the others' share). In a pool with no
 * server, a worker is that witness for a candidate with at most
 * {@link SOUND_FEW} outcomes not failed. @returns why not, or
 * undefined when it may
 */
export function mayEject(
  b: Judged,
  pool: readonly Judged[],
  now: number,
  options: { peers?: boolean } = {},
): string | undefined {
  const n = b.outcomes.total(now);
  const f = b.outcomes.failed(now);
  if (f < MIN_PART * n) return "too small a part of its outcomes";
  let othersN = 0;
  let othersF = 0;
  let withData = 0;
  let out = 0;
  let live = 0;
  let outVouched = 0;
  let liveVouched = 0;
  let up = 0;
  let sound = false;
  let soundWorker = false;
  let servers = false;
  for (const o of pool) {
    if (o.kind !== "worker") servers = true;
    if (o.ejected) out++;
    if (o.ejected || o.state === "up") live++;
    if (vouched(o) && o.ejected) outVouched++;
    if (vouched(o) && (o.ejected || o.state === "up")) liveVouched++;
    if (o === b) continue;
    if (o.state === "up") up++;
    const on = o.outcomes.total(now);
    const of = o.outcomes.failed(now);
    othersN += on;
    othersF += of;
    if (on >= MIN_OUTCOMES) withData++;
    const least = of === 0 ? Math.min(MIN_OUTCOMES, Math.max(SOUND_FEW, f)) : MIN_OUTCOMES;
    // Only a server the operator named is such a witness: a worker, or an instance anyone
    // registered at an open binder (whenever it joined: review45 R10), that answers every task at
    // once (lying) would be the sound one whenever a client's requests outlast --timeout on the
    // servers (hostile44a H-A2, hostile45a K-A2).
    // Nor one a binder named, unless it runs sleep as asked (review45 R3: then it is no liar that
    // answers a client's slow requests at once, and fakes holding every task stayed past the cap).
    if (o.state === "up" && on >= least && of * RATIO * n <= f * on) {
      if (vouched(o) || o.witness === true) sound = true;
      else if (o.kind === "worker") soundWorker = true;
    }
  }
  // With no server in the pool, a worker witnesses for one that served (almost) nothing in the
  // window: fakes that answered once, then held every task, stayed past the cap (review44 R6);
  // a real worker that answers its other requests in time is not such a one (H-A2).
  // One that served more than that in its life is no such fake (review45 R11: a real worker in a
  // quiet pool, its window filled by one client's sleeps, was out beside the attacker's worker).
  if (soundWorker && !servers && n - f <= SOUND_FEW && (b.served ?? 0) <= SOUND_FEW) sound = true;
  if (up === 0) return "no other backend is up";
  if (options.peers && withData < 2) return "too few other backends to compare with";
  // One that stays up and fails at most 1/RATIO as much: the failures are b's, however many fail alike.
  if (sound && n > 0) return undefined;
  // Half of those up or out for their answers: backends down for their checks or connection
  // (addresses where nothing listens, registered at an open binder) are no part of it (review45 R6).
  if (out >= Math.max(1, Math.floor(live * MAX_OUT_PART))) {
    return `${out} backend(s) already out for their answers`;
  }
  // And half of the operator's servers: anyone may add backends that are up to the pool, so a cap
  // over the pool alone let both --backends servers out beside four liars (review45 R6).
  if (vouched(b) && outVouched >= Math.max(1, Math.floor(liveVouched * MAX_OUT_PART))) {
    return `${outVouched} of the --backends servers already out for their answers`;
  }
  // f/n >= RATIO × othersF/othersN, without dividing (othersN may be 0).
  if (n === 0 || f * othersN < RATIO * othersF * n) return "the others fail as much";
  return undefined;
}
