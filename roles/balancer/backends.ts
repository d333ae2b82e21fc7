/**
 * The backend pool and its health rules, as plain data: no sockets here.
 * The links (links.ts) report what they see — a connection made or lost, a
 * health check answered or missed — and the pool decides whether a backend
 * is in or out of rotation.
 *
 * Rules: a backend is in rotation ("up") only while connected. A lost
 * connection (refused, reset, dropped, heartbeat missed) takes it out at
 * once. A backend seen for the first time is up as soon as it connects; one
 * that has been out needs `rise` successes in a row (the reconnect counts as
 * the first, then `sys.ping` checks). While up, `fall` missed checks in a
 * row take it out.
 */
import type { BackendInfo } from "../../clients/contracts/mod.ts";
import { LatencyWindow } from "./latency_window.ts";
import { cut } from "./log.ts";
import { Outlier, SERVER_ERRORS, STRAY_BYTES, STRAYS } from "./outlier.ts";
import { candidate, mayEject, Outcomes } from "./success_rate.ts";
import { TrialBackoff } from "./trial_backoff.ts";
import { SlowMethods } from "./slow_methods.ts";
import { SleepCheck } from "./sleep_check.ts";
import { type Pool, provenUp } from "./pool.ts";

export { LatencyWindow };
export { Pool } from "./pool.ts";

export type BackendKind = "server" | "worker";
export type BackendState = "up" | "down";

/** How a request sent to a backend ended. */
export type Outcome =
  /** The backend answered with a result. */
  | "answered"
  /**
   * It answered an error no rule counts against it (none yet: the request's, unless another
   * backend answers it with a result: verify.ts): alive, and proof of no backend on trial
   * while a proven one is up (hostile41a W3). It counts neither way in its outcomes.
   */
  | "erred"
  /** The backend answered a server failure: INTERNAL, its own or a code outside the protocol's. */
  | "failed"
  /** The backend answered that it could not serve: UNAVAILABLE or OVERLOADED. */
  | "refused"
  /** The connection died after the request was sent. */
  | "lost"
  /** No answer within the backend timeout (the request may still run). */
  | "timeout"
  /** An error answer ("erred") another backend answered with a result: counts as "failed". */
  | "contradicted"
  /** A failure that counts against nobody (yet): the request's fault, or one under verify.ts's replay. */
  | "excused";

/**
 * Changes of any backend's state in this process, so that a pool counts the
 * backends in rotation again only after one (Pool.healthy).
 */
export let stateChanges = 0;

/** Why a backend changed state, for the log and `balancer.backends`. */
export interface Transition {
  backend: Backend;
  to: BackendState;
  reason: string;
}

export interface HealthRules {
  /** Successes in a row that bring an out backend back. */
  rise: number;
  /** Missed checks in a row that take an up backend out. */
  fall: number;
}

/** One backend: a server the balancer dials, or a worker that dialed in. */
export class Backend {
  readonly kind: BackendKind;
  /** "host:port" of a server; the remote address of a worker. */
  readonly address: string;
  /** Shown in lists and logs: the address, or the name a worker registered. */
  name: string;
  /** The name the process at the other end gave in the handshake. */
  peerName = "";
  /** What made it a backend: "backends", "service NAME", "worker port". */
  source = "backends";
  /** Who registered it in the binders, when they say (sources.ts; policies.ts tries in turn). */
  registrant = "";
  /** Most requests in flight at once (`--max-inflight`, or a worker's capacity). */
  capacity: number;
  state: BackendState = "down";
  connected = false;
  inflight = 0;
  /**
   * Its connection holds more unwritten requests than its high-water mark:
   * it takes no more until they drain (relay.ts), so what waits for a slow
   * backend waits in the fair queue, and the connection is never cut off
   * as a slow consumer by our own requests.
   */
  backlogged = false;
  /** When its last request in flight ended (performance.now() ms; the dispatcher's clock). */
  idleSince = -Infinity;
  /** Requests answered: with a result, or an error that is not a failure once it is proven ("erred"). */
  served = 0;
  /** Answers it brought past --timeout, to requests already failed (verify.ts: it is alive). */
  lateAnswers = 0;
  /** When it last brought such an answer (performance.now() ms; worker_sources.ts: alive). */
  lateAt = -Infinity;
  /**
   * When it last answered in time (late answers do not count; when added, before its first): with
   * a result or error (workers.ts: does a worker out of rotation keep its name), with a result (trials.ts).
   */
  lastAnswerAt = performance.now();
  lastResultAt = this.lastAnswerAt;
  /** Methods it answered in time, and until when it may still run one it timed out (K-A1). */
  readonly slow = new SlowMethods();
  /** Whether it runs `sleep` as asked (sleep_check.ts): a server so may witness (R3). */
  readonly sleeps = new SleepCheck();
  /** Its failed trials, and until when it has no other (trials.ts). */
  readonly trial = new TrialBackoff();
  /** Requests lost with the connection, timed out, or answered INTERNAL, UNAVAILABLE or OVERLOADED. */
  failures = 0;
  /** Health checks missed, all time. */
  checksFailed = 0;
  /** Answers to requests it was never sent, all time, and their bytes (see onStray). */
  strays = 0;
  strayBytes = 0;
  /** When it was made: joined its pool (performance.now() ms; policies.ts trial order). */
  readonly added = performance.now();
  /** When the state last changed, and when it last came into rotation (performance.now()). */
  since = performance.now();
  upAt = -Infinity;
  /** A worker's: its name's registrations that ended young (churn.ts), and why it is held out. */
  churn = 0;
  held = "";
  /** Why it is in its state. */
  reason = "not connected yet";
  readonly latency = new LatencyWindow();
  /** Slow start, timeouts over a window, backoff (outlier.ts). */
  readonly outlier: Outlier;
  /** Its answers and failures over a window, judged against the others' (success_rate.ts). */
  readonly outcomes = new Outcomes();
  /** Out for its answers (timeouts, failures), until it is back up: they count against a cap. */
  ejected = false;
  /** The pool it is in (set by Pool.add): the others it is judged against. */
  pool: Pool | undefined;
  /** The socket side's handle (links.ts); the core never looks inside. */
  link: unknown;

  #rules: HealthRules;
  #everUp = false;
  #successes = 0;
  #misses = 0;
  /** Requests timed out in a row (layer-7 observation, as HAProxy's observe). */
  #timeouts = 0;
  /** Requests answered INTERNAL in a row. */
  #serverErrors = 0;
  /** Answers to requests never sent on its present connection, and their bytes. */
  #strays = 0;
  #strayBytes = 0;

  constructor(
    kind: BackendKind,
    address: string,
    options: { capacity: number; rules: HealthRules; outlier?: Outlier },
  ) {
    this.outlier = options.outlier ?? new Outlier();
    this.kind = kind;
    this.address = address;
    this.name = address;
    this.capacity = options.capacity;
    this.#rules = options.rules;
  }

  /**
   * In rotation with a free slot: a policy may pick it. One untried (see
   * {@link untried}) takes one request at a time.
   */
  get available(): boolean {
    return this.state === "up" && this.inflight < this.capacity &&
      this.inflight < this.outlier.ramp && !this.backlogged &&
      (this.served > 0 || this.#trialFree);
  }

  /**
   * Untried, it may take a request: none within its trial backoff
   * (trials.ts); in a guarded pool one at a time and none once one failed;
   * a worker one at a time.
   */
  get #trialFree(): boolean {
    if (this.trial.waiting) return false;
    if (this.pool?.guarded === true) return this.inflight === 0 && this.failures === 0;
    return this.kind !== "worker" || this.inflight === 0;
  }

  /**
   * It answered no request since it was added, and it is guarded: its pool
   * is (policies.ts: trials), or it is a worker, which anyone who may
   * register can be (hostile39a P1: eight fakes that answer checks and no
   * task each held one of a client's eight requests for `--timeout`).
   */
  get untried(): boolean {
    return this.served === 0 && this.#guarded;
  }

  /**
   * How far back its trial comes among untried backends (policies.ts
   * `nextTrial`): its failed trials, or its source's or its network's past
   * their free ones if more (trial_backoff.ts).
   */
  get trialRank(): number {
    return this.trial.rank;
  }

  get #guarded(): boolean {
    return this.kind === "worker" || this.pool?.guarded === true;
  }

  /**
   * Failures among its last outcomes, counted as requests in flight by
   * least-loaded and p2c; one more while untried (never an idle pick: runs.ts).
   */
  get penalty(): number {
    const p = this.outcomes.penalty;
    return this.untried ? p + 1 : p;
  }

  /** A server that runs `sleep` as asked: a witness against others (success_rate.ts; R3). */
  get witness(): boolean {
    return this.kind === "server" && this.sleeps.proven;
  }

  /** A connection is up. @returns the transition, if any. */
  onConnected(): Transition | undefined {
    this.connected = true;
    this.#misses = 0;
    this.#strays = this.#strayBytes = 0;
    if (!this.#everUp) {
      // A worker back under its name while its backoff runs (sources.ts) stays out until then.
      const wait = this.outlier.outUntil - performance.now();
      if (wait <= 0) return this.#to("up", "connected");
      this.#everUp = true;
      const why = this.held || "back within its backoff";
      return this.#to("down", `${why}: out for ${Math.ceil(wait / 1000)} s more`);
    }
    return this.#success("reconnected");
  }

  /** The connection is gone (refused, reset, closed, heartbeat missed): out at once. */
  onLost(reason: string): Transition | undefined {
    this.connected = false;
    this.#successes = 0;
    return this.state === "down" ? undefined : this.#to("down", reason);
  }

  /** A health check answered. */
  onCheckPassed(): Transition | undefined {
    this.#misses = 0;
    return this.connected ? this.#success("health checks pass") : undefined;
  }

  /** A health check missed (no answer in time, or an error). */
  onCheckFailed(reason: string): Transition | undefined {
    this.checksFailed++;
    this.#successes = 0;
    if (this.state !== "up") return undefined;
    if (++this.#misses < this.#rules.fall) return undefined;
    return this.#to("down", `${this.#misses} health checks missed (${reason})`);
  }

  /**
   * One request ended here after `ms`, at `now`, as `outcome` says. A
   * server failure ("failed") counts as a timeout does (Envoy's
   * `consecutive_5xx` and failure percentage): {@link SERVER_ERRORS} in a
   * row, or as many over the window that are a large enough part of its
   * outcomes there (outlier.ts; one success between failures does not
   * clear them), take the backend out with the timeouts' backoff when its
   * failures are well above the other backends' (success_rate.ts: a
   * request that fails everywhere alike condemns none), at most a part of
   * the pool at once, the last one up staying (without a pool: while
   * `othersUp()`). "refused" answers (UNAVAILABLE, OVERLOADED) count only
   * in that comparison. A failure neither ramps a slow start nor counts in
   * the latencies; an error no rule counts ("erred") counts in neither
   * those nor its outcomes, and does not start the row again.
   * @returns the transition, if any
   */
  onAnswered(
    ms: number,
    outcome: Outcome,
    now = performance.now(),
    othersUp: () => boolean = () => true,
  ): Transition | undefined {
    if (outcome === "excused") return undefined;
    if (outcome === "lost" || outcome === "timeout") {
      // A timeout was counted in the window by onTimedOut, before this.
      this.failures++;
      return undefined;
    }
    this.lastAnswerAt = now;
    this.#timeouts = 0;
    if (outcome === "erred") {
      // Alive, but no proof while a proven backend is up; a lone worker's errors prove it.
      if (this.untried && provenUp(this.pool)) return undefined;
      this.served++;
      this.outlier.answered(now, this.capacity);
      return undefined;
    }
    if (outcome === "failed" || outcome === "contradicted") {
      return this.#failed(
        now,
        othersUp,
        outcome === "failed" ? "INTERNAL" : "errors others did not",
      );
    }
    if (outcome === "refused") {
      this.failures++;
      this.outcomes.add(now, true);
      if (!candidate(this, now)) return undefined;
      const n = this.outcomes.failed(now);
      const why = `${n} of its last ${this.outcomes.total(now)} requests failed`;
      return this.#eject(now, why, othersUp, true);
    }
    this.outcomes.add(now, false);
    this.served++;
    this.#serverErrors = 0;
    this.latency.add(ms);
    this.outlier.answered(now, this.capacity);
    return undefined;
  }

  #failed(now: number, othersUp: () => boolean, what: string): Transition | undefined {
    this.failures++;
    this.outcomes.add(now, true);
    const n = ++this.#serverErrors;
    const windowed = this.outlier.failed(now, SERVER_ERRORS);
    const why = n >= SERVER_ERRORS ? `${n} requests in a row answered ${what}` : windowed;
    if (why === undefined) return undefined;
    const t = this.#eject(now, why, othersUp);
    if (t !== undefined) this.#serverErrors = 0;
    return t;
  }

  /**
   * Takes it out for its answers when it is up and fails well above the
   * others (success_rate.ts mayEject; `peers`: two others with enough
   * outcomes to compare are needed), with the outlier backoff.
   */
  #eject(now: number, why: string, othersUp: () => boolean, peers = false) {
    if (this.state !== "up") return undefined;
    const pool = this.pool;
    if (
      pool === undefined ? !othersUp() : mayEject(this, pool.list, now, { peers }) !== undefined
    ) {
      return undefined;
    }
    this.ejected = true;
    this.outcomes.clear();
    const out = this.outlier.ejected(now);
    return this.#to("down", `${why}; out for ${out / 1000} s at least`);
  }

  /**
   * A request got no answer within the timeout: `fall` in a row take the
   * backend out, as missed checks do (one that answers health checks but
   * never requests would otherwise stay in rotation for good), and so do
   * timeouts over a window or one before any answer (outlier.ts); checks
   * bring it back after `rise`, once its backoff has passed.
   */
  onTimedOut(timeoutMs: number): Transition | undefined {
    const now = performance.now();
    this.outcomes.add(now, true);
    const n = ++this.#timeouts;
    const windowed = this.outlier.timedOut(now, this.#rules.fall);
    const why = n >= this.#rules.fall ? `${n} requests in a row got no answer` : windowed;
    if (why === undefined) return undefined;
    const t = this.#eject(now, `${why} within ${timeoutMs} ms`, () => true);
    if (t !== undefined) this.#timeouts = 0;
    return t;
  }

  /**
   * Its connection brought an answer of `bytes` to no request of ours (an
   * id never sent, or one answered already; a late answer to a request
   * that timed out is not one): a protocol error of the backend's, read and
   * dropped for nothing (hostile34 Z12: two workers writing unsolicited
   * 1 MB answers raised every client's p99 10×). At {@link STRAYS} on one
   * connection, or {@link STRAY_BYTES} of them, it is out with the
   * timeouts' backoff, whatever else is up, and the caller closes the
   * connection, as the wire does after malformed messages.
   * @returns the transition then (to "down" even if it was already)
   */
  onStray(bytes: number): Transition | undefined {
    this.strays++;
    this.strayBytes += bytes;
    const n = ++this.#strays;
    const total = this.#strayBytes += bytes;
    if (n < STRAYS && total < STRAY_BYTES) return undefined;
    const out = this.outlier.ejected(performance.now());
    const what = n === 1 ? "an answer" : `${n} answers`;
    return this.#to(
      "down",
      `${what} to requests never sent (${total} bytes); connection closed, ` +
        `out for ${out / 1000} s at least`,
    );
  }

  #success(reason: string): Transition | undefined {
    if (this.state === "up" || performance.now() < this.outlier.outUntil) return undefined;
    if (++this.#successes < this.#rules.rise) return undefined;
    return this.#to("up", reason);
  }

  #to(state: BackendState, why: string): Transition {
    // Shown in lists and logs; the text may come from the backend.
    const reason = cut(why);
    this.state = state;
    stateChanges++;
    this.reason = reason;
    this.since = performance.now();
    this.#successes = 0;
    this.#misses = 0;
    if (state === "up") {
      this.upAt = this.since;
      this.ejected = false;
      // Slow start for a worker, and for any backend back after being out.
      if (this.#everUp || this.kind === "worker") this.outlier.joined();
      this.#everUp = true;
    }
    return { backend: this, to: state, reason };
  }

  /** What `balancer.backends` shows. */
  describe(): BackendInfo {
    return {
      name: this.name,
      address: this.address,
      peer: this.peerName,
      kind: this.kind,
      source: this.source,
      state: this.state,
      reason: this.reason,
      since_ms: Math.round(performance.now() - this.since),
      inflight: this.inflight,
      capacity: this.capacity,
      served: this.served,
      failures: this.failures,
      checks_failed: this.checksFailed,
      latency_ms: this.latency.percentiles(),
    };
  }
}
