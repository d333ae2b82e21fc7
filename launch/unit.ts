/**
 * One instance as the supervisor runs it (its current process, readiness,
 * restarts), and the verdict of a run: what `dist up` prints last and its
 * exit code.
 */
import { dialHost, formatAddress } from "../config/mod.ts";
import type { PlannedInstance } from "./plan.ts";
import type { Exit } from "./restart.ts";

export type UnitState =
  | "waiting"
  | "starting"
  | "ready"
  | "running"
  | "backoff"
  | "exited"
  | "stopping"
  | "stopped";

/** One instance and its current process. */
export class Unit {
  readonly plan: PlannedInstance;
  readonly name: string;
  state: UnitState = "waiting";
  child?: Deno.ChildProcess;
  /** Settles once the current process has exited and been handled. */
  exited?: Promise<void>;
  /** Ends the current process's readiness wait. */
  life?: AbortController;
  startedAt = 0;
  /** When the current process started waiting to be ready (performance.now()). */
  since = 0;
  firstStart?: number;
  restarts = 0;
  streak = 0;
  /** The port it listens on, once known. */
  port?: number;
  everReady = false;
  /** The current process answered sys.ping (or need not). */
  pinged = false;
  /** The current process logged its ready line (or has none). */
  lineSeen = false;
  lastExit?: Exit;
  exits = 0;
  backoff?: ReturnType<typeof setTimeout>;
  readyTimer?: ReturnType<typeof setTimeout>;
  /** Resolves the first time it is ready (a non-listening instance: once spawned). */
  readonly ready = Promise.withResolvers<void>();
  /** Called when a line may have told its port. */
  wakers = new Set<() => void>();

  constructor(plan: PlannedInstance) {
    this.plan = plan;
    this.name = plan.instance.name;
    this.ready.promise.catch(() => {}); // Dependents that stopped waiting do not care.
  }

  get address(): string | undefined {
    const configured = this.plan.instance.options.port;
    const port = this.port ?? (configured === 0 ? undefined : configured as number | undefined);
    if (port === undefined) return undefined;
    return formatAddress({ host: dialHost(this.plan.instance.host), port });
  }
}

export function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(2)} s`;
}

/** How a run of `dist up` went. */
export interface RunOutcome {
  /** Every instance was killed at once (a second Ctrl-C). */
  killed: boolean;
  /** The failure that stopped it, if one did. */
  fatal?: string;
  /** Instances with `restart = "no"` that failed, or that could not be restarted: `name (how)`. */
  failures: string[];
  /** Instances that were never ready (stopped before, or never started). */
  neverReady: string[];
}

/** The last lines of `dist up` (`dist: …`, to stderr) and its exit code. */
export function verdict(outcome: RunOutcome): { lines: string[]; code: number } {
  // As a role interrupted twice: nothing stopped cleanly.
  if (outcome.killed) {
    return { lines: ["dist: Interrupted again: every instance was killed"], code: 130 };
  }
  if (outcome.fatal !== undefined) return { lines: [`dist: ${outcome.fatal}`], code: 1 };
  const { failures, neverReady: never } = outcome;
  const lines: string[] = [];
  if (failures.length === 1) lines.push(`dist: ${failures[0].replace(" (", " failed (")}`);
  else if (failures.length > 1) {
    lines.push(`dist: ${failures.length} instances failed: ${failures.join(", ")}`);
  }
  // Stopped (--duration, Ctrl-C) before the cluster was whole: not a success.
  if (never.length > 0) {
    const who = never.length === 1
      ? never[0]
      : `${never.length} instances (${never.slice(0, 5).join(", ")}${
        never.length > 5 ? ", …" : ""
      })`;
    lines.push(`dist: ${who} never became ready`);
  }
  return { lines, code: lines.length > 0 ? 1 : 0 };
}
