/**
 * A server's registration: registers with one binder, renews the lease every
 * third of its TTL (with whichever binder answers: the lease is replicated, so
 * any binder can renew it), registers again when a binder no longer knows the
 * instance (its lease ran out during a partition, or every binder restarted),
 * and deregisters on a clean stop.
 */
import { getLogger } from "@logtape/logtape";
import { cut } from "../../wire/_log.ts";
import { Backoff, DistError, sleep } from "../../wire/mod.ts";
import { binder, type Registration } from "../contracts/mod.ts";
import type { BinderClient } from "./binders.ts";

const log = getLogger(["dist", "discovery"]);

/** The lease when a registration names none (ms). */
export const DEFAULT_TTL_MS = 3000;

/** A try of a {@link Registrar} that failed and will be made again; see {@link Registrar.onFailure}. */
export interface RegistrarFailure {
  /** What was tried: registering (nothing held) or renewing the lease. */
  readonly action: "register" | "renew";
  /**
   * Why: the binder's answer (NOT_FOUND to a renewal: it forgot the
   * instance, which is registered again at once; OVERLOADED: it is full …),
   * or UNAVAILABLE or TIMEOUT when no binder answered.
   */
  readonly error: DistError;
  /** Tries failed in a row, this one included (a success starts again). */
  readonly failures: number;
  /** Milliseconds until the next try. */
  readonly retryInMs: number;
}

/** Keeps one instance registered. See the module comment. */
export class Registrar {
  /** What is registered. */
  readonly info: Registration;
  #binders: BinderClient;
  #id: string | undefined;
  #stop = new AbortController();
  #loop: Promise<void> | undefined;
  #waiters: ((registered: boolean) => void)[] = [];
  #registeredOnce = false;
  #end!: (why: DistError | undefined) => void;
  /**
   * Resolves when registering ends: undefined after `stop()`, or the
   * binder's refusal that trying again will not change (also logged once, as
   * an error): BAD_REQUEST for the registration itself, UNAUTHORIZED for
   * credentials refused before it was ever registered. Binders that are down,
   * hang or are full are tried again.
   */
  readonly ended: Promise<DistError | undefined> = new Promise((resolve) => this.#end = resolve);
  #gaveUp: DistError | undefined;
  #onFailure = new Set<(failure: RegistrarFailure) => unknown>();

  /** A registration of `info` through `binders`; see {@link register}. @ignore */
  constructor(binders: BinderClient, info: Registration) {
    this.#binders = binders;
    this.info = info;
  }

  /** The instance id while registered. */
  get id(): string | undefined {
    return this.#id;
  }

  /**
   * Calls `listener` at each try that failed and will be made again (a
   * binder down, hung, full, or that forgot the instance): what
   * {@link ended} does not say, since registering goes on. The log says the
   * first and every tenth. A listener that throws, or whose promise
   * rejects, is logged and kept.
   * @returns a function that stops listening
   */
  onFailure(listener: (failure: RegistrarFailure) => unknown): () => void {
    this.#onFailure.add(listener);
    return () => this.#onFailure.delete(listener);
  }

  #failed(failure: RegistrarFailure): void {
    const threw = (err: unknown) =>
      log.warn("A Registrar's onFailure listener threw: {error}", {
        error: cut((err as Error)?.message ?? String(err)),
      });
    for (const listener of this.#onFailure) {
      try {
        // An async listener's rejection is its throw (review r48 R2: it ended the process).
        const done: unknown = listener(failure);
        if (done instanceof Promise) done.catch(threw);
      } catch (err) {
        threw(err);
      }
    }
  }

  /** Starts registering and renewing in the background. */
  start(): this {
    this.#loop ??= this.#run();
    return this;
  }

  /**
   * Resolves once registered (at once if it is), or with false after
   * `timeoutMs`, or at once when registering has ended (see {@link ended}).
   */
  registered(timeoutMs: number): Promise<boolean> {
    if (this.#id !== undefined) return Promise.resolve(true);
    if (this.#gaveUp !== undefined) return Promise.resolve(false);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.#waiters.push((registered) => {
        clearTimeout(timer);
        resolve(registered);
      });
    });
  }

  /**
   * Stops renewing and, when `deregister` is set, removes the instance from
   * the binders (waiting at most `timeoutMs`), then closes the connections.
   */
  async stop(deregister = true, timeoutMs = 1000): Promise<void> {
    this.#stop.abort();
    await this.#loop;
    this.#end(undefined);
    const id = this.#id;
    if (deregister && id !== undefined) {
      try {
        await this.#binders.call(binder.methods.deregister, { id }, { timeout: timeoutMs });
        log.info("Deregistered {id}", { id });
      } catch (err) {
        log.warn("Could not deregister {id}: {error}; its lease will run out", {
          id: cut(id),
          error: cut((err as Error).message),
        });
      }
    }
    this.#binders.close();
  }

  async #run(): Promise<void> {
    const ttlMs = this.info.ttl_ms ?? DEFAULT_TTL_MS;
    const info = { ...this.info, ttl_ms: ttlMs };
    const period = Math.max(50, Math.floor(ttlMs / 3));
    let failures = 0;
    // Retry soon after a failure (the lease may be running out), but not in a tight loop.
    const backoff = new Backoff({ min: 200, max: 3200 });
    while (!this.#stop.signal.aborted) {
      let wait = period;
      try {
        if (this.#id === undefined) {
          const answer = await this.#binders.call(binder.methods.register, info, {
            signal: this.#stop.signal,
          });
          this.#id = answer.id;
          log.info("Registered as {id} with binder {binder} (lease {ttl} ms)", {
            id: cut(answer.id),
            binder: this.#binders.current,
            ttl: ttlMs,
          });
          this.#registeredOnce = true;
          for (const w of this.#waiters.splice(0)) w(true);
        } else {
          // Binders that hang are left while the lease still runs on the others: with n, each
          // try waits a third of the lease split over the n - 1 that may hang (hostile47 Q3: a
          // 2 s timeout reached the next binder as the 3 s lease ended; r47 R2: two hung ones).
          const n = this.#binders.addresses.length;
          await this.#binders.call(binder.methods.renew, { id: this.#id }, {
            signal: this.#stop.signal,
            timeout: n > 1
              ? Math.min(this.#binders.timeoutMs, Math.max(100, Math.floor(period / (n - 1))))
              : this.#binders.timeoutMs,
          });
        }
        failures = 0;
        backoff.reset();
      } catch (err) {
        if (this.#stop.signal.aborted) break;
        const e = DistError.from(err);
        if (e.code === "NOT_FOUND" && this.#id !== undefined) {
          log.info("Binder {binder} no longer knows {id} ({message}); registering again", {
            binder: this.#binders.current,
            id: cut(this.#id),
            message: cut(e.message),
          });
          this.#id = undefined;
          this.#failed({ action: "renew", error: e, failures: failures + 1, retryInMs: 0 });
          continue;
        }
        if (this.#id === undefined && !this.#registeredOnce && final(e)) {
          // The same registration or credentials will be refused again (h47 Q22: retried every
          // 200 ms-3.2 s for ever, saying why in a warning every tenth time).
          this.#gaveUp = e;
          log.error("Binder {binder} refused registering {service}: {message}; not trying again", {
            binder: this.#binders.current,
            service: cut(this.info.service),
            message: cut(e.message),
          });
          for (const w of this.#waiters.splice(0)) w(false);
          this.#end(e);
          break;
        }
        failures++;
        const action = this.#id === undefined ? "register" : "renew";
        if (failures === 1 || failures % 10 === 0) {
          log.warn("Cannot {what} with any binder ({message}); retrying", {
            what: action,
            message: cut(e.message),
          });
        }
        wait = Math.min(period, backoff.next());
        this.#failed({ action, error: e, failures, retryInMs: wait });
      }
      await sleep(wait, this.#stop.signal);
    }
  }
}

/** A refusal of a first registration that the same registration will meet again. */
function final(e: DistError): boolean {
  return e.code === "BAD_REQUEST" || e.code === "UNAUTHORIZED";
}
