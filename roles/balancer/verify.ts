/**
 * Verification by replay (hostile36 J1): a backend's failure counts
 * against it only when another backend answers the same request.
 *
 * The success-rate rule (success_rate.ts) compares a backend's failures
 * with the others'. On a quiet balancer a lone client sending its requests
 * one at a time, every second one failing (a `sleep` past `--timeout`, an
 * input its handler throws on), chooses under round-robin which backends
 * see its failures, and took half the pool out; and answers that blame the
 * request (`BAD_REQUEST`, `NOT_FOUND`) were never counted, so a backend
 * answering every task so stayed in rotation. From one source a client's
 * bad input and a broken backend look alike, so the balancer asks another
 * backend: an idempotent request answered with a failure (a timeout, or
 * any error: `INTERNAL`, `UNAVAILABLE`, `OVERLOADED`, or a code that blames
 * the request until then, `BAD_REQUEST`, `NOT_FOUND`, `UNKNOWN_METHOD` and
 * the rest: answers.ts kindOf) is sent once more, to another backend with room (Dispatcher.replay: a retry,
 * within `--retries` and the retry budget), and the client gets that
 * answer:
 *
 * - answered with a result there (a timeout: within half of `--timeout`),
 *   the first backend is guilty: its failure counts as before (and an
 *   error that blamed the request counts as an `INTERNAL` does); on trial
 *   (trials.ts), it failed its trial (hostile41a W3). An error that blames
 *   the request is an answer of a backend that serves, though: it is
 *   guilty only when it has answered no request with a result since it
 *   joined, or it is a dial-in worker and the other a server
 *   ({@link mayContradict}; hostile43a A7);
 * - a failure there too (or a slow answer to a timeout) is the request's
 *   fault: it counts against neither; but a timeout there says so only
 *   from a backend known to answer ({@link answersSince}: hostile43a A13),
 *   else it is no verdict and both timeouts count;
 * - no verdict (the replay's backend died, or it waited too long): the
 *   first failure counts as it did before verification.
 *
 * Sampled and budgeted: per backend and class of failure (timeouts;
 * answers), one replay at a time and at most one started every
 * {@link REPLAY_EVERY_MS}. While it runs, more failures of that class
 * from the same client source are held (their clients answered at once)
 * and counted by its verdict (at most {@link HELD_MAX}); for
 * {@link VERDICT_MS} after it, the verdict stands for them. So a replayed
 * timeout holds one more slot for `--timeout` at most once at a time per
 * backend. Failures with no verdict to be had — no other backend with
 * room, the budgets spent, another source's replay running — count as
 * before (timeouts, `INTERNAL`, `UNAVAILABLE`, `OVERLOADED`) or not at all
 * (the other codes), so one backend answering `UNAVAILABLE` at
 * once is still out from one source (hostile35 H3), and so is one that
 * times out on its first request after joining (outlier.ts: counted at
 * once; the request is sent on for its client, no verdict).
 *
 * A non-idempotent request is never sent twice, so its failure gets no
 * replay; counted as before, a lone client marking its failing requests
 * `"idem": false` took a backend out exactly as J1 did (hostile38 L5). Its
 * timeout or `INTERNAL` is judged instead ({@link UNREPLAYED_MS}): by the
 * last verdict of a replay on that backend and class (guilty: it counts;
 * the request's fault: excused), else by another source: it counts when a
 * failure of the same class on that backend came from another client
 * source within that time. The same source alone: its `INTERNAL` is
 * excused (an answer: the backend is alive; the input may be the fault),
 * and its timeout too while the backend answers anything, in time or late
 * (a late answer to a request that timed out proves it runs them, slowly);
 * one that has answered nothing for that long while that source's
 * requests time out is out as before (a fake that answers pings but no
 * request; so is one that never answered since it joined). `UNAVAILABLE`/
 * `OVERLOADED` count as before; other codes only while a guilty verdict
 * on that backend stands.
 */
import type { Backend, Outcome, Transition } from "./backends.ts";
import type { Job } from "./dispatch_types.ts";
import { MIN_PART } from "./success_rate.ts";
import { erredUntried, failTrial } from "./trials.ts";

/**
 * What a backend's failure was: a timeout, `INTERNAL`, `UNAVAILABLE`/`OVERLOADED`, or any other
 * code, which blames the request until another backend answers it (answers.ts kindOf).
 */
export type Failure = "timeout" | "failed" | "refused" | "client";

/** At most one replay of a backend's failures of one class starts in this many ms. */
export const REPLAY_EVERY_MS = 1000;
/** How long a verdict stands for later failures of its class from the same source (ms). */
export const VERDICT_MS = 1000;
/** Most failures held under one replay that its verdict counts. */
export const HELD_MAX = 64;
/**
 * How long a verdict, or another source's failure, speaks for a failure
 * that cannot be replayed (a non-idempotent request's) on the same backend
 * and class (ms).
 */
export const UNREPLAYED_MS = 10_000;

/** One class of a backend's failures (timeouts, or answers) under verification. */
class Check {
  /** A replay of one of them runs. */
  verifying = false;
  startedAt = -Infinity;
  /** When the last verdict came, and whether it found the backend guilty. */
  judgedAt = -Infinity;
  guilty = false;
  /** The source of the replayed request's client. */
  source: string | undefined = undefined;
  /** Failures held while the replay runs (from that source). */
  held: Failure[] = [];
  /** The last failure that could not be replayed: its client's source, and when. */
  unreplayed: { source: string | undefined; at: number } | undefined = undefined;
  /**
   * Since when one source's unreplayed timeouts (the last at `at`) found the
   * backend answering nothing: its answers, in time or late, were `answers`.
   */
  quiet: { since: number; at: number; answers: number } | undefined = undefined;
}

/** A request sent again to see whether another backend answers it. */
interface Replay {
  readonly from: Backend;
  readonly failure: Failure;
  readonly check: Check;
  /** The request's method, for the log. */
  readonly method: string;
  /** When it was sent to `from`. */
  readonly sentAt: number;
  /** Its failure was counted already: the replay is for its client, no verdict. */
  readonly counted?: boolean;
}

/**
 * Whether `by`'s result to a request `from` answered with an error that
 * blames the request (BAD_REQUEST, NOT_FOUND, UNKNOWN_METHOD …) makes that
 * error `from`'s fault: only when `from` has answered no request with a
 * result since it joined (a fake answering every task so, or a worker on
 * trial), or `by` is a server and `from` a dial-in worker (which anyone
 * may register). A backend that serves is otherwise not judged by another
 * one's word: hostile43a A7, a strict server refusing what a lenient or
 * lying worker answered, or a method only the workers serve, was out after
 * five such requests of one client, and the worker then had every call.
 */
function mayContradict(by: Backend, from: Backend): boolean {
  return from.lastResultAt <= from.added || (by.kind === "server" && from.kind === "worker");
}

/**
 * Whether `b` is known to answer requests now: it has answered one with a
 * result in time since `since` (while the replayed request waited), and
 * its failures in the window are under {@link MIN_PART} of its outcomes.
 * Only such a backend's timeout on a replay makes a timeout the request's
 * fault (hostile43a A13: fakes that answered once, then held every task,
 * had each other's timeouts replayed on them and cleared each other).
 */
function answersSince(b: Backend, since: number): boolean {
  if (b.lastResultAt < since || b.state !== "up") return false;
  const now = performance.now();
  return b.outcomes.failed(now) < MIN_PART * b.outcomes.total(now);
}

/** What `r`'s backend, on trial, did (for the log; trials.ts words a refused one alike). */
function trialFailure(r: Replay): string {
  const m = r.method.slice(0, 64);
  if (r.failure === "timeout") {
    return `let a trial request ${m} time out that another backend answered`;
  }
  if (r.failure !== "client") return `answered a trial request ${m} ${r.failure}`;
  return `answered a trial request ${m} with an error another backend answered with a result`;
}

export interface VerifyOptions {
  /** `--timeout` (ms). */
  timeoutMs: number;
  /** Told when a counted failure takes a backend out. */
  report: (t: Transition | undefined) => void;
  /** Sends a job once more, to another backend (Dispatcher.replay). @returns false when it may not */
  replay: (job: Job) => boolean;
  /** A job's client's source (the address, or the user: mod.ts). */
  sourceOf?: (flow: object) => string | undefined;
  now?: () => number;
}

/** Decides which failures are replayed, and counts them by their verdicts (see above). */
export class Verifier {
  #options: VerifyOptions;
  /** Per backend: its timeouts' and its answers' checks. */
  #checks = new WeakMap<Backend, [Check, Check]>();
  #replays = new WeakMap<Job, Replay>();
  #now: () => number;

  constructor(options: VerifyOptions) {
    this.#options = options;
    this.#now = options.now ?? (() => performance.now());
  }

  /**
   * `job` failed on `backend` as `failure` says.
   * @returns what it counts as now, or "replayed": sent to another backend,
   * the caller does nothing more with it (its answer comes from there)
   */
  failed(job: Job, backend: Backend, failure: Failure): Outcome | "replayed" {
    const plain = failure === "client" ? "answered" : failure;
    if (failure === "client") erredUntried(backend);
    if (job.attempts > 1) {
      const r = this.#replays.get(job);
      if (r !== undefined) {
        this.#replays.delete(job);
        const first = backend.pool !== undefined && backend.outlier.answeredNone;
        if (failure === "timeout" && r.from !== backend && first) {
          // Joined or back too, and its first request (two fakes back at once): sent on again.
          this.#settle(r, undefined);
          return this.#firstTimedOut(job, backend);
        }
        if (failure === "timeout" && r.from !== backend && !answersSince(backend, r.sentAt)) {
          // Timed out on a backend no better known than the first (hostile43a A13): no verdict,
          // both count as timeouts do.
          this.#settle(r, undefined);
          return plain;
        }
        // A replay failed too: the request's fault, no one's.
        this.#settle(r, r.from === backend ? undefined : false);
        return failure === "client" ? "answered" : "excused";
      }
    }
    if (backend.pool === undefined) return plain;
    if (failure === "timeout" && backend.outlier.answeredNone) {
      return this.#firstTimedOut(job, backend);
    }
    const checks = this.#checksOf(backend);
    const check = checks[failure === "timeout" ? 0 : 1];
    const now = this.#now();
    const flow = job.flow;
    const source = flow === undefined ? undefined : this.#options.sourceOf?.(flow);
    if (!job.idempotent) {
      const judged = unreplayed(check, failure, source, now, backend.served + backend.lateAnswers);
      return judged ?? plain;
    }
    if (check.source === source && (check.verifying || now - check.judgedAt < VERDICT_MS)) {
      if (check.verifying) {
        if (check.held.length < HELD_MAX) check.held.push(failure);
        return "excused";
      }
      if (check.guilty) return failure === "client" ? "contradicted" : failure;
      return failure === "client" ? "answered" : "excused";
    }
    if (check.verifying || now - check.startedAt < REPLAY_EVERY_MS) return plain;
    const method = (job as { method?: string }).method ?? "";
    const r: Replay = { from: backend, failure, check, method, sentAt: job.sentAt };
    this.#replays.set(job, r);
    if (!this.#options.replay(job)) {
      this.#replays.delete(job);
      return plain;
    }
    check.verifying = true;
    check.startedAt = now;
    check.source = source;
    check.held = [];
    return "replayed";
  }

  /**
   * `job`, sent more than once, was answered by `backend`: with a result
   * (`ok`), or an error that says nothing of the first backend.
   */
  answered(job: Job, backend: Backend, ok: boolean): void {
    const r = this.#replays.get(job);
    if (r === undefined) return;
    this.#replays.delete(job);
    if (r.from === backend) return this.#settle(r, undefined);
    const inTime = r.failure !== "timeout" ||
      performance.now() - job.sentAt <= this.#options.timeoutMs / 2;
    this.#settle(r, ok && inTime && (r.failure !== "client" || mayContradict(backend, r.from)));
  }

  /** `job` ends with no verdict: its replay's backend died with it, or it waited too long. */
  ended(job: Job): void {
    const r = this.#replays.get(job);
    if (r === undefined) return;
    this.#replays.delete(job);
    this.#settle(r, undefined);
  }

  /**
   * `job` timed out on `backend`, its first request since it joined (again):
   * counted at once (it is out: outlier.ts), and sent to another backend
   * for its client's sake, whose answer judges nothing, and on again if
   * that one too times it out as its first (hostile43a A13: a fake back
   * from its backoff failed a client request each time, and two back at
   * once took each other's; within `--retries`).
   */
  #firstTimedOut(job: Job, backend: Backend): Outcome | "replayed" {
    this.#count(backend, "timeout", true);
    const r: Replay = {
      from: backend,
      failure: "timeout",
      check: new Check(),
      method: "",
      sentAt: job.sentAt,
      counted: true,
    };
    this.#replays.set(job, r);
    if (this.#options.replay(job)) return "replayed";
    this.#replays.delete(job);
    return "excused";
  }

  #checksOf(backend: Backend): [Check, Check] {
    let c = this.#checks.get(backend);
    if (c === undefined) this.#checks.set(backend, c = [new Check(), new Check()]);
    return c;
  }

  /** The verdict on `r`'s backend (undefined: none), for its failure and those held. */
  #settle(r: Replay, guilty: boolean | undefined): void {
    if (r.counted) return;
    const { check } = r;
    check.verifying = false;
    const held = check.held;
    check.held = [];
    if (guilty !== undefined) {
      check.judgedAt = this.#now();
      check.guilty = guilty;
      if (!guilty) return;
      // On trial, it failed what a proven backend answered (hostile41a W3): no trial for 10 s ….
      if (r.from.untried) failTrial(r.from, trialFailure(r));
    }
    this.#count(r.from, r.failure, guilty === true);
    for (const f of held) this.#count(r.from, f, guilty === true);
  }

  /** Counts a failure against `b` (a client-blaming one only when `guilty`). */
  #count(b: Backend, failure: Failure, guilty: boolean): void {
    if (b.pool === undefined || b.state !== "up") return;
    if (failure === "client" && !guilty) return;
    const { report, timeoutMs } = this.#options;
    if (failure === "timeout") {
      report(b.onTimedOut(timeoutMs));
      b.onAnswered(0, "timeout");
    } else if (failure === "refused") report(b.onAnswered(0, "refused"));
    else report(b.onAnswered(0, failure === "client" ? "contradicted" : "failed"));
  }
}

/**
 * A failure that cannot be replayed (a non-idempotent request's), judged
 * by the last verdict on its backend and class, else by another source's
 * failure there; one source's timeout alone counts only once the backend
 * has answered nothing (`answers`: in time or late) for
 * {@link UNREPLAYED_MS} of them (see the module comment). An error answer
 * ("client") counts while a guilty verdict stands, else not at all.
 * @returns "excused", "contradicted", or undefined: it counts as before
 */
function unreplayed(
  check: Check,
  failure: Failure,
  source: string | undefined,
  now: number,
  answers: number,
): "excused" | "contradicted" | undefined {
  if (failure === "client") {
    // An error answer: counted only while a replay's verdict on its backend stands (hostile41a W3).
    return now - check.judgedAt < UNREPLAYED_MS && check.guilty ? "contradicted" : undefined;
  }
  if (failure !== "timeout" && failure !== "failed") return undefined;
  const last = check.unreplayed;
  check.unreplayed = { source, at: now };
  if (now - check.judgedAt < UNREPLAYED_MS) return check.guilty ? undefined : "excused";
  if (last !== undefined && last.source !== source && now - last.at < UNREPLAYED_MS) {
    return undefined;
  }
  if (failure === "failed") return "excused";
  const quiet = check.quiet;
  if (quiet === undefined || quiet.answers !== answers || now - quiet.at > UNREPLAYED_MS) {
    // It answered something since (a late answer: the request was slow), or this is the first.
    check.quiet = { since: now, at: now, answers };
    return "excused";
  }
  quiet.at = now;
  return now - quiet.since < UNREPLAYED_MS ? "excused" : undefined;
}
