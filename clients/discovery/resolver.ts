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

const log = getLogger(["dist", "discovery"]);

/** How often a waiting resolve asks again (ms). */
const RETRY_MS = 250;

export interface ResolverOptions {
  /** How long to wait for an instance to appear (ms); 0 fails at once. */
  waitMs: number;
  /** Stops a wait early. */
  signal?: AbortSignal;
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
        return await this.binders.call(binder.methods.lookup, { service: this.service });
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
      const page = await this.binders.call(binder.methods.list, { limit: 1000 });
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
   * removes it if it is dead. Never throws: a failed report is only logged.
   */
  async reportDown(instance: Instance): Promise<ReportAnswer | undefined> {
    try {
      const answer = await this.binders.call(binder.methods.report_down, { id: instance.id }, {
        timeout: 5000,
      });
      log.info("Reported {id} down: {verdict}", {
        id: cut(instance.id),
        verdict: answer.alive ? "the binder finds it alive" : "removed",
      });
      return answer;
    } catch (err) {
      log.warn("Could not report {id} down: {error}", {
        id: cut(instance.id),
        error: cut((err as Error).message),
      });
      return undefined;
    }
  }
}

export interface ServiceCallerOptions {
  /** Opens a connection to an instance's address (one that does not redial: see `redial`). */
  dial: (address: { host: string; port: number }) => Promise<Connection>;
  /** Most instances tried for one request before giving up (default 3). */
  attempts?: number;
  /**
   * Ask the binders for an instance before each request, as the original
   * lab's client does, so that requests go round the instances in the
   * binders' turn (connections to instances already dialed are kept).
   * Without it, requests stick to one instance until it fails.
   */
  rotate?: boolean;
}

/**
 * A connection to some instance of a service: resolves one, dials it and
 * sends requests straight to it (many in flight). When the instance cannot
 * be reached or its connection fails, it is reported down, another one is
 * resolved, and requests that failed that way are sent again (they are
 * retried only if idempotent, which every server operation is).
 */
export class ServiceCaller {
  readonly resolver: Resolver;
  #options: ServiceCallerOptions;
  #peer: Connection | undefined;
  #instance: Instance | undefined;
  #connecting: Promise<Connection> | undefined;
  #reported = new Map<string, { report: Promise<unknown>; at: number }>();
  /** With `rotate`: the connection to each instance dialed so far, by id. */
  #dialed = new Map<string, Connection>();
  #closed = false;

  constructor(resolver: Resolver, options: ServiceCallerOptions) {
    this.resolver = resolver;
    this.#options = options;
  }

  /**
   * Whether a request can be sent: until closed, yes — when an instance's
   * connection ends, the next request goes to another instance.
   */
  get canCall(): boolean {
    return !this.#closed;
  }

  /** The server at the other end (or the service, before one is resolved). */
  get remote(): PeerInfo {
    return this.#peer?.remote ?? { role: "service", name: this.resolver.service };
  }

  /** The instance requests go to now. */
  get instance(): Instance | undefined {
    return this.#instance;
  }

  /**
   * Resolves and connects now (requests would do it on first use).
   * @throws {DistError} NOT_FOUND when the service has no reachable instance
   */
  async connect(): Promise<this> {
    await this.#ensure();
    return this;
  }

  /** Sends a request and resolves with its result (see {@link exchange}). */
  request(method: string, params?: unknown, options?: CallOptions): Promise<unknown> {
    return this.exchange(method, params, options).then((r) => r.result);
  }

  /**
   * Sends a request to the current instance, moving to another when it
   * fails; resolves with the result and `by`.
   */
  async exchange(method: string, params?: unknown, options?: CallOptions): Promise<Response> {
    const attempts = this.#options.attempts ?? 3;
    for (let attempt = 1;; attempt++) {
      // A retry goes where #failed sent it; only a new request takes the next turn.
      const peer = this.#options.rotate && attempt === 1
        ? await this.#next()
        : await this.#ensure();
      const instance = this.#instance!;
      try {
        return await peer.exchange(method, params, options);
      } catch (err) {
        const e = DistError.from(err);
        // The connection failing (closed, or ended by the server), not the server saying no.
        const lost = e.code === "UNAVAILABLE" && !peer.canCall;
        if (!lost || attempt >= attempts || this.#closed || options?.signal?.aborted) throw e;
        await this.#failed(instance, peer);
      }
    }
  }

  close(_reason: CloseReason = CloseReason.Local): void {
    this.#closed = true;
    this.#peer?.close();
    for (const peer of this.#dialed.values()) peer.close();
    this.resolver.binders.close();
  }

  /**
   * `rotate`: the instance the binders hand out next, over the connection
   * kept for it (dialed the first time). One that cannot be dialed is
   * reported, and the request goes where {@link #ensure} finds.
   */
  async #next(): Promise<Connection> {
    if (this.#closed) return this.#ensure();
    const instance = await this.resolver.resolve();
    let peer = this.#dialed.get(instance.id);
    if (peer === undefined || !peer.canCall) {
      try {
        peer = await this.#options.dial({ host: instance.host, port: instance.port });
      } catch (err) {
        log.info("Cannot reach {id} ({message}); reporting it", {
          id: cut(instance.id),
          message: cut(DistError.from(err).message),
        });
        await this.#report(instance);
        return this.#ensure();
      }
      this.#dialed.get(instance.id)?.close();
      this.#dialed.set(instance.id, peer);
    }
    // One found by #connect (at the first request, or after a failure) is kept like the others.
    const current = this.#instance;
    if (this.#peer !== undefined && current !== undefined && !this.#dialed.has(current.id)) {
      this.#dialed.set(current.id, this.#peer);
    }
    this.#peer = peer;
    this.#instance = instance;
    return peer;
  }

  #ensure(): Promise<Connection> {
    if (this.#closed) {
      return Promise.reject(new DistError("UNAVAILABLE", "Service connection closed"));
    }
    const peer = this.#peer;
    if (peer !== undefined && peer.canCall) return Promise.resolve(peer);
    return this.#connecting ??= this.#connect().finally(() => this.#connecting = undefined);
  }

  async #connect(): Promise<Connection> {
    const attempts = this.#options.attempts ?? 3;
    for (let attempt = 1;; attempt++) {
      const instance = await this.resolver.resolve();
      try {
        const peer = await this.#options.dial({ host: instance.host, port: instance.port });
        this.#peer = peer;
        this.#instance = instance;
        log.debug("Service {service} resolved to {id}", {
          service: this.resolver.service,
          id: instance.id,
        });
        return peer;
      } catch (err) {
        const e = DistError.from(err);
        if ((e.code !== "UNAVAILABLE" && e.code !== "TIMEOUT") || attempt >= attempts) throw e;
        log.info("Cannot reach {id} ({message}); reporting it", {
          id: cut(instance.id),
          message: cut(e.message),
        });
        await this.#report(instance);
      }
    }
  }

  /** The connection to `instance` failed: report it (once) and drop it. */
  async #failed(instance: Instance, peer: Connection): Promise<void> {
    if (this.#peer === peer) {
      this.#peer = undefined;
      log.info("Connection to {id} failed; resolving {service} again", {
        id: cut(instance.id),
        service: this.resolver.service,
      });
    }
    await this.#report(instance);
  }

  /** Reports an instance down; concurrent failures of the same instance share one report. */
  #report(instance: Instance): Promise<unknown> {
    const now = performance.now();
    const last = this.#reported.get(instance.id);
    // Within a second, the same report; later, a new incarnation at that address may have failed.
    if (last !== undefined && now - last.at < 1000) return last.report;
    const report = this.resolver.reportDown(instance);
    this.#reported.set(instance.id, { report, at: now });
    return report;
  }
}
