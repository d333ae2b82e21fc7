/**
 * Costly requests bounded per turn of the event loop, shared by the roles
 * that answer such requests themselves (the broker's listings, subscribes
 * and stats: hostile reviews 33 Y4 and 34 Z8; the balancer's
 * `balancer.backends` and `sys.stats`: hostile review 35 H7). Each is
 * bounded work, but a connection's pipelined requests are handled back to
 * back as they are read: 8 connections × 150 pipelined broker listings held
 * another client's ping up to 2.7 s; 2,000 pipelined `balancer.backends` of
 * 256 backends (70 KB each) held it 1.8-2.0 s. And each request counts at
 * least REQUEST_MS (or the caller's floor), what handling one costs around
 * its handler (decoding it, dispatching it, encoding and writing its
 * answer): a handler of a few microseconds alone let a turn take thousands.
 *
 * So such requests get COSTLY_MS_PER_TURN of a turn, together: one that
 * comes while the turn has some left (and none waits) runs at once; the
 * others wait for later turns (a timer each, so every connection's reads
 * and writes come in between), one at a time in rotation over sources (a
 * client's user, else its address: one attacker's many connections have
 * one turn a round between them), and within a source over its
 * connections. A connection with a request waiting is held meanwhile
 * (Peer.holdInput: what it sent after waits unread, in order), so it has at
 * most one waiting here, its requests keep their order with its others,
 * and a pile of them costs memory in the kernel's buffers, not here. What
 * another client waits for is then about a turn: COSTLY_MS_PER_TURN plus
 * one request, whatever the number of requests pipelined and of
 * connections sending them.
 */
import { clientSource } from "../auth/mod.ts";
import { DistError, type RequestHandler } from "../wire/mod.ts";

/**
 * Milliseconds of costly requests per turn of the event loop (one listing
 * of 1,000 topics takes about 3-6 ms; its answer's encoding comes on top).
 */
export const COSTLY_MS_PER_TURN = 4;

/**
 * What a request counts at least (ms, about 31 µs: a power of two, so
 * that sums are exact): handling one around its handler (decoding,
 * dispatch, its answer's encoding and write) took 10-30 µs here, for an
 * unsubscribe far more than the handler. So a turn takes at most
 * COSTLY_MS_PER_TURN / REQUEST_MS requests (128), however cheap.
 */
export const REQUEST_MS = 1 / 32;

/** Whose request (a connection's Peer). */
export interface TurnOwner {
  /** Stops (true) or resumes (false) taking its input; counted (see Peer.holdInput). */
  holdInput(hold?: boolean): void;
  readonly conn: { readonly isClosed: boolean };
}

/** A waiting request: runs it, and gives the promise its answer is written from. */
type Job = () => Promise<unknown>;

export class CostlyTurns {
  readonly #budget: number;
  readonly #least: number;
  readonly #now: () => number;
  /** Milliseconds spent in this turn. */
  #spent = 0;
  /** A timer is set: it starts the next turn. */
  #scheduled = false;
  /** Waiting jobs by source, then by owner; each map's order is its rotation. */
  readonly #sources = new Map<unknown, Map<TurnOwner, Job[]>>();
  /** While a waiting job runs: what is to run once its answer is out (see `later`). */
  #after: (() => void)[] | undefined;
  /** Requests that waited for a later turn, so far. */
  deferred = 0;

  constructor(options: { msPerTurn?: number; msPerRequest?: number; now?: () => number } = {}) {
    this.#budget = options.msPerTurn ?? COSTLY_MS_PER_TURN;
    this.#least = options.msPerRequest ?? REQUEST_MS;
    this.#now = options.now ?? (() => performance.now());
  }

  /** Requests waiting for a later turn. */
  get waiting(): number {
    let n = 0;
    for (const owners of this.#sources.values()) {
      for (const jobs of owners.values()) n += jobs.length;
    }
    return n;
  }

  /**
   * Runs `f` now when this turn has time left and nothing waits; else in a
   * later turn (the promise settles with what it returns or throws), its
   * owner held until then, taking turns with the others of its `source`
   * (default: its own; a function is asked only then). A request of a connection closed meanwhile is not
   * run (UNAVAILABLE). It counts at least `least` ms (default: the
   * constructor's `msPerRequest`): what its answer's encoding will cost,
   * which comes after `f` returns, where no turn can time it. Not `timed`,
   * it counts `least` exactly, without reading the clock (two reads cost
   * 0.3 µs here: a tenth of a binder lookup), for requests priced in full
   * by their caller ({@link charge} adds what only `f` finds out).
   */
  run<T>(
    owner: TurnOwner,
    f: () => T,
    source: unknown | (() => unknown) = owner,
    least: number = this.#least,
    timed = true,
  ): T | Promise<T> {
    if (this.#sources.size === 0 && this.#spent < this.#budget) {
      if (!timed) {
        this.#spent += least;
        this.#schedule();
        return f();
      }
      const t0 = this.#now();
      try {
        return f();
      } finally {
        this.#spent += Math.max(least, this.#now() - t0);
        this.#schedule();
      }
    }
    const { promise, resolve, reject } = Promise.withResolvers<T>();
    const job = () => {
      if (owner.conn.isClosed) {
        reject(new DistError("UNAVAILABLE", "Connection closed"));
        return promise;
      }
      const after: (() => void)[] = this.#after = [];
      const t0 = timed ? this.#now() : 0;
      try {
        resolve(f());
      } catch (err) {
        reject(err);
      } finally {
        this.#spent += timed ? Math.max(least, this.#now() - t0) : least;
        this.#after = undefined;
        // After the reaction that sends the answer (queued by resolve: the
        // request's handler had returned the promise long before).
        for (const fn of after) queueMicrotask(fn);
      }
      return promise;
    };
    const key = typeof source === "function" ? source() : source;
    let owners = this.#sources.get(key);
    if (owners === undefined) this.#sources.set(key, owners = new Map());
    const jobs = owners.get(owner);
    if (jobs !== undefined) jobs.push(job);
    else {
      owners.set(owner, [job]);
      owner.holdInput();
    }
    this.deferred++;
    this.#schedule();
    return promise;
  }

  /**
   * Counts `ms` more against this turn: what the request being handled
   * costs beyond its floor, known only once its handler has found its
   * answer (a binder lookup's instance, whose metadata its encoding writes).
   */
  charge(ms: number): void {
    if (ms > 0) this.#spent += ms;
  }

  /**
   * Runs `fn` once the answer of the request being handled is out (a
   * subscribe's retained values follow its answer): a microtask after it.
   */
  later(fn: () => void): void {
    if (this.#after !== undefined) this.#after.push(fn);
    else queueMicrotask(fn);
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setTimeout(this.#turn, 0);
  }

  /** A new turn: its time, spent on waiting jobs one at a time, sources and owners in rotation. */
  readonly #turn = (): void => {
    this.#scheduled = false;
    this.#spent = 0;
    const sources = this.#sources;
    while (sources.size > 0 && this.#spent < this.#budget) {
      const [source, owners] = sources.entries().next().value!;
      const [owner, jobs] = owners.entries().next().value!;
      const job = jobs.shift()!;
      // Their next jobs wait behind every other's: to the end of both rotations.
      owners.delete(owner);
      if (jobs.length > 0) owners.set(owner, jobs);
      sources.delete(source);
      if (owners.size > 0) sources.set(source, owners);
      const answered = job();
      // Its input is taken again (what it sent meanwhile may run now, or wait
      // here) once its answer is out, not before: taken at once, what it sent
      // next was handled before the answer was written (a publish's
      // deliveries and notices, the answers of the requests behind it, a new
      // subscription's deliveries ahead of its sid; CI of stop 39). The
      // answer is written by the reaction its Peer set on the promise when
      // the handler returned it, long before this one, and `later`'s
      // functions were queued by the job: both run first.
      if (jobs.length === 0) {
        answered.then(() => owner.holdInput(false), () => owner.holdInput(false));
      }
    }
    // Waiting jobs go on next turn. Time spent now counts until the next turn
    // that a request sets (run()): a timer set here, inside a timer, every turn
    // of a steady load would be nested, and nested timers wait at least 2-4 ms
    // (the HTML clamp: 200 nested setTimeout(0) took 446 ms here), which capped
    // 64 binder lookups in flight at 130-200,000/s against 230-250,000 untimed.
    if (sources.size > 0) this.#schedule();
  };
}

/**
 * Wraps a port's request handler: a request `costOf` prices (the ms it
 * counts at least; undefined: not costly) takes turns with the others, in
 * rotation over sources (a client's user, else its address); the rest go
 * straight on.
 */
export function takingTurns(
  turns: CostlyTurns,
  costOf: (method: string, params: unknown) => number | undefined,
): (handle: RequestHandler) => RequestHandler {
  return (handle) => (method, params, peer, meta) => {
    const least = costOf(method, params);
    if (least === undefined) return handle(method, params, peer, meta);
    // The source is worked out only for a request that waits (a lookup runs at once, mostly).
    const source = () => clientSource(peer.identity?.user, peer.conn.remoteHost);
    return turns.run(peer, () => handle(method, params, peer, meta), source, least);
  };
}
