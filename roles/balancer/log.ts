/**
 * The balancer's logger, and budgets for the lines peers can cause at will
 * (workers registering and leaving, backends coming and going): each budget
 * logs at most `perSecond` of its lines a second; the rest go to debug, and
 * one line at the end of the second says how many. Text a peer chose is cut
 * with {@link cut} before it reaches a line.
 */
import { getLogger } from "@logtape/logtape";

import { LogBudget as WireBudget } from "../../wire/_log.ts";

export { cut } from "../../wire/_log.ts";

export const log = getLogger(["dist", "balancer"]);

/** A budget of balancer lines (wire/_log.ts LogBudget, on the balancer's logger). */
export class LogBudget extends WireBudget {
  constructor(what: string) {
    super(what, { log });
  }
}

/** Backends coming, going, going up and down (servers and workers alike). */
export const backendLines = new LogBudget("backends");
/** Workers registering, being refused and leaving. */
export const workerLines = new LogBudget("workers");
/**
 * Servers that cannot be reached: each says so at its first failed dial and
 * every tenth after (links.ts); 11,000 dead instances from the binders made
 * as many lines at once (hostile34's Z5 runs).
 */
export const dialLines = new LogBudget("backends that cannot be reached");
/** Backends answering error codes outside the protocol (hostile32 X8: one line per request before). */
export const foreignErrorLines = new LogBudget("errors with codes outside the protocol");
