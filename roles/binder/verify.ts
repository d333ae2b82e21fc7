/**
 * Verifying a reported failure (`binder.report_down`): one probe per instance
 * at a time, shared by every report that arrives while it runs, and its
 * "alive" verdict reused for a short while, so a crowd of clients reporting
 * the same instance costs one connection attempt. A probe is asynchronous and
 * bounded by its timeout: it never holds up other requests.
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
  /** Called when a probe of `entry` starts, and when it ends with its verdict. */
  onStart?: (entry: Entry) => void;
  onEnd?: (entry: Entry, alive: boolean) => void;
  now?: () => number;
}

/** Shares verifications of the same instance (see the module comment). */
export class Verifier {
  /** Probes started so far. */
  probes = 0;
  #options: VerifierOptions;
  #running = new Map<string, Promise<boolean>>();
  #alive = new Map<string, number>();
  #now: () => number;

  constructor(options: VerifierOptions) {
    this.#options = options;
    this.#now = options.now ?? (() => performance.now());
  }

  /** Probes running now. */
  get running(): number {
    return this.#running.size;
  }

  /**
   * Whether `entry` is alive: joins the probe already running for it, reuses
   * a recent "alive" verdict, or starts a probe.
   * @throws {DistError} OVERLOADED when too many probes are running
   */
  verify(entry: Entry): Promise<boolean> {
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
