/**
 * Restart policy: whether an exited instance starts again, and after how
 * long. Pure functions; the supervisor keeps the streak per instance.
 *
 * An instance that ran at least {@link STABLE_MS} restarts at once. One that
 * keeps exiting sooner backs off: the first quick exit restarts at once, the
 * next after 1 s, then 2 s, 4 s … up to 32 s. From the third quick exit in a
 * row it is reported as a crash loop (and keeps being restarted).
 */
import type { RestartPolicy } from "../config/mod.ts";

/** An instance that ran this long before exiting was stable: its backoff starts over. */
export const STABLE_MS = 10_000;
export const FIRST_BACKOFF_MS = 1_000;
export const MAX_BACKOFF_MS = 32_000;
/** Quick exits in a row that make a crash loop. */
export const CRASH_LOOP_EXITS = 3;

/** How a child ended. */
export interface Exit {
  code: number;
  /** The signal that killed it, if any. */
  signal: string | null;
  /** How long it ran (ms). */
  ranMs: number;
}

export interface RestartDecision {
  restart: boolean;
  /** Wait this long before starting it again (ms). */
  delayMs: number;
  /** Quick exits in a row, this one included (0 when it ran long enough). */
  streak: number;
  crashLoop: boolean;
}

/** Whether an exit is a failure: a non-zero code or a signal. */
export function failed(exit: Pick<Exit, "code" | "signal">): boolean {
  return exit.code !== 0 || exit.signal !== null;
}

/** "exit code 1", "signal SIGKILL". */
export function describeExit(exit: Pick<Exit, "code" | "signal">): string {
  return exit.signal !== null ? `signal ${exit.signal}` : `exit code ${exit.code}`;
}

/**
 * What to do after `exit`, given the quick exits before it.
 *
 * @param streak quick exits in a row before this one
 */
export function decideRestart(
  policy: RestartPolicy,
  exit: Exit,
  streak: number,
): RestartDecision {
  const restart = policy === "always" || (policy === "on-failure" && failed(exit));
  const quick = exit.ranMs < STABLE_MS;
  const now = quick ? streak + 1 : 0;
  return {
    restart,
    delayMs: restart ? backoffMs(now) : 0,
    streak: now,
    crashLoop: restart && now >= CRASH_LOOP_EXITS,
  };
}

/** The wait before restart number `streak` of a run of quick exits: 0, 0, 1 s, 2 s … 32 s. */
export function backoffMs(streak: number): number {
  if (streak <= 1) return 0;
  return Math.min(FIRST_BACKOFF_MS * 2 ** (streak - 2), MAX_BACKOFF_MS);
}
