/**
 * The wire's logger, and the two habits every wire log line keeps: text a
 * peer chose is cut before it is logged, and warnings a peer can cause are
 * rate-limited, so no peer can fill a disk or drown the other lines.
 */
import { getLogger } from "@logtape/logtape";
import { truncate } from "./errors.ts";

export const log = getLogger(["dist", "wire"]);

/** Longest peer-supplied text put in a log line. */
export const MAX_LOGGED_CHARS = 200;

/** Text a peer chose (an id, a name, a message), cut for a log line. */
export function cut(text: string, max = MAX_LOGGED_CHARS): string {
  return truncate(text, max);
}

/** Lines of one kind a second, by default (as the warnings about peers). */
const PER_SECOND = 20;

type Props = Record<string, unknown>;
type Logger = ReturnType<typeof getLogger>;

/**
 * A rate limit for one kind of line a peer can cause at will: at most
 * `perSecond` of them a second are logged; the rest go to debug, and one
 * line at the end of the second says how many.
 */
export class LogBudget {
  /** What the lines are about, for the summary line ("workers", "peers"). */
  readonly what: string;
  readonly perSecond: number;
  #log: Logger;
  #windowStart = -Infinity;
  #used = 0;
  #leftOut = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(what: string, options: { log?: Logger; perSecond?: number } = {}) {
    this.what = what;
    this.perSecond = options.perSecond ?? PER_SECOND;
    this.#log = options.log ?? log;
  }

  info(message: string, props: Props): void {
    this.#line("info", message, props);
  }

  warn(message: string, props: Props): void {
    this.#line("warn", message, props);
  }

  error(message: string, props: Props): void {
    this.#line("error", message, props);
  }

  #line(level: "info" | "warn" | "error", message: string, props: Props): void {
    const now = performance.now();
    if (now - this.#windowStart >= 1000) {
      this.#flush();
      this.#windowStart = now;
      this.#used = 0;
    }
    if (this.#used < this.perSecond) {
      this.#used++;
      this.#log[level](message, props);
      return;
    }
    this.#leftOut++;
    this.#log.debug(message, props);
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
    this.#log.info("{count} more lines about {what} in the last second went to debug level", {
      count: this.#leftOut,
      what: this.what,
    });
    this.#leftOut = 0;
  }
}

/** Warnings a peer's behaviour caused, per process (see warnPeer). */
const peerWarnings = new LogBudget("peers");

/**
 * A warning a peer's behaviour caused (a slow consumer, a broken stream):
 * logged at warning level up to 20 a second, then at debug, with one line
 * saying how many were left out.
 */
export function warnPeer(message: string, props: Record<string, unknown>): void {
  peerWarnings.warn(message, props);
}
