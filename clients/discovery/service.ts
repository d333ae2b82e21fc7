/**
 * Where a connection to a service dials: before every dial, the binders
 * are asked for the service's next instance; an instance that cannot be
 * dialed, or whose connection drops, is reported down (the binder checks
 * it and forgets it if dead) before the next is asked for, so a redial
 * moves to a live instance instead of the one that just failed.
 */
import { getLogger } from "@logtape/logtape";
import { cut } from "../../wire/_log.ts";
import { type AddressSource, DistError, sleep } from "../../wire/mod.ts";
import type { Instance } from "../contracts/mod.ts";
import type { BinderClient } from "./binders.ts";
import { Resolver } from "./resolver.ts";

const log = getLogger(["dist", "discovery"]);

/** How long a failed instance's report is awaited before the next lookup (ms). */
const REPORT_WAIT_MS = 2000;

/** A service's instances as an {@link AddressSource}, one lookup per dial. */
export class ServiceSource implements AddressSource {
  readonly resolver: Resolver;
  #instance: Instance | undefined;
  /** The report of the instance that failed last, awaited by the next lookup. */
  #report: Promise<unknown> | undefined;
  #reported = new Map<string, number>();
  /** Lookups in a row that found no instance. */
  #misses = 0;

  /** The instances of `service`, found through `binders`. */
  readonly binders: BinderClient;
  readonly service: string;
  #waitMs: number;
  #signal: AbortSignal | undefined;

  /**
   * The instances of `service`, found through `binders`; each lookup waits up
   * to `waitMs` for one to appear (cut short by `signal`).
   */
  constructor(
    binders: BinderClient,
    service: string,
    options: { waitMs?: number; signal?: AbortSignal } = {},
  ) {
    this.binders = binders;
    this.service = service;
    this.#waitMs = options.waitMs ?? 0;
    this.#signal = options.signal;
    this.resolver = new Resolver(binders, service, { waitMs: 0 });
  }

  /** The instance dialed last. */
  get instance(): Instance | undefined {
    return this.#instance;
  }

  /**
   * The next instance's address, once the last failure is reported.
   * @throws {DistError} NOT_FOUND when the service has no instance (or no binder answers)
   */
  async next(signal: AbortSignal): Promise<{ host: string; port: number }> {
    if (this.#report !== undefined) {
      // Bounded, and cut short by the dialer stopping (sleep() is abortable).
      await Promise.race([this.#report, sleep(REPORT_WAIT_MS, signal)]);
      this.#report = undefined;
    }
    if (signal.aborted) throw new DistError("UNAVAILABLE", "Dialer stopped");
    const waiting = this.#signal === undefined ? signal : AbortSignal.any([signal, this.#signal]);
    let instance: Instance;
    try {
      instance = await new Resolver(this.binders, this.service, {
        waitMs: this.#waitMs,
        signal: waiting,
      }).resolve();
    } catch (err) {
      // Said here, the first time and every tenth: the dialer knows no address to name.
      if (this.#misses++ % 10 === 0 && this.#instance !== undefined) {
        log.warn("{message}; asking again", { message: cut((err as Error).message) });
      }
      throw err;
    }
    this.#misses = 0;
    this.#instance = instance;
    log.debug("Service {service} resolved to {id}", { service: instance.service, id: instance.id });
    return { host: instance.host, port: instance.port };
  }

  /** Reports the instance dialed last down (once a second at most per instance). */
  failed(address: { host: string; port: number }, err: DistError, wasUp: boolean): void {
    const instance = this.#instance;
    if (
      instance === undefined || instance.host !== address.host || instance.port !== address.port
    ) {
      return;
    }
    const now = performance.now();
    if (now - (this.#reported.get(instance.id) ?? -Infinity) < 1000) return;
    this.#reported.set(instance.id, now);
    if (wasUp) {
      log.info("Connection to {id} failed ({message}); resolving {service} again", {
        id: cut(instance.id),
        message: cut(err.message),
        service: instance.service,
      });
    } else {
      log.info("Cannot reach {id} ({message}); reporting it", {
        id: cut(instance.id),
        message: cut(err.message),
      });
    }
    this.#report = this.resolver.reportDown(instance);
  }
}
