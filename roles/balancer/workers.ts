/**
 * Workers that dial the worker port and call `worker.register {name,
 * capacity}`: one backend per connection (see {@link WorkerRegistry}).
 */
import { DistError, type Peer } from "../../wire/mod.ts";
import type { WorkerRegistration } from "../../clients/contracts/mod.ts";
import { Backend } from "./backends.ts";
import { BACKOFF_MS, Outlier, REMEMBER_MAX, REMEMBER_MS } from "./outlier.ts";
import { Churn, CHURN_YOUNG_MS } from "./churn.ts";
import { WorkerLink } from "./links.ts";
import { workerLines } from "./log.ts";
import { StrayBench } from "./stray_bench.ts";
import { idle, WorkerSources } from "./worker_sources.ts";
import { clientSource } from "../../auth/mod.ts";
import type { SourceOptions } from "./sources.ts";

/**
 * Workers registered on the worker port, one backend per connection, one
 * connection per name. A second registration under a name whose worker is
 * live (its connection open, and it keeps its name: {@link keepsName}) is
 * refused with BAD_REQUEST, so two workers given the same `--name` do not
 * evict each other for ever: the second keeps retrying (with its backoff)
 * and takes the name over once the first is gone. A holder that does not
 * keep its name (out for missed health checks: a dead connection not
 * noticed yet; or silent while out for its answers or on a failed trial)
 * has its connection closed, and the newcomer takes over. A worker that has
 * answered no task is on trial (trials.ts); nothing here closes it for that.
 */
export class WorkerRegistry {
  #options: SourceOptions;
  #byPeer = new Map<Peer, Backend>();
  #byName = new Map<string, Peer>();
  /** The backoff of workers that left backed off, by name, and when they left (outlier.ts). */
  #gone = new Map<string, { outlier: Outlier; at: number; source: string }>();
  /** Sources whose worker was closed for answers to requests never sent (stray_bench.ts). */
  readonly #bench = new StrayBench();
  /** Its workers by source: their failed trials, and the slots their untried ones hold. */
  readonly #sources = new WorkerSources();
  /** Registrations that ended young, by name and source: a name that flaps is held out (churn.ts). */
  readonly #churn = new Churn();

  constructor(options: SourceOptions) {
    this.#options = options;
  }

  get size(): number {
    return this.#byPeer.size;
  }

  /**
   * `worker.register {name, capacity}` on `peer`'s connection.
   * @throws {DistError} BAD_REQUEST for bad params, a second registration on
   * one connection, or a name a live worker holds
   */
  register(reg: WorkerRegistration, peer: Peer): { registered: string; capacity: number } {
    const { name } = reg;
    const o = this.#options;
    // A worker's own word is no reason to hold more than a server may.
    const capacity = Math.min(reg.capacity ?? 1, o.maxInflight);
    if (this.#byPeer.has(peer)) {
      throw new DistError("BAD_REQUEST", `Already registered as ${this.#byPeer.get(peer)!.name}`);
    }
    // A source whose worker was closed for stray answers waits before registering again (stray_bench.ts).
    const source = sourceOf(peer);
    const benched = this.#bench.refusal(source);
    if (benched !== undefined) {
      workerLines.warn("Worker {name} from {addr} refused: {why}", {
        name,
        addr: peer.conn.remoteAddress,
        why: benched.message,
      });
      throw benched;
    }
    const holder = this.#byName.get(name);
    const max = o.maxWorkers ?? Infinity;
    if (holder === undefined && this.#byPeer.size >= max && !this.#displace(source, max, name)) {
      workerLines.warn(
        "Worker {name} from {addr} refused: {max} workers registered (--max-workers)",
        {
          name,
          addr: peer.conn.remoteAddress,
          max,
        },
      );
      throw new DistError(
        "OVERLOADED",
        `This balancer takes at most ${max} workers (--max-workers), and has them all`,
      );
    }
    if (holder !== undefined) {
      const held = this.#byPeer.get(holder)!;
      const user = holder.identity?.user;
      if (holder.canCall && user !== peer.identity?.user) {
        // Whatever its state: a name is its user's while its connection lasts
        // (any client can make a worker look down, with slow requests).
        workerLines.warn("Worker {name} from {addr} refused: the name is held by user {user}", {
          name,
          addr: peer.conn.remoteAddress,
          user,
        });
        throw new DistError("BAD_REQUEST", `Worker name ${name} is held by another user's worker`);
      }
      // With no users, an address stands for one: a live worker's name, once it has served, is not
      // another address's to take while its health checks pass, whatever its answers (hostile45a
      // K-A4: a client's slow requests kept the real w1 out 10 s, and a stranger's registration
      // closed it). One that served its trial at most is not so kept: a squatter answering health
      // checks only, or its trial and then holding every task, kept a real worker's name for good
      // (review45 R2: hostile40c V8, hostile39c R2 from another address).
      // And only while it shows it serves (the review45 rest of K-A4's rule: a fake that served
      // two tasks, then held every one, kept the name while connected): answers in time within
      // 10 s, late ones to at least half of what failed on it, or a request of a method it never
      // answered in time that may still run (worker_sources.ts idle, slow_methods.ts).
      const elsewhere = user === undefined && sourceOf(holder) !== source && held.served > 1 &&
        !(held.state !== "up" && !held.outlier.backedOff) && serves(held, performance.now());
      if (holder.canCall && (elsewhere || keepsName(held, performance.now()))) {
        workerLines.warn("Worker {name} from {addr} refused: the name is held by {holder}", {
          name,
          addr: peer.conn.remoteAddress,
          holder: held.address,
        });
        throw new DistError(
          "BAD_REQUEST",
          `Worker name ${name} is taken by a live worker at ${held.address}; ` +
            "give each worker its own --name",
        );
      }
      workerLines.warn(
        "Worker {name} registered again: closing its previous connection ({state}: {reason})",
        { name, state: held.state, reason: held.reason },
      );
      this.#forget(holder);
      holder.close();
    }
    const now = performance.now();
    const outlier = this.#kept(name, source) ?? new Outlier();
    const hold = this.#churn.hold(name, source, now);
    if (hold > 0) outlier.outUntil = Math.max(outlier.outUntil, now + hold);
    const backend = new Backend("worker", peer.conn.remoteAddress, {
      capacity,
      rules: o.rules,
      outlier,
    });
    backend.churn = this.#churn.youngEnds(name, source, now);
    if (hold > 0) {
      backend.held = `flapping: ${backend.churn} registrations in a row ended within ` +
        `${CHURN_YOUNG_MS / 1000} s`;
    }
    backend.name = name;
    backend.source = "worker port";
    this.#byPeer.set(peer, backend);
    this.#byName.set(name, peer);
    this.#sources.join(source, backend, clientSource(undefined, peer.conn.remoteHost));
    o.pool.add(backend);
    const fields = { name, addr: backend.address, capacity, held: backend.held, s: hold / 1000 };
    if (hold > 0) {
      workerLines.warn(
        "Worker {name} registered from {addr} (capacity {capacity}), out of rotation for {s} s: {held}",
        fields,
      );
    } else workerLines.info("Worker {name} registered from {addr} (capacity {capacity})", fields);
    new WorkerLink(backend, peer, {
      ...o,
      onStrays: () => this.#bench.strayed(source, name),
    });
    peer.closed.then((reason) => {
      if (this.#forget(peer)) workerLines.info("Worker {name} left ({reason})", { name, reason });
    });
    return { registered: name, capacity };
  }

  /** Drops `peer`'s registration. @returns false if it had none (any more). */
  #forget(peer: Peer): boolean {
    const backend = this.#byPeer.get(peer);
    if (backend === undefined) return false;
    this.#byPeer.delete(peer);
    if (this.#byName.get(backend.name) === peer) this.#byName.delete(backend.name);
    this.#sources.leave(sourceOf(peer), backend);
    this.#options.pool.remove(backend);
    const now = performance.now();
    const lived = backend.upAt === -Infinity ? undefined : now - backend.upAt;
    this.#churn.ended(backend.name, sourceOf(peer), lived, now);
    // A backoff is kept for the name of a worker that served, for its source's next worker of the
    // name: one that never did (a fake that took the name while it was free) must not pass its
    // backoff to the real one (hostile39a P8), nor one of another source that served a task
    // first (hostile42a Y5: the real w1 then got no task for 10 s, 20 s …).
    if (backend.outlier.backedOff && backend.served > 0) {
      const gone = this.#gone;
      gone.delete(backend.name);
      gone.set(backend.name, {
        outlier: backend.outlier,
        at: performance.now(),
        source: sourceOf(peer),
      });
      if (gone.size > REMEMBER_MAX) gone.delete(gone.keys().next().value!);
    }
    return true;
  }

  /**
   * With every slot taken, a newcomer `name` of `source` takes the place of
   * the oldest worker of a source that holds more than its share of untried
   * or ejected ones, among those that failed a trial or a task or are out
   * for their answers (worker_sources.ts `displaced`; one not tried yet
   * keeps its slot: hostile42a Y2).
   * @returns whether a place was freed
   */
  #displace(source: string, max: number, name: string): boolean {
    const out = this.#sources.displaced(source, max);
    if (out === undefined) return false;
    for (const [peer, backend] of this.#byPeer) {
      if (backend !== out) continue;
      workerLines.warn(
        "Worker {name} closed: the slots are full (--max-workers {max}), and its source holds more than " +
          "its share of workers that serve nobody, and it failed a trial or a task (or its source did) " +
          "or is out for its answers; " +
          "{newcomer} takes its place",
        { name: out.name, max, newcomer: name },
      );
      this.#forget(peer);
      peer.close();
      return true;
    }
    return false;
  }

  /** The backoff `name` left with, within REMEMBER_MS, for a worker of `source` (undefined: a fresh start). */
  #kept(name: string, source: string): Outlier | undefined {
    const kept = this.#gone.get(name);
    if (kept === undefined) return undefined;
    this.#gone.delete(name);
    const recent = performance.now() - kept.at < REMEMBER_MS;
    return recent && kept.source === source ? kept.outlier : undefined;
  }
}

/**
 * How long a holder that failed a trial, or was taken out for its answers,
 * keeps its name while it answers nothing (ms): as long as a first backoff.
 */
export const NAME_SILENCE_MS = BACKOFF_MS;

/**
 * Whether `held`, live (its connection open), keeps its name against a
 * newcomer of its user at `now`. In rotation, it does. Out for missed
 * health checks, it does not: its connection died unnoticed. Out for its
 * answers (timeouts, failures), or back from that, it keeps it while idle
 * in rotation or while it answers in time within {@link NAME_SILENCE_MS}:
 * a client's slow requests can take a real worker out, so a newcomer must
 * not evict it and be evicted in turn (hostile39a P8). Silent that long,
 * it loses it: a fake that answered a task and holds the rest kept the
 * name for as long as it stayed connected (hostile39c R2). Late answers
 * count for nothing here: a fake answering one held task late every 9 s
 * kept the name for good (hostile40c V1). One that never served keeps it
 * for as long from its registration, and after that only while it holds a
 * trial it has not failed (trials.ts; it is never taken out): in a pool
 * with no traffic, a fake that answers only health checks kept the name
 * for good (hostile40c V8). Two workers of one user given one `--name`
 * in a pool with no traffic then take it from each other at most every
 * 10 s, until one serves. A holder whose answers have been errors or
 * refusals only for as long keeps it in no case (hostile41a W6: one that
 * answered every task UNKNOWN_METHOD or UNAVAILABLE at once was never
 * backed off, so never silent, and kept the name for good).
 */
function keepsName(held: Backend, now: number): boolean {
  const silent = now - held.lastAnswerAt >= NAME_SILENCE_MS;
  // Answering, but with no result for that long: errors and refusals keep no name.
  if (held.lastAnswerAt > held.lastResultAt && now - held.lastResultAt >= NAME_SILENCE_MS) {
    return false;
  }
  if (held.served === 0) return !silent || (held.inflight > 0 && held.trial.failed === 0);
  if (!held.outlier.backedOff) return held.state === "up";
  return (held.state === "up" && held.inflight === 0) || !silent;
}

/**
 * Whether `held`, which served, shows it still serves: it is not idle
 * (worker_sources.ts: an answer in time within the window, or a late one
 * then from one that answers late, or a slow method's request that may
 * still run), or it has answered late at least half of what failed on it
 * (however long ago: a real worker a client's slow requests keep out
 * for 20 s, 40 s … answers them all, late; a fake that holds its tasks
 * answers none).
 */
function serves(held: Backend, now: number): boolean {
  return !idle(held, now) || (held.lateAnswers > 0 && held.lateAnswers * 2 >= held.failures);
}

/** Whose a worker's connection is: its user once its hello proves one, else its address. */
function sourceOf(peer: Peer): string {
  return clientSource(peer.identity?.user, peer.conn.remoteHost);
}
