/**
 * Verifying a reported failure (`binder.report_down`): one probe per instance
 * at a time, shared by every report that arrives while it runs, and its
 * "alive" verdict reused for a short while, so a crowd of clients reporting
 * the same instance costs one connection attempt. A probe is asynchronous and
 * bounded by its timeout: it never holds up other requests.
 *
 * A probe is a connection the binder makes to an address someone registered,
 * so new probes are rationed: each connection reporting may start
 * `perSource` a second (bursts of `perSourceBurst`), and the binder
 * `perBinder` a second in all; a report past either budget is OVERLOADED
 * (a client then asks another binder, and the instance's lease runs out
 * anyway if it is dead). Without it a client could aim the binder at any
 * address with as many reports as it can send.
 */
import { DistError } from "../../wire/mod.ts";
import type { Entry } from "./registry.ts";

/** Checks whether an instance answers; resolves false when it does not (never rejects). */
export type Probe = (entry: Entry, timeoutMs: number) => Promise<boolean>;

export interface VerifierOptions {
  probe: Probe;
  /** Longest a probe may take (ms). */
  timeoutMs: number;
  /** How long an "alive" verdict answers later reports without a new probe (ms). */
  aliveCacheMs?: number;
  /** Most probes running at once; more reports are OVERLOADED. */
  maxRunning?: number;
  /** New probes a second that one source (a connection) may start, and its burst. */
  perSource?: number;
  perSourceBurst?: number;
  /** New probes a second in all (also the burst). */
  perBinder?: number;
  /** Called when a probe of `entry` starts, and when it ends with its verdict. */
  onStart?: (entry: Entry) => void;
  onEnd?: (entry: Entry, alive: boolean) => void;
  now?: () => number;
}

export const DEFAULT_PER_SOURCE = 20;
export const DEFAULT_PER_SOURCE_BURST = 50;
export const DEFAULT_PER_BINDER = 200;

/** A token bucket: `rate` tokens a second, holding at most `burst`. */
class Budget {
  #tokens: number;
  #at: number;

  constructor(readonly rate: number, readonly burst: number, now: number) {
    this.#tokens = burst;
    this.#at = now;
  }

  /** Whether a token is left now (and, if so, takes it). */
  take(now: number): boolean {
    this.#tokens = Math.min(this.burst, this.#tokens + (now - this.#at) * this.rate / 1000);
    this.#at = now;
    if (this.#tokens < 1) return false;
    this.#tokens--;
    return true;
  }
}

/** Shares verifications of the same instance (see the module comment). */
export class Verifier {
  /** Probes started so far. */
  probes = 0;
  #options: VerifierOptions;
  #running = new Map<string, Promise<boolean>>();
  #alive = new Map<string, number>();
  #now: () => number;
  #bySource = new WeakMap<object, Budget>();
  #all: Budget;

  constructor(options: VerifierOptions) {
    this.#options = options;
    this.#now = options.now ?? (() => performance.now());
    const perBinder = options.perBinder ?? DEFAULT_PER_BINDER;
    this.#all = new Budget(perBinder, perBinder, this.#now());
  }

  /** Probes running now. */
  get running(): number {
    return this.#running.size;
  }

  /**
   * Whether `entry` is alive: joins the probe already running for it, reuses
   * a recent "alive" verdict, or starts a probe.
   * @param source who asks (a connection), for its budget of new probes
   * @throws {DistError} OVERLOADED when too many probes are running, or
   *   `source` or the binder has spent its budget of new probes
   */
  verify(entry: Entry, source?: object): Promise<boolean> {
    const running = this.#running.get(entry.id);
    if (running !== undefined) return running;
    const cacheMs = this.#options.aliveCacheMs ?? 2000;
    const aliveAt = this.#alive.get(entry.id);
    if (aliveAt !== undefined) {
      if (this.#now() - aliveAt < cacheMs) return Promise.resolve(true);
      this.#alive.delete(entry.id);
    }
    if (this.#running.size >= (this.#options.maxRunning ?? 1000)) {
      throw new DistError("OVERLOADED", `${this.#running.size} verifications running`);
    }
    this.#spend(source);
    this.probes++;
    this.#options.onStart?.(entry);
    const probe = this.#options.probe(entry, this.#options.timeoutMs).catch(() => false).then(
      (alive) => {
        this.#running.delete(entry.id);
        if (alive) this.#remember(entry.id);
        this.#options.onEnd?.(entry, alive);
        return alive;
      },
    );
    this.#running.set(entry.id, probe);
    return probe;
  }

  /** Takes a new probe from the budgets of `source` and of the binder, or throws OVERLOADED. */
  #spend(source: object | undefined): void {
    const o = this.#options;
    const now = this.#now();
    if (source !== undefined) {
      let budget = this.#bySource.get(source);
      if (budget === undefined) {
        const rate = o.perSource ?? DEFAULT_PER_SOURCE;
        budget = new Budget(rate, o.perSourceBurst ?? DEFAULT_PER_SOURCE_BURST, now);
        this.#bySource.set(source, budget);
      }
      if (!budget.take(now)) {
        throw new DistError(
          "OVERLOADED",
          `Too many reports to check: at most ${budget.rate} new checks a second per connection`,
        );
      }
    }
    if (!this.#all.take(now)) {
      throw new DistError(
        "OVERLOADED",
        `Too many reports to check: at most ${this.#all.rate} new checks a second`,
      );
    }
  }

  #remember(id: string): void {
    // Bounded: drop the oldest verdicts rather than grow.
    if (this.#alive.size >= 10_000) {
      for (const old of this.#alive.keys()) {
        this.#alive.delete(old);
        if (this.#alive.size < 5_000) break;
      }
    }
    this.#alive.set(id, this.#now());
  }
}
