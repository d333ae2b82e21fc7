/**
 * Trials: one rule for every backend that has answered no request while
 * another that has is in rotation — a worker that just registered, and a
 * `--service` instance past `--max-backends` (places.ts). Requests go to
 * the proven ones first, and the untried get one trial request at a time
 * among them all (policies.ts `Guarded`).
 *
 * A trial request is an idempotent one (a non-idempotent one never is a
 * trial while a proven backend is in rotation: policies.ts `Guarded`). It
 * may be held by its backend for the trial's bound: a second (places.ts
 * HOLD_MS), or four times the median of the method's recent slow answers
 * by proven backends (only answers of {@link SLOW_MS} or more are
 * remembered, the last {@link SAMPLES}, and at least {@link SAMPLES_MIN}
 * of them count: one client's `sleep 3000` does not raise it, hostile40c
 * V4), never more than policies.ts `TRIAL_MAX_MS` nor `--timeout`. Held past it, the request is sent again to
 * a proven backend (the client gets that answer; the untried backend's own
 * answer, if it comes, is a late one), and that answer is the verdict:
 * the same request answered there within the bound means the untried
 * backend held what a proven one answers in time, and it failed its trial
 * — no trial for 10 s, twice that the next time, up to 5 min
 * (trial_backoff.ts); a `--service` instance is then dropped and
 * benched (places.ts). A worker's failures also count for its source
 * (its user, else its address: trial_backoff.ts SourceTrials): from its
 * second, no worker of the source that has answered nothing gets a trial
 * for 10 s, then 20 s …, whatever its name, and an untried worker losing a
 * request with its connection counts as one (hostile40c V3). Answered
 * slower there, or failed or timed out there too, it says nothing: the
 * method is slow everywhere, and the untried one may have its next trial.
 * Nothing is closed for a trial.
 *
 * A trial sent on is a hedge: the untried backend is not told to stop,
 * so the request may run on both (hostile40c V7), at most twice, and only
 * an idempotent one. The trial slot is held until it is sent on, so it
 * happens at most once a bound (a second or more) pool-wide, less once
 * sources fail; `sys.stats` counts them (`trials_sent_on`).
 *
 * Before (hostile39c R1), a worker that held its trial past a second, or
 * timed it out, was closed with every other untried worker of its address,
 * and the address benched: any client's `sleep 1500` did it to real
 * workers. What P1 stopped stays stopped: fifty fakes that hold every
 * task hold one request at a time for a second each, then wait their
 * trial backoff.
 */
import type { Backend, Outcome } from "./backends.ts";
import type { Job } from "./dispatch_types.ts";
import { backendLines } from "./log.ts";
import { HOLD_MS } from "./places.ts";
import { TRIAL_MAX_MS } from "./policies.ts";
import { turnMs } from "../../wire/turn.ts";
import { provenUp } from "./pool.ts";

export { provenUp };

/** Answers this slow or slower (ms) are remembered by method (see the module comment). */
export const SLOW_MS = HOLD_MS / 4;
/** How long a method's slow answer speaks for it (ms). */
export const METHOD_MEMORY_MS = 5 * 60_000;
/** Slow answers remembered per method (the last ones). */
export const SAMPLES = 7;
/** Slow answers a method needs for its bound to rise above a second. */
export const SAMPLES_MIN = 3;
/** Most methods remembered at once (the oldest go first). */
export const METHODS_MAX = 256;

/** A request sent as a trial: to whom, how long it may hold it (ms), and whether it held it that long. */
export interface Trial {
  readonly from: Backend;
  readonly bound: number;
  held: boolean;
}

export class Trials {
  /**
   * Trials held past their bound and sent again (`trials_sent_on` in
   * `sys.stats`): each may have run on two backends (see the module comment).
   */
  sentOn = 0;
  #timeoutMs: number;
  /** The last slow answers of each method by a proven backend (ms), and when the last was. */
  #slow = new Map<string, { ms: number[]; at: number }>();
  #now = turnMs;

  /** @param timeoutMs `--timeout` */
  constructor(timeoutMs: number) {
    this.#timeoutMs = timeoutMs;
  }

  /**
   * How long `backend` may take to answer `job` (ms): `--timeout`, or the
   * trial's bound when it is a trial (then `job.trial` says so).
   */
  timeoutFor(job: Job & { readonly method: string }, backend: Backend): number {
    if (!backend.untried || !job.idempotent || !provenUp(backend.pool)) {
      return this.#timeoutMs;
    }
    const bound = Math.min(this.#timeoutMs, this.bound(job.method, this.#now()));
    job.trial = { from: backend, bound, held: false };
    return bound;
  }

  /** A trial's bound for `method` at `now` (ms), before `--timeout`. */
  bound(method: string, now: number): number {
    const slow = this.#slow.get(method);
    if (slow === undefined || now - slow.at >= METHOD_MEMORY_MS || slow.ms.length < SAMPLES_MIN) {
      return HOLD_MS;
    }
    const sorted = slow.ms.toSorted((a, b) => a - b);
    const median = sorted[(sorted.length - 1) >> 1];
    return Math.min(TRIAL_MAX_MS, Math.max(HOLD_MS, 4 * median));
  }

  /**
   * Whether `job` timed out on `backend` as its trial: it is to be sent
   * again (see the module comment). The backend then has no trial until
   * the verdict, which comes within the bound (later, there is none).
   */
  held(job: Job, backend: Backend): boolean {
    const trial = job.trial;
    if (trial?.from !== backend) return false;
    trial.held = true;
    this.sentOn++;
    backend.trial.pause(performance.now() + trial.bound);
    return true;
  }

  /**
   * `job` ended on `backend` as `outcome` says (`ok`: a result, not an
   * error), before the backend counts it: a proven one's slow result is
   * remembered for its method, and its result to a trial sent again is the
   * verdict on the backend that held it. An error answer is none
   * (hostile40c V5: a server's 2-ms UNKNOWN_METHOD failed every trial of a
   * worker serving the method in 1.5 s). A trial its own backend refused
   * (UNAVAILABLE, OVERLOADED) or failed (INTERNAL) failed (hostile41a W5:
   * a fake refusing every task at once freed the trial slot at once and was
   * tried again, ~950 times a second beside one server); an untried
   * worker's request lost with its connection counts for its source; an
   * untried backend's error answer proves nothing ({@link erredUntried}).
   */
  ended(
    job: Job & { readonly method: string },
    backend: Backend,
    outcome: Outcome,
    ok = outcome === "answered",
  ): void {
    const trial = job.trial;
    if (outcome === "answered" && ok) backend.lastResultAt = this.#now();
    else if (outcome === "answered") erredUntried(backend);
    if (outcome !== "answered" || !ok || backend.untried) {
      if (trial !== undefined && trial.from !== backend) job.trial = undefined;
      if (outcome === "refused" || outcome === "failed") {
        if (trial?.from === backend) {
          failTrial(backend, `answered a trial request ${job.method.slice(0, 64)} ${outcome}`);
        }
      } else if (outcome === "lost" && backend.untried) this.#lost(job, backend);
      return;
    }
    const now = this.#now();
    const ms = now - job.sentAt;
    if (ms >= SLOW_MS) this.#noteSlow(job.method, ms, now);
    if (trial === undefined || trial.from === backend) return;
    job.trial = undefined;
    // Answered by its backend, sent on for another reason (verify.ts); or slow here too: no verdict.
    if (!trial.held || ms >= trial.bound) return;
    failTrial(
      trial.from,
      `held a trial request ${job.method.slice(0, 64)} past ${Math.round(trial.bound)} ms, ` +
        `which ${backend.name} answered in ${Math.round(ms)} ms`,
    );
  }

  /**
   * `backend`, untried, lost `job` with its connection: a failure of its
   * source (trial_backoff.ts SourceTrials; hostile40c V3: fakes that drop a
   * held request and register again under a new name failed a client's
   * non-idempotent request each time while no proven backend was in rotation).
   */
  #lost(job: Job & { readonly method: string }, backend: Backend): void {
    const source = backend.trial.source;
    if (source === undefined) return;
    const ms = source.fail(performance.now());
    if (ms === 0) return;
    backendLines.warn(
      "Backend {backend} ({peer}) lost request {method} with its connection before it answered any: " +
        "no trial for its source's workers that answered none for {seconds} s ({n} failed)",
      {
        backend: backend.name,
        peer: backend.peerName,
        method: job.method.slice(0, 64),
        seconds: Math.ceil(ms / 1000),
        n: source.failed,
      },
    );
  }

  #noteSlow(method: string, ms: number, now: number): void {
    const slow = this.#slow;
    let had = slow.get(method);
    if (had === undefined || now - had.at >= METHOD_MEMORY_MS) had = { ms: [], at: now };
    slow.delete(method);
    had.ms.push(ms);
    if (had.ms.length > SAMPLES) had.ms.shift();
    had.at = now;
    slow.set(method, had);
    if (slow.size > METHODS_MAX) slow.delete(slow.keys().next().value!);
  }
}

/**
 * `backend` answered an error, no result: untried while a proven backend
 * is up, it stays so (backends.ts "erred"), and its next trial comes
 * {@link HOLD_MS} later (hostile41a W3: a fake answering its one trial
 * UNKNOWN_METHOD in 1 ms was proven, took its round-robin share and failed
 * half of a client's requests for good). A pool with no proven backend (a
 * lone worker) takes its error answers as its peers': they prove it.
 */
export function erredUntried(backend: Backend): void {
  if (backend.untried && provenUp(backend.pool)) backend.trial.pause(performance.now() + HOLD_MS);
}

/** `backend` failed a trial: it `did` so (for the log). */
export function failTrial(backend: Backend, did: string): void {
  const out = backend.trial.fail(performance.now());
  backendLines.warn(
    "Backend {backend} ({peer}) {did}: no trial for {seconds} s ({n} failed; {sourceN} by its source)",
    {
      backend: backend.name,
      peer: backend.peerName,
      did,
      seconds: Math.ceil(out / 1000),
      n: backend.trial.failed,
      sourceN: backend.trial.source?.failed ?? backend.trial.failed,
    },
  );
}
