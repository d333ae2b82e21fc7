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
 * counts at least what its list's weight takes to encode. Lookups take
 * turns too (J14: 20,000 pipelined lookups of instances with 4 KB of
 * metadata, 80 MB of answers, held a ping 0.5-0.6 s), each counting
 * LOOKUP_MS plus what its instance's weight takes to encode (charged once
 * the handler has picked it: see {@link chargeLookup}), so a turn answers
 * about 750 lookups of small instances and 90 of 4 KB ones. Registrations,
 * renewals and replication between binders never wait here.
 */
import type { RequestHandler } from "../../wire/mod.ts";
import { clientSource } from "../../auth/mod.ts";
import { CostlyTurns, takingTurns } from "../_costly_turns.ts";
import type { Entry, Registry } from "./registry.ts";
import { entryWeight } from "./rings.ts";

/** What a costly request counts at least (ms): at most 8 a turn. */
export const LEAST_MS = 0.5;

/**
 * What a lookup counts (ms, about 4 µs; not timed), besides its instance's
 * weight: the binder spent 2-4 µs of CPU a lookup at 170,000-240,000
 * lookups/s here (README, Benchmarks), so a turn's 4 ms hold about 750 of
 * them (small instances), far more than a client's 64 in flight bring in
 * one read.
 */
export const LOOKUP_MS = 1 / 256;

/**
 * Characters of a list's weight one ms encodes and writes, about: an
 * 850 KB list took 4-9 ms to answer here.
 */
export const WEIGHT_PER_MS = 100_000;

/** Wraps the binder's request handler: watches, list pages, lookups and stats take turns. */
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
  const timed = takingTurns(turns, (method, params) => {
    switch (method) {
      case "binder.watch":
        return listMs(params, 8 * pageBytes); // twice the frame limit, as watchList weighs it
      case "binder.list":
        return listMs(params, pageBytes);
      case "binder.diff":
        // A page of records as large as a list page (hostile46c F4: 200 pipelined diffs held
        // another client's ping 0.5-0.6 s at p90, untimed).
        return Math.max(LEAST_MS, pageBytes / WEIGHT_PER_MS);
      case "sys.stats":
        return LEAST_MS;
      default:
        return undefined;
    }
  });
  // Lookups are priced in full (LOOKUP_MS, and chargeLookup once the instance is known), not
  // timed: at 200,000 a second the clock's two reads were a tenth of the binder's work.
  return (handle) => {
    const others = timed(handle);
    return (method, params, peer, meta) => {
      if (method !== "binder.lookup") return others(method, params, peer, meta);
      const source = () => clientSource(peer.identity?.user, peer.conn.remoteHost);
      return turns.run(peer, () => handle(method, params, peer, meta), source, LOOKUP_MS, false);
    };
  };
}

/**
 * Charges the turn a lookup ran in with what encoding its answer, `entry`,
 * will cost (its weight: mostly its metadata), beyond LOOKUP_MS.
 */
export function chargeLookup(turns: CostlyTurns, entry: Entry): void {
  turns.charge(entryWeight(entry) / WEIGHT_PER_MS);
}
