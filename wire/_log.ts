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

/** Warnings about peers per second, per process; the rest go to debug and are counted. */
const WARN_BUDGET = 20;
let windowStart = 0;
let warned = 0;
let leftOut = 0;

/**
 * A warning a peer's behaviour caused (a slow consumer, a broken stream):
 * logged at warning level up to WARN_BUDGET a second, then at debug, with
 * one line saying how many were left out.
 */
export function warnPeer(message: string, props: Record<string, unknown>): void {
  const now = performance.now();
  if (now - windowStart >= 1000) {
    if (leftOut > 0) {
      log.warn("{count} more warnings about peers in the last second went to debug level", {
        count: leftOut,
      });
    }
    windowStart = now;
    warned = leftOut = 0;
  }
  if (warned < WARN_BUDGET) {
    warned++;
    log.warn(message, props);
  } else {
    leftOut++;
    log.debug(message, props);
  }
}
