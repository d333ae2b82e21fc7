/**
 * The balancer's logger, and budgets for the lines peers can cause at will
 * (workers registering and leaving, backends coming and going): each budget
 * logs at most `perSecond` of its lines a second; the rest go to debug, and
 * one line at the end of the second says how many. Text a peer chose is cut
 * with {@link cut} before it reaches a line.
 */
import { getLogger } from "@logtape/logtape";

export { cut } from "../../wire/_log.ts";

export const log = getLogger(["dist", "balancer"]);

/** Lines of one kind a second, by default (as the wire's warnings about peers). */
const PER_SECOND = 20;

type Props = Record<string, unknown>;

/** A rate limit for one kind of line (see the module note). */
export class LogBudget {
  /** What the lines are about, for the summary line ("workers", "backends"). */
  readonly what: string;
  readonly perSecond: number;
  #windowStart = -Infinity;
  #used = 0;
  #leftOut = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(what: string, perSecond = PER_SECOND) {
    this.what = what;
    this.perSecond = perSecond;
  }

  info(message: string, props: Props): void {
    this.#line("info", message, props);
  }

  warn(message: string, props: Props): void {
    this.#line("warn", message, props);
  }

  #line(level: "info" | "warn", message: string, props: Props): void {
    const now = performance.now();
    if (now - this.#windowStart >= 1000) {
      this.#flush();
      this.#windowStart = now;
      this.#used = 0;
    }
    if (this.#used < this.perSecond) {
      this.#used++;
      if (level === "info") log.info(message, props);
      else log.warn(message, props);
      return;
    }
    this.#leftOut++;
    log.debug(message, props);
    if (this.#timer === undefined) {
      const timer = setTimeout(() => {
        this.#timer = undefined;
        this.#flush();
      }, Math.max(0, this.#windowStart + 1000 - now));
      Deno.unrefTimer(timer);
      this.#timer = timer;
    }
  }

  /** Says how many lines went to debug, if any. */
  #flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#leftOut === 0) return;
    log.info("{count} more lines about {what} in the last second went to debug level", {
      count: this.#leftOut,
      what: this.what,
    });
    this.#leftOut = 0;
  }
}

/** Backends coming, going, going up and down (servers and workers alike). */
export const backendLines = new LogBudget("backends");
/** Workers registering, being refused and leaving. */
export const workerLines = new LogBudget("workers");
/** Backends answering error codes outside the protocol (hostile32 X8: one line per request before). */
export const foreignErrorLines = new LogBudget("errors with codes outside the protocol");
