/**
 * Where a connection to a service dials: before every dial, the binders
 * are asked for the service's next instance. One that cannot be dialed is
 * remembered as dead for a while (memory.ts) and reported down (the binder
 * checks it and forgets it if dead), and the next is dialed at once: a
 * refused dial costs next to nothing, so the search for a live instance is
 * bounded by time (the connect timeout), not by a number of tries, and
 * instances found dead a moment ago are passed over when the binders hand
 * them out again. After a few failures an instance that worked comes first.
 * A connection that drops is reported before the next lookup, so a redial
 * moves to a live instance instead of the one that just failed.
 *
 * An address that swallows the connection (no answer, no refusal: a
 * listener that never accepts) would hold a dial for its whole connect
 * timeout, which is the search's: a one-shot request never tried the next
 * (hostile38 L8). Each dial of an instance not known to work gets
 * {@link dialBudget} of the search's time; one that times out is passed over
 * and reported like a refused one (its report not awaited: the binder's
 * check of an address that swallows takes the binder's own timeout), and
 * when the binders hand out no other, the last that timed out is dialed
 * again with what is left of the search (an instance merely slow to answer
 * its hello).
 *
 * A connection that drops before anything came after its hello (an
 * instance that answers the hello, and the binder's ping, but hangs up on
 * a request: hostile38 L9) is one that could not take the request either:
 * it is passed over and reported like one that could not be dialed, the
 * next is dialed at once, and the request is sent again within its time,
 * not a number of tries ({@link ServiceSource.silent}). One that answers
 * its hello but holds a request (never answers, never hangs up: hostile39a
 * P7, hostile40a T7) is closed after a share of the request's time while it
 * has answered none, or after {@link STUCK_AFTER} timeouts in a row, and
 * then counts as one that dropped (hold.ts).
 */
import { getLogger } from "@logtape/logtape";
import { cut } from "../../wire/_log.ts";
import { type AddressSource, DistError, type Peer, sleep } from "../../wire/mod.ts";
import type { Instance } from "../contracts/mod.ts";
import type { BinderClient } from "./binders.ts";
import { HoldWatch, STUCK_AFTER } from "./hold.ts";
import { dialBudget, DownReports, InstanceMemory } from "./memory.ts";
import { Resolver } from "./resolver.ts";

const log = getLogger(["dist", "discovery"]);

/** How long a dropped instance's report is awaited before the next lookup (ms). */
const REPORT_WAIT_MS = 2000;

/** Failed dials of a search after which an instance that worked is tried before the binders' next. */
const PREFER_WORKED_AFTER = 2;

/** Failed dials of a search said one by one on the log; the rest in one line at its end. */
const SAID_FAILURES = 3;

/**
 * Instances found dead a moment ago handed out in a row (beyond twice the
 * number known dead) after which the binders are taken to have none other:
 * the search ends, and the next starts afresh.
 */
const MIN_SKIPS = 8;

/** A search for a live instance: since when, and how it went. */
interface Search {
  since: number;
  /** Instances that could not be dialed. */
  failed: number;
  /** Whether an instance that worked before was tried. */
  triedWorked: boolean;
  /** The last instance whose short dial timed out (dialed again with the time left, at the end). */
  slow?: Instance;
}

/** A service's instances as an {@link AddressSource}, one lookup per dial. */
export class ServiceSource implements AddressSource {
  readonly resolver: Resolver;
  /** What dialing the instances found (shared with a ServiceCaller over this connection). */
  readonly memory: InstanceMemory;
  #instance: Instance | undefined;
  /** The report of the instance that dropped last, awaited by the next lookup. */
  #report: Promise<unknown> | undefined;
  readonly #reports: DownReports;
  /** Lookups in a row that found no instance. */
  #misses = 0;
  /** The search under way, from the first dial after a connection (none while connected). */
  #search: Search | undefined;
  /** Whether the last `next()` ended the search: no instance, or none that is not dead. */
  #exhausted = false;
  /** Bytes each connection had read when it came up (after its hello). */
  #upBytes = new WeakMap<Peer, number>();
  /** The connection up now, or the last one. */
  #peer: Peer | undefined;
  /** Whether the instance dialed last is the search's last resort (not watched for holding). */
  #lastResort = false;
  /** Requests held by an instance not known to work (hold.ts). */
  readonly holds: HoldWatch = new HoldWatch();

  /** The instances of `service`, found through `binders`. */
  readonly binders: BinderClient;
  readonly service: string;
  #waitMs: number;
  #searchMs: number;
  #signal: AbortSignal | undefined;
  #firstBy: number;

  /**
   * The instances of `service`, found through `binders`; each lookup waits up
   * to `waitMs` for one to appear (cut short by `signal`); a search for one
   * that can be dialed lasts `searchMs` (default 5 s) before {@link gaveUp}.
   * Lookups before the first connection end within `waitMs` + `searchMs`
   * from now, however the binders hang, as a first connection does (h47 Q19:
   * 3 hung binders took 2 s each, past the connection's own wait); later ones
   * take the binders' own timeouts.
   */
  constructor(
    binders: BinderClient,
    service: string,
    options: { waitMs?: number; signal?: AbortSignal; searchMs?: number } = {},
  ) {
    this.binders = binders;
    this.service = service;
    this.#waitMs = options.waitMs ?? 0;
    this.#searchMs = options.searchMs ?? 5000;
    this.#signal = options.signal;
    this.#firstBy = performance.now() + this.#waitMs + this.#searchMs;
    this.resolver = new Resolver(binders, service, { waitMs: 0 });
    this.memory = new InstanceMemory();
    this.#reports = new DownReports((i, quiet) => this.resolver.reportDown(i, { quiet }));
  }

  /** The instance dialed last. */
  get instance(): Instance | undefined {
    return this.#instance;
  }

  /**
   * Whether the search for an instance to dial is over: the service has
   * none (or no binder answers), every one handed out is dead, or it has
   * lasted `searchMs`. A first connection gives up then; a redial goes on
   * with backoff.
   */
  get gaveUp(): boolean {
    if (this.#exhausted) return true;
    return this.#search !== undefined && performance.now() - this.#search.since > this.#searchMs;
  }

  /**
   * The next instance's address, once a dropped one is reported.
   * @throws {DistError} NOT_FOUND when the service has no instance (or no binder answers);
   * UNAVAILABLE when every instance the binders hand out was found dead a moment ago
   */
  async next(
    signal: AbortSignal,
  ): Promise<{ host: string; port: number; connectTimeoutMs: number }> {
    if (this.#report !== undefined) {
      // Bounded, and cut short by the dialer stopping (sleep() is abortable).
      await Promise.race([this.#report, sleep(REPORT_WAIT_MS, signal)]);
      this.#report = undefined;
    }
    if (signal.aborted) throw new DistError("UNAVAILABLE", "Dialer stopped");
    this.#exhausted = false;
    const search = this.#search;
    if (search !== undefined && search.failed >= PREFER_WORKED_AFTER && !search.triedWorked) {
      search.triedWorked = true;
      const worked = this.memory.lastWorked(this.#instance);
      if (worked !== undefined) return this.#chose(worked, true);
    }
    for (let skipped = 0;; skipped++) {
      const instance = await this.#lookup(signal);
      if (!this.memory.isDead(instance)) {
        return this.#chose(instance, this.memory.hasWorked(instance));
      }
      const slow = this.#search?.slow;
      if (slow !== undefined && !this.gaveUp && skipped >= MIN_SKIPS) {
        // None but dead ones, and one only timed out its short dial: give it the time left.
        this.#search!.slow = undefined;
        return this.#chose(slow, true, true);
      }
      if (skipped >= MIN_SKIPS + 2 * this.memory.deadCount || this.gaveUp || signal.aborted) {
        // Every one the binders hand out failed a moment ago: the next search tries them again.
        const tried = search === undefined
          ? ""
          : `${search.failed} tried in ${Math.round(performance.now() - search.since)} ms, `;
        this.memory.forgetDead();
        this.#search = undefined;
        this.#exhausted = true;
        throw new DistError(
          "UNAVAILABLE",
          `No instance of service ${JSON.stringify(this.service)} could be reached: ` +
            `${tried}the binders hand out no other`,
        );
      }
    }
  }

  /**
   * Why a first connection did not come within `ms`: its last dial's error,
   * or, with none dialed, the service and binders asked (h47 Q19: it said
   * "No connection to :0", an address never dialed).
   */
  whyNot(lastDial: DistError | undefined, ms: number, cause: unknown): DistError {
    return lastDial ?? new DistError(
      "TIMEOUT",
      `No instance of service ${JSON.stringify(this.service)} within ${ms} ms ` +
        `(asked ${this.binders.asked}: no answer in time)`,
      { cause },
    );
  }

  /** Tells it the dial of the instance `next()` gave succeeded (`peer`): the search is over. */
  connected(peer?: Peer): void {
    const instance = this.#instance;
    if (instance === undefined) return;
    if (peer !== undefined) {
      this.#peer = peer;
      this.#upBytes.set(peer, peer.conn.bytesIn);
      // A late answer is an answer: the instance is alive, if slow.
      peer.onLateAnswer = () => this.holds.answered(peer);
      if (this.#lastResort) this.holds.exempt(peer);
    }
    this.memory.worked(instance);
    const search = this.#search;
    this.#search = undefined;
    if (search !== undefined && search.failed > SAID_FAILURES) {
      log.info("Reached {id} after {n} instances of {service} could not be ({ms} ms)", {
        id: cut(instance.id),
        n: search.failed,
        service: instance.service,
        ms: Math.round(performance.now() - search.since),
      });
    }
  }

  /**
   * `peer`'s connect hooks (a resubscribe…) all succeeded: what came in
   * while they ran answered their requests (one they sent unanswered would
   * have failed them), so it counts as answering one (hold.ts).
   */
  hooked(peer: Peer): void {
    const at = this.#upBytes.get(peer);
    if (at !== undefined && peer.conn.bytesIn > at) this.holds.answered(peer);
  }

  /**
   * Whether `peer`, a connection of this source (that dropped, or is
   * dropping), answered none of the requests sent on it (heartbeats and
   * other bytes do not count), got nothing at all after its hello before any
   * was sent, or was closed for holding requests (hold.ts): a request lost
   * with it is sent again within its time, not a number of tries.
   */
  silent(peer: Peer): boolean {
    if (this.holds.cutFor(peer) !== undefined) return true;
    if (this.holds.hasAnswered(peer)) return false;
    if (this.holds.wasAsked(peer)) return true;
    const at = this.#upBytes.get(peer);
    return at !== undefined && peer.conn.bytesIn === at;
  }

  /**
   * The instance dialed last could not be dialed (`wasUp` false) or its
   * connection dropped: it is passed over for a while and reported down.
   * @returns whether the next may be dialed at once (a failed dial, or a
   * connection that dropped before answering anything, within the search's time)
   */
  failed(address: { host: string; port: number }, err: DistError, wasUp: boolean): boolean {
    const instance = this.#instance;
    if (
      instance === undefined || instance.host !== address.host || instance.port !== address.port
    ) {
      return false;
    }
    this.memory.failed(instance);
    const held = wasUp && this.#peer !== undefined ? this.holds.cutFor(this.#peer) : undefined;
    if (wasUp && this.#peer !== undefined && this.silent(this.#peer)) {
      // Hung up before answering a request (or held them: hold.ts): as good as a failed dial.
      err = new DistError(
        "UNAVAILABLE",
        held === undefined
          ? `dropped the connection before answering a request (${err.message})`
          : held.timeouts >= STUCK_AFTER
          ? `${held.timeouts} requests in a row timed out without an answer`
          : `held a request ${Math.round(held.ms)} ms without answering any`,
      );
      wasUp = false;
    }
    if (wasUp) {
      log.info("Connection to {id} failed ({message}); resolving {service} again", {
        id: cut(instance.id),
        message: cut(err.message),
        service: instance.service,
      });
      this.#report = this.#reports.report(instance);
      return false;
    }
    const search = this.#search ??= { since: performance.now(), failed: 0, triedWorked: false };
    search.failed++;
    const said = search.failed <= SAID_FAILURES;
    const fields = { id: cut(instance.id), message: cut(err.message) };
    if (said) log.info("Cannot reach {id} ({message}); reporting it", fields);
    else log.debug("Cannot reach {id} ({message}); reporting it", fields);
    // The first few are awaited by the next lookup (bounded, as a dropped one's), so that a client
    // that finds a live instance next and exits at once has reported the dead one (lab row 6);
    // past them the next instance is dialed meanwhile (300 dead ones: hostile36 J9).
    // A timed-out one's is not awaited (the binder's check of it takes the binder's timeout): it
    // reaches the binder before the next lookup, sent after it on the same connection.
    const report = this.#reports.report(instance, !said);
    const timedOut = err.code === "TIMEOUT" || held !== undefined;
    if (timedOut) search.slow = instance;
    if (said && !timedOut) this.#report = report;
    return !this.gaveUp;
  }

  /**
   * `instance` is dialed next: the search's time runs from its first dial
   * (not a wait for one); one not known to work gets {@link dialBudget} of it.
   */
  #chose(
    instance: Instance,
    long: boolean,
    lastResort = false,
  ): { host: string; port: number; connectTimeoutMs: number } {
    this.#instance = instance;
    this.#lastResort = lastResort;
    const search = this.#search ??= { since: performance.now(), failed: 0, triedWorked: false };
    const left = Math.max(1, this.#searchMs - (performance.now() - search.since));
    log.debug("Service {service} resolved to {id}", { service: instance.service, id: instance.id });
    const connectTimeoutMs = long ? left : Math.min(left, dialBudget(this.#searchMs));
    return { host: instance.host, port: instance.port, connectTimeoutMs };
  }

  /** The binders' next instance, waiting up to `waitMs` for one. */
  async #lookup(signal: AbortSignal): Promise<Instance> {
    const waiting = this.#signal === undefined ? signal : AbortSignal.any([signal, this.#signal]);
    try {
      const instance = await new Resolver(this.binders, this.service, {
        waitMs: this.#waitMs,
        signal: waiting,
        until: () =>
          this.#peer === undefined && performance.now() < this.#firstBy ? this.#firstBy : undefined,
      }).resolve();
      this.#misses = 0;
      return instance;
    } catch (err) {
      this.#exhausted = true;
      // Said here, the first time and every tenth: the dialer knows no address to name.
      if (this.#misses++ % 10 === 0 && this.#instance !== undefined) {
        log.warn("{message}; asking again", { message: cut((err as Error).message) });
      }
      throw err;
    }
  }
}
