/**
 * Costly requests bounded per turn of the event loop (hostile review 33,
 * Y4). Each `broker.topics` page, each subscribe's naming of what it covers
 * and each `sys.stats` is bounded work, but a connection's pipelined
 * requests are handled back to back as they are read: 8 connections × 150
 * pipelined listings (valid pages of 1,000) held another client's ping up to
 * 2.7 s, 150 subscribes each 0.45 s, 150 `sys.stats` each 0.36 s.
 * Unsubscribes take the same turns (hostile review 34, Z8): one connection
 * pipelining 20 × (10,000 subscribes + 10,000 unsubscribes) had the
 * unsubscribes handled back to back as they were read. And each request
 * counts at least REQUEST_MS, what handling one costs around its handler
 * (decoding it, dispatching it, encoding and writing its answer): a
 * handler of a few microseconds alone let a turn take thousands of them.
 *
 * So they take turns (roles/_costly_turns.ts, shared with the balancer's
 * own costly requests): COSTLY_MS_PER_TURN of each turn, together, in
 * rotation over sources (a client's user, else its address) and within a
 * source over its connections, a connection with one waiting held; another
 * client waits about a turn, whatever the number pipelined.
 */
import { CostlyTurns } from "../_costly_turns.ts";

export { COSTLY_MS_PER_TURN, CostlyTurns, REQUEST_MS, type TurnOwner } from "../_costly_turns.ts";

/** The requests that take turns here. */
export const COSTLY_METHODS: ReadonlySet<string> = new Set([
  "broker.topics",
  "broker.subscribe",
  "broker.unsubscribe",
  "sys.stats",
]);

const byCore = new WeakMap<object, CostlyTurns>();

/** The turns of a broker's core: its native and MQTT front ends share one budget. */
export function costlyTurnsOf(core: object): CostlyTurns {
  let turns = byCore.get(core);
  if (turns === undefined) byCore.set(core, turns = new CostlyTurns());
  return turns;
}
