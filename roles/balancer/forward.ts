/**
 * Forwarding as plain data: which backend takes a request, what waits in
 * the queue and for how long, and what happens when a backend dies with a
 * request on it (retry elsewhere, within `retries` and the retry budget,
 * unless the request is marked non-idempotent). The socket side (mod.ts,
 * links.ts) sends and reports outcomes through {@link DispatchHooks}.
 */
import { DistError } from "../../wire/mod.ts";
import type { Backend, Outcome, Pool } from "./backends.ts";
import type { DispatchHooks, DispatchOptions, DispatchStats, Job } from "./dispatch_types.ts";
import { newDispatchStats, waitedTooLong } from "./dispatch_types.ts";
import { FreeResends, steadyBackend, unsteadyWorker } from "./redispatch.ts";
import { fitFor } from "./fitting.ts";
import type { Policy } from "./policies.ts";
import { FairQueue, STALLED_STEPS } from "./queue.ts";
import { RetryLine } from "./retry_line.ts";
import { RetryBudget } from "./retry_budget.ts";
import { Runs } from "./runs.ts";
import { turnMs } from "../../wire/turn.ts";
import { sharedError as refusal } from "../../wire/shared_error.ts";
import { Admit, MAX_EARNED, Shares } from "./shares.ts";
import { holdsLittle } from "./slots.ts";

export { type Outcome, RetryBudget };
export type { DispatchHooks, DispatchOptions, DispatchStats, Job };

/** What an abandoned job is failed with (nobody reads it). */
const GONE = new DistError("UNAVAILABLE", "The client's connection closed");

/**
 * Sends requests to backends picked by the policy, queues what no backend
 * can take, and fails over. A request goes straight to a backend only when
 * nothing waits; waiting requests are served a client at a time, in turn
 * (see FairQueue), and a full queue sheds the requests of the client that
 * holds the most; retries wait in their own line, served first.
 */
export class Dispatcher<J extends Job> {
  readonly stats: DispatchStats = newDispatchStats();
  #pool: Pool;
  #policy: Policy;
  #hooks: DispatchHooks<J>;
  #options: DispatchOptions;
  #now: () => number;
  #queue: FairQueue<J>;
  #shares: Shares;
  /** Requests the queue sheds to make room (reused: one array, not one per request). */
  #shed: J[] = [];
  /** The last walk of the fair queue found no flow able to send, and no pump came since (submit). */
  #stalled = false;
  /** Whether that walk refused a flow for the bulk flows' allowance alone (which sends may earn). */
  #stalledOnBulk = false;
  /** Retried requests waiting for a backend (retry_line.ts). */
  #retryQueue = new RetryLine<J, Backend>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerAt = Infinity;
  #closed: DistError | undefined;
  /** Sends of each request lost on a backend not steady yet that were not counted (redispatch.ts). */
  #free = new FreeResends();
  /** Picks backends for the policy, a client's batch at a time (runs.ts). */
  #runs: Runs;
  /** Whether a backend other than the one asking is up (the last one up is never taken out). */
  #othersUp = (): boolean => this.#pool.healthy > 1;
  /** With --metrics: each answered request's time through the balancer (seconds). */
  latency: { observe(seconds: number): void } | undefined;

  constructor(pool: Pool, policy: Policy, hooks: DispatchHooks<J>, options: DispatchOptions) {
    this.#pool = pool;
    this.#policy = policy;
    this.#hooks = hooks;
    this.#options = options;
    // The dispatchers' clock: performance.now() read once per turn (see wire/turn.ts).
    this.#now = options.now ?? turnMs;
    this.#runs = new Runs(pool, policy, this.#now, (b) => this.#shares.young(b));
    this.#queue = new FairQueue(options.queueLimit, options.queueBytes);
    this.#shares = new Shares({
      contended: options.contendedShare,
      now: this.#now,
      waiting: (key) => this.#queue.waiting(key),
      wake: () => this.pump(),
      // A source got answers back: as many of its (and its network's) parked flows may send.
      freed: (source, n) => {
        if (this.#queue.parkedGroups === 0) return;
        this.#queue.unpark(source, n);
        if (source.net !== undefined) this.#queue.unpark(source.net, n);
      },
      sourceOf: options.sourceOf,
      unread: options.unread,
      backends: () => pool.healthy,
      capacity: () => pool.slots(this.#now()),
    });
  }

  /** Client connections active now (a request within the last second). */
  get activeClients(): number {
    return this.#shares.active;
  }

  /** Requests waiting for a backend. */
  get queued(): number {
    return this.#queue.length + this.#retryQueue.length;
  }

  /** Bytes of the requests waiting for a backend (as `sizeOf` counts them). */
  get queuedBytes(): number {
    return this.#queue.bytes + this.#retryQueue.bytes;
  }

  /** Client connections with requests waiting. */
  get queuedClients(): number {
    return this.#queue.flows;
  }

  get policy(): Policy {
    return this.#policy;
  }

  /** Takes a new request: sends it, queues it, or answers OVERLOADED. */
  submit(job: J): void {
    this.stats.requests++;
    if (this.#closed) return this.#hooks.reject(job, this.#closed);
    this.#options.budget.deposit();
    const share = job.share = this.#shares.of(job.flow);
    const bytes = job.bytes = this.#hooks.sizeOf(job, MAX_EARNED);
    // When it was taken, from clock reads made anyway: its sending, or its queueing.
    if (
      this.#shares.mayTake(share, bytes, this.#queue.ahead(job.flow, this.#retryQueue.length)) &&
      !this.#hooks.held?.(job) && this.#dispatch(job, undefined)
    ) {
      share.lastAt = job.takenAt = job.sentAt;
      // Sent past others' requests: what it earned bulk flows may let one of theirs go now.
      if (
        this.#queue.length > 0 && (!this.#stalled || this.#stalledOnBulk) && this.#shares.bulkDue()
      ) this.#pumpQueue(this.#queue);
      return;
    }
    const { queueLimit, queueBytes } = this.#options;
    job.queuedBytes = queueLimit > 0 ? this.#hooks.sizeOf(job, queueBytes) : 0;
    share.lastAt = job.takenAt = this.#now();
    job.deadline = job.takenAt + this.#options.queueTimeoutMs;
    const refused = this.#queue.push(job, this.#shed);
    if (refused === undefined) this.#shares.queued(share, 1);
    if (this.#shed.length > 0) {
      const shed = this.#shed.splice(0);
      for (const j of shed) this.#unqueued(j);
      this.stats.overloaded += shed.length;
      const err = refusal(
        "OVERLOADED",
        "Balancer queue is full, and this connection had the most requests waiting",
      );
      for (const j of shed) this.#hooks.reject(j, err);
    }
    if (refused !== undefined) {
      job.queuedBytes = 0;
      this.stats.overloaded++;
      const full = refused === "bytes"
        ? `${this.#queue.bytes} bytes of requests waiting, at most ${queueBytes}`
        : `${queueLimit} requests waiting`;
      this.#hooks.reject(job, refusal("OVERLOADED", `Balancer queue is full (${full})`));
      return;
    }
    this.#arm(job.deadline);
    this.#sweep();
    // Waiting only for its connection's share (backends may have room): its turn may be now.
    if (this.#retryQueue.length > 0) return;
    if (!this.#stalled) return void this.#pumpQueue(this.#queue);
    if (job.line!.items.length === 1) this.#alone(job);
    // A few steps of the walk all the same: the heads of closed connections are dropped.
    this.#pumpQueue(this.#queue, STALLED_STEPS);
  }

  /**
   * Sends `job`, its connection's only one waiting, if it may go: a walk
   * would pass every other flow (see #stalled) and come to it. Walking them
   * all at each request was a third of the balancer's time (hostile42a Y4).
   */
  #alone(job: J): void {
    if (this.#hooks.abandoned?.(job) || this.#hooks.held?.(job)) return;
    const admit = this.#shares.admit(job.share!, 1, job.bytes ?? 0);
    if (admit === Admit.No || !this.#dispatch(job, undefined, admit === Admit.Bulk)) return;
    this.#queue.takeAlone(job);
    this.#unqueued(job);
    job.queuedBytes = 0;
  }

  /**
   * The backend of `job` is done with it: frees its slot and, when the
   * connection died with the request on it, fails over or says why not.
   */
  finish(job: J, outcome: Outcome): void {
    const backend = job.backend!;
    const now = this.#now();
    if (--backend.inflight === 0) backend.idleSince = now;
    if (job.share !== undefined) this.#shares.gave(job.share, job.bulk === true, now, job);
    const t = backend.onAnswered(now - job.sentAt, outcome, now, this.#othersUp);
    if (t !== undefined) this.#hooks.report?.(t);
    if (outcome !== "lost" && outcome !== "timeout" && outcome !== "excused") {
      this.latency?.observe((now - job.takenAt) / 1000);
    }
    if (outcome === "lost") this.#failover(job, backend);
    this.pump(false);
  }

  /**
   * Sends `job`, which its backend answered with a failure, once more to
   * another backend to see whether it fails there too (verify.ts): its slot
   * is freed and its outcome counted by nobody here. A retry: within
   * `retries` and the retry budget, idempotent only.
   * @returns false, having done nothing, when it may not go or no other backend has room
   */
  replay(job: J): boolean {
    const from = job.backend!;
    if (!job.idempotent || job.attempts > this.#options.retries) return false;
    if (!this.#pool.list.some((b) => b !== from && b.available)) return false;
    if (!this.#options.budget.withdraw()) return false;
    this.stats.replays++;
    this.#sendAgain(job, from);
    return true;
  }

  /**
   * Sends `job`, held by an untried backend past its trial's bound
   * (trials.ts), to another backend: its slot there is freed and counted by
   * nobody (the backend is judged by the other's answer). Not a retry of
   * the client's: its trial was the balancer's choice.
   * @returns false, having done nothing, for a non-idempotent request
   */
  resend(job: J): boolean {
    if (!job.idempotent) return false;
    this.#sendAgain(job, job.backend!);
    return true;
  }

  #sendAgain(job: J, from: Backend): void {
    const now = this.#now();
    if (--from.inflight === 0) from.idleSince = now;
    if (job.share !== undefined) this.#shares.gave(job.share, job.bulk === true, now, job);
    if (!this.#dispatch(job, from)) this.#requeue(job, from);
  }

  /**
   * Sends waiting requests while backends have room (after a slot frees or a backend comes up).
   * A few parked flows try again (`tend`); at an answer (`any` false) only of sources holding
   * little (the heavy went at another client's pace: 190–250 µs a call of it, not 70–120).
   */
  pump(any = true): void {
    this.#stalled = false;
    if (this.#retryQueue.length > 0 && !this.#pumpQueue(this.#retryQueue)) return;
    if (this.#queue.length === 0) return;
    if (this.#queue.parkedGroups > 0) {
      this.#sweep(this.#shares.inflight === 0 ? "all" : any ? "any" : holdsLittle);
    }
    this.#pumpQueue(this.#queue);
  }

  /**
   * Sends the jobs of `queue` in turn, looking at `steps` heads at most (those of a stalled
   * queue: see #stalled). @returns false when a job found no backend.
   */
  #pumpQueue(queue: RetryLine<J, Backend> | FairQueue<J>, steps = Infinity): boolean {
    const abandoned = this.#hooks.abandoned;
    // Flows passed in a row for want of their share: once all were, none can go.
    let passed = 0, unfit = 0;
    const bulkRefused = this.#shares.bulkRefused;
    const stalled = this.#stalled;
    let sent = false;
    for (let job = queue.peek(); job !== undefined; job = queue.peek()) {
      if (--steps < 0) {
        this.#stalled = stalled && !sent;
        return true;
      }
      if (abandoned !== undefined && abandoned(job)) {
        queue.shift();
        if (queue !== this.#retryQueue) this.#unqueued(job);
        job.queuedBytes = 0;
        this.stats.abandoned++;
        this.#hooks.reject(job, GONE);
        continue;
      }
      let bulk = false;
      if (queue instanceof FairQueue) {
        this.#stalled = false;
        const held = this.#hooks.held?.(job) === true;
        const admit = held
          ? Admit.No
          : this.#shares.admit(job.share!, job.line!.items.length, job.bytes ?? 0);
        if (admit === Admit.No) {
          // Refused for its source: parked until something of its source changes.
          const group = held ? undefined : this.#shares.refusedFor;
          if (group !== undefined) {
            queue.park(group);
            continue;
          }
          if (++passed > queue.turning) {
            this.#stalled = true;
            this.#stalledOnBulk = this.#shares.bulkRefused !== bulkRefused;
            return this.#shares.stalled();
          }
          queue.pass();
          continue;
        }
        bulk = admit === Admit.Bulk;
      }
      passed = 0;
      if (!this.#dispatch(job, this.#retryQueue.avoid(job), bulk)) {
        // None of the backends it may go to has room: the other flows' turn, once each.
        if (job.only !== undefined && queue instanceof FairQueue && ++unfit <= queue.turning) {
          queue.pass();
          continue;
        }
        this.#stalled = queue instanceof FairQueue;
        this.#stalledOnBulk = true;
        return false;
      }
      queue.shift();
      sent = true;
      if (queue instanceof RetryLine) continue;
      this.#unqueued(job);
      job.queuedBytes = 0;
      // Its source sends again: one more of its parked flows may (in turn).
      const source = job.share?.source;
      if (source !== undefined && queue.parkedGroups > 0) queue.unpark(source, 1);
    }
    // Every flow left parked: they wait for answers, or for the wake (see `stalled`).
    if (queue instanceof FairQueue && queue.length > 0) this.#shares.stalled();
    return true;
  }

  /** Drops what closed connections left in parked flows, and unparks `back` of them (queue.ts tend). */
  #sweep(back: "all" | "any" | ((group: object) => boolean) = () => false): void {
    if (this.#queue.parkedGroups === 0) return;
    this.#queue.tend(this.#hooks.abandoned ?? (() => false), this.#shed, back);
    for (const job of this.#shed.splice(0)) {
      this.#unqueued(job);
      job.queuedBytes = 0;
      this.stats.abandoned++;
      this.#hooks.reject(job, GONE);
    }
  }

  /** Fails everything waiting with `err`, and every later request too. */
  close(err: DistError): void {
    this.#closed = err;
    clearTimeout(this.#timer);
    this.#shares.stop();
    const waiting = this.#queue.drain();
    for (const job of waiting) this.#unqueued(job);
    for (const job of [...this.#retryQueue.drain(), ...waiting]) {
      job.queuedBytes = 0;
      this.#hooks.reject(job, err);
    }
  }

  /** `job` left the queue of new requests (sent, expired, shed or dropped). */
  #unqueued(job: J): void {
    if (job.share !== undefined) this.#shares.queued(job.share, -1);
  }

  #failover(job: J, backend: Backend): void {
    const { retries, budget } = this.#options;
    let why = "it may have run, and it is marked non-idempotent, so it was not sent again";
    if (job.idempotent) why = `tried ${job.attempts} times (--retries ${retries})`;
    // Lost on a backend not steady yet (a flapping worker): not an attempt, sent to a steady one.
    const now = this.#now();
    const free = job.idempotent && unsteadyWorker(backend, now) && this.#free.take(job);
    if (free) job.attempts--;
    const to = free ? steadyBackend(this.#pool.list, backend, now) : undefined;
    if (job.idempotent && job.attempts <= retries) {
      // To a steady backend with room it hammers nobody: not from the budget either.
      if (to !== undefined || budget.withdraw()) {
        this.stats.retries++;
        if (!this.#dispatch(job, backend, false, to)) this.#requeue(job, backend);
        return;
      }
      why = "retry budget spent";
    }
    this.stats.lost++;
    const err = `Backend ${backend.name} failed with the request: ${why}`;
    this.#hooks.reject(job, new DistError("UNAVAILABLE", err));
  }

  /** Puts `job`, sent again, in the retries' line (no backend other than `backend` has room now). */
  #requeue(job: J, backend: Backend): void {
    job.deadline = this.#now() + this.#options.queueTimeoutMs;
    // Retries count against the budget, but are never refused for it (retry_line.ts).
    job.queuedBytes = this.#hooks.sizeOf(job, Infinity);
    this.#retryQueue.add(job, backend);
    this.#arm(job.deadline);
  }

  /** Sends `job` to `to`, else a backend the policy picks. @returns false when none can take it. */
  #dispatch(job: J, avoid: Backend | undefined, bulk = false, to?: Backend): boolean {
    // A link that turns out to be down takes its backend out of rotation, so
    // each pass picks another; the bound only guards against a broken link.
    for (let tries = this.#pool.list.length; tries >= 0; tries--, to = undefined) {
      let backend = to ?? this.#runs.pick(job.flow, avoid, job.idempotent);
      if (backend === undefined) return false;
      // Small ones not behind a large request on its connection; large ones off one backend (shares.ts).
      const pacing = this.#shares.pacing;
      if (pacing.paced > 0 || pacing.bound.spreading) {
        backend = pacing.place(backend, job, this.#pool.list, avoid);
      }
      // One only some backends take (MessagePack params too large as JSON) goes to one of them.
      backend = fitFor(job, this.#shares.unstuck(backend, this.#pool.list, avoid), this.#pool.list);
      if (backend === undefined) return false;
      backend.inflight++;
      job.backend = backend;
      job.attempts++;
      job.sentAt = this.#now();
      const share = job.share;
      if (share !== undefined) {
        job.bulk = bulk;
        this.#shares.took(share, bulk, job.bytes ?? 0, backend);
      }
      if (this.#hooks.send(job, backend)) return true;
      if (share !== undefined) this.#shares.gave(share, bulk, -Infinity, job);
      backend.inflight--;
      job.attempts--;
    }
    return false;
  }

  /** One timer, for the earliest deadline of the two lines' heads. */
  #arm(at: number): void {
    if (at >= this.#timerAt) return;
    clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = setTimeout(() => this.#expire(), Math.max(0, at - this.#now()));
  }

  #expire(): void {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    const now = this.#now();
    const retries = this.#retryQueue;
    const expired: J[] = [];
    retries.expire(now + 1, expired);
    const retried = expired.length;
    this.#queue.expire(now + 1, expired);
    for (let i = retried; i < expired.length; i++) this.#unqueued(expired[i]);
    // Failing them lets their clients send more: only once the lines are settled.
    if (expired.length > 0) {
      this.stats.expired += expired.length;
      const err = waitedTooLong(this.#pool.healthy, this.#options.queueTimeoutMs);
      for (const job of expired) this.#hooks.reject(job, err);
    }
    const head = retries.peek();
    if (head !== undefined) this.#arm(head.deadline);
    this.#arm(this.#queue.nextDeadline);
  }
}
