/**
 * The binder's costly requests take turns (hostile review 36, J2). A
 * `binder.watch` answers a service's whole list (850 KB with 200
 * instances of 4 KB metadata) and a `binder.list` page up to a quarter of
 * the frame limit, and a connection's pipelined requests were handled back
 * to back as they were read: 200 pipelined watch/unwatch pairs of that list
 * held another client's `sys.ping` 1.2-2.4 s. They now go through the
 * {@link CostlyTurns} the broker and the balancer use: a few ms of them a
 * turn, in rotation over sources (a client's user, else its address), a
 * connection with one waiting held. Most of a list's cost, its encoding,
 * comes after the handler returns, where no turn can time it, so each
 * counts at least what its list's weight takes to encode. Registrations,
 * renewals, lookups and replication between binders never wait here.
 */
import type { RequestHandler } from "../../wire/mod.ts";
import { CostlyTurns, takingTurns } from "../_costly_turns.ts";
import type { Registry } from "./registry.ts";

/** What a costly request counts at least (ms): at most 8 a turn. */
export const LEAST_MS = 0.5;

/**
 * Characters of a list's weight one ms encodes and writes, about: an
 * 850 KB list took 4-9 ms to answer here.
 */
export const WEIGHT_PER_MS = 100_000;

/** Wraps the binder's request handler: watches, list pages and stats take turns. */
export function binderTurns(
  registry: Registry,
  pageBytes: number,
  turns: CostlyTurns = new CostlyTurns({ msPerRequest: LEAST_MS }),
): (handle: RequestHandler) => RequestHandler {
  /** What answering `service`'s list (at most `max` of its weight) costs, about (ms). */
  const listMs = (params: unknown, max: number) => {
    const service = (params as { service?: unknown } | null)?.service;
    if (typeof service !== "string") return LEAST_MS;
    return Math.max(LEAST_MS, registry.weightOf(service, max) / WEIGHT_PER_MS);
  };
  return takingTurns(turns, (method, params) => {
    switch (method) {
      case "binder.watch":
        return listMs(params, 8 * pageBytes); // twice the frame limit, as watchList weighs it
      case "binder.list":
        return listMs(params, pageBytes);
      case "sys.stats":
        return LEAST_MS;
      default:
        return undefined;
    }
  });
}
