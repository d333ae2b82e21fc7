/**
 * A client's side of discovery: resolving a service to an instance through
 * the binders (waiting a while for one to appear), and a connection to "some
 * instance of the service" that calls the server directly, and when that
 * server fails reports it down, resolves again and carries on.
 */
import { getLogger } from "@logtape/logtape";
import { cut } from "../../wire/_log.ts";
import { didYouMean, formatDuration } from "../../config/mod.ts";
import {
  type CallOptions,
  CloseReason,
  DistError,
  type PeerInfo,
  type Response,
  sleep,
} from "../../wire/mod.ts";
import { binder, type Instance, type ReportAnswer } from "../contracts/mod.ts";
import type { BinderClient } from "./binders.ts";
import type { Connection } from "../connection.ts";
import { dialBudget, DownReports, InstanceMemory } from "./memory.ts";

const log = getLogger(["dist", "discovery"]);

/** How often a waiting resolve asks again (ms). */
const RETRY_MS = 250;

export interface ResolverOptions {
  /** How long to wait for an instance to appear (ms); 0 fails at once. */
  waitMs: number;
  /** Stops a wait early. */
  signal?: AbortSignal;
  /**
   * When (a `performance.now()` time) each lookup's binder calls must have
   * ended (a connection's first search: its `connectTimeout`, h47 Q19).
   */
  until?: () => number | undefined;
}

/** Resolves one service through binders. */
export class Resolver {
  readonly service: string;
  readonly binders: BinderClient;
  #options: ResolverOptions;

  constructor(binders: BinderClient, service: string, options: ResolverOptions) {
    this.binders = binders;
    this.service = service;
    this.#options = options;
  }

  /**
   * The next instance of the service (binders hand them out cyclically).
   * While the service has none, or no binder answers, asks again every
   * 250 ms for up to `waitMs`, saying so once on the log.
   * @throws {DistError} NOT_FOUND `No instance of service "NAME" (asked …)`
   */
  async resolve(): Promise<Instance> {
    const deadline = performance.now() + this.#options.waitMs;
    let said = false;
    /** Which services exist, asked once when this one has no instance (a typo?). */
    let known = "";
    for (;;) {
      let problem: DistError;
      try {
        return await this.binders.call(binder.methods.lookup, { service: this.service }, {
          until: this.#options.until?.(),
        });
      } catch (err) {
        problem = DistError.from(err);
        if (problem.code !== "NOT_FOUND" && problem.code !== "UNAVAILABLE") throw problem;
      }
      if (!said && problem.code === "NOT_FOUND") known = await this.#knownServices();
      const left = deadline - performance.now();
      if (left <= 0 || this.#options.signal?.aborted) {
        const why = problem.code === "UNAVAILABLE" ? ": no binder answered" : "";
        throw new DistError(
          "NOT_FOUND",
          `No instance of service ${
            JSON.stringify(this.service)
          } (asked ${this.binders.asked}${why})${known}`,
          { cause: problem },
        );
      }
      if (!said) {
        said = true;
        log.warn("{problem}{known}; waiting up to {wait} for one", {
          problem: problem.code === "NOT_FOUND"
            ? `No instance of service ${JSON.stringify(this.service)} yet`
            : cut(problem.message),
          known,
          wait: formatDuration(this.#options.waitMs),
        });
      }
      await sleep(Math.min(RETRY_MS, left), this.#options.signal);
    }
  }

  /**
   * What the binders know, said after a service they do not know:
   * ` (did you mean "compute"?; services registered: compute, store)`, or
   * ` (no service is registered)`; "" when no binder answers the question.
   */
  async #knownServices(): Promise<string> {
    let names: string[];
    try {
      const page = await this.binders.call(binder.methods.list, { limit: 1000 }, {
        until: this.#options.until?.(),
      });
      names = [...new Set(page.instances.map((i) => i.service))].sort();
    } catch {
      return "";
    }
    if (names.length === 0) return "; no service is registered with the binders";
    const hint = didYouMean(this.service, names);
    const shown = names.length > 10 ? `${names.slice(0, 10).join(", ")}, …` : names.join(", ");
    return `${hint}; services registered: ${cut(shown)}`;
  }

  /**
   * Tells a binder that `instance` did not answer; the binder checks it and
   * removes it if it is dead. Never throws: a failed report is only logged
   * (`quiet`: on the debug log, as its outcome is).
   */
  async reportDown(
    instance: Instance,
    options: { quiet?: boolean } = {},
  ): Promise<ReportAnswer | undefined> {
    try {
      const answer = await this.binders.call(binder.methods.report_down, { id: instance.id }, {
        timeout: 5000,
      });
      const said = {
        id: cut(instance.id),
        verdict: answer.alive ? "the binder finds it alive" : "removed",
      };
      if (options.quiet) log.debug("Reported {id} down: {verdict}", said);
      else log.info("Reported {id} down: {verdict}", said);
      return answer;
    } catch (err) {
      const said = { id: cut(instance.id), error: cut((err as Error).message) };
      if (options.quiet) log.debug("Could not report {id} down: {error}", said);
      else log.warn("Could not report {id} down: {error}", said);
      return undefined;
    }
  }
}

export interface ServiceCallerOptions {
  /** Opens a connection to an instance's address (one that does not redial). */
  dial: (address: { host: string; port: number }) => Promise<Connection>;
  /**
   * A connection to the service (`connect({ binders, service })`): where a
   * request goes when the instance the binders handed out cannot be dialed
   * or fails under it (it moves to a live instance by itself). Closed with
   * the caller.
   */
  service: Connection;
  /**
   * What dialing the instances found (default: the service connection's, so
   * that what either learned the other uses).
   */
  memory?: InstanceMemory;
}

/**
 * Requests to a service's instances in the binders' turn, as the original
 * lab's client sends them: before each request the binders are asked for
 * the next instance, and the request goes over the connection kept for it
 * (dialed the first time). An instance that cannot be dialed, or whose
 * connection fails under a request, is reported down, and the request goes
 * over the service connection instead (sent again only if idempotent): one
 * that worked, or that finds one within the request's time (service.ts).
 * An instance that could not be dialed a moment ago (memory.ts) is not
 * dialed again: its turn's request goes over the service connection at once.
 */
export class ServiceCaller {
  readonly resolver: Resolver;
  #options: ServiceCallerOptions;
  /** The connection the last request went over. */
  #current: Connection;
  /** The connection to each instance dialed so far, by id. */
  #dialed = new Map<string, Connection>();
  readonly #memory: InstanceMemory;
  readonly #reports: DownReports;
  /** Instances that answered a request over this caller (by id): their requests are not watched. */
  readonly #answered = new Set<string>();
  #closed = false;

  constructor(resolver: Resolver, options: ServiceCallerOptions) {
    this.resolver = resolver;
    this.#options = options;
    this.#current = options.service;
    this.#memory = options.memory ?? options.service.instanceMemory ?? new InstanceMemory();
    this.#reports = new DownReports((i, quiet) => resolver.reportDown(i, { quiet }));
  }

  /** Whether a request can be sent: until closed (a failed instance is moved away from). */
  get canCall(): boolean {
    return !this.#closed;
  }

  /** The server the last request went to (or the service, before one answered). */
  get remote(): PeerInfo {
    return this.#current.remote ?? { role: "service", name: this.resolver.service };
  }

  /** Requests in flight on every connection held. */
  get pendingCalls(): number {
    let n = this.#options.service.pendingCalls;
    for (const c of this.#dialed.values()) n += c.pendingCalls;
    return n;
  }

  /** Sends a request and resolves with its result (see {@link exchange}). */
  request(method: string, params?: unknown, options?: CallOptions): Promise<unknown> {
    return this.exchange(method, params, options).then((r) => r.result);
  }

  /**
   * Sends a request to the instance the binders hand out next; resolves
   * with the result and `by`.
   */
  async exchange(method: string, params?: unknown, options?: CallOptions): Promise<Response> {
    if (this.#closed) throw new DistError("UNAVAILABLE", "Service connection closed");
    const next = await this.#next(options?.timeout);
    if (next === undefined) return this.#viaService(method, params, options);
    const { instance, peer } = next;
    // One that answered nothing yet gets a share of the request's time, as a service connection
    // gives it (hold.ts: hostile39a P7); then its connection is closed and the request goes on.
    const hold = this.#answered.has(instance.id) || options?.idempotent === false
      ? undefined
      : setTimeout(() => peer.close(), dialBudget(options?.timeout ?? 5000));
    try {
      const answer = await peer.exchange(method, params, options);
      if (this.#answered.size >= 10_000) this.#answered.clear();
      this.#answered.add(instance.id);
      return answer;
    } catch (err) {
      const e = DistError.from(err);
      // The connection failing (closed, or ended by the server), not the server saying no.
      const lost = e.code === "UNAVAILABLE" && !peer.canCall;
      if (!lost || this.#closed || options?.signal?.aborted) throw e;
      this.#memory.failed(instance);
      this.#reports.report(instance);
      if (options?.idempotent === false) throw e;
      return this.#viaService(method, params, options);
    } finally {
      clearTimeout(hold);
    }
  }

  #viaService(method: string, params?: unknown, options?: CallOptions): Promise<Response> {
    this.#current = this.#options.service;
    return this.#current.exchange(method, params, options);
  }

  close(_reason: CloseReason = CloseReason.Local): void {
    this.#closed = true;
    this.#options.service.close();
    for (const peer of this.#dialed.values()) peer.close();
    this.resolver.binders.close();
  }

  /**
   * The instance the binders hand out next, over the connection kept for it
   * (dialed the first time); undefined when none is found, it was found dead
   * a moment ago, or it cannot be dialed (then reported), for the service
   * connection to take the request.
   */
  async #next(timeout?: number): Promise<{ instance: Instance; peer: Connection } | undefined> {
    let instance: Instance;
    try {
      instance = await this.resolver.resolve();
    } catch {
      return undefined; // the service connection waits, or says why
    }
    let peer = this.#dialed.get(instance.id);
    if (peer === undefined || !peer.canCall) {
      if (this.#memory.isDead(instance)) return undefined;
      try {
        const dialing = this.#options.dial({ host: instance.host, port: instance.port });
        // One not known to work gets a short part of the request's time (one that swallows the
        // connection would hold it all: hostile38 L8); its request goes over the service connection.
        peer = this.#memory.hasWorked(instance)
          ? await dialing
          : await within(dialing, dialBudget(timeout ?? 5000));
      } catch (err) {
        this.#memory.failed(instance);
        // Said once a second at most per instance, with its report (not awaited).
        const report = this.#reports.report(instance, true);
        if (report !== undefined) {
          log.info("Cannot reach {id} ({message}); reporting it", {
            id: cut(instance.id),
            message: cut(DistError.from(err).message),
          });
        }
        return undefined;
      }
      this.#memory.worked(instance);
      this.#dialed.get(instance.id)?.close();
      this.#dialed.set(instance.id, peer);
    }
    this.#current = peer;
    return { instance, peer };
  }
}

/** `dialing` within `ms`; past it TIMEOUT, and the connection, if it comes, is closed. */
function within(dialing: Promise<Connection>, ms: number): Promise<Connection> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      dialing.then((conn) => conn.close(), () => {});
      reject(new DistError("TIMEOUT", `No connection within ${Math.round(ms)} ms`));
    }, ms);
  });
  return Promise.race([dialing, late]).finally(() => clearTimeout(timer));
}
