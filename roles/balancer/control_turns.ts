/**
 * The balancer's own costly requests take turns (hostile review 35, H7).
 * `balancer.backends` lists every backend (about 70 KB of JSON with 256
 * of them) and `sys.stats` gathers every counter; both are answered by the
 * balancer itself, and a connection's pipelined requests were handled back
 * to back as they were read: 2,000 pipelined `balancer.backends` of 256
 * backends held another client's `sys.ping` 1.8-2.0 s. They now go
 * through the same {@link CostlyTurns} as the broker's listings: a few ms
 * of them a turn, in rotation over sources (a client's user, else its
 * address) and their connections, a connection with one waiting held.
 * Forwarded requests and `sys.ping` never wait here.
 */
import type { RequestHandler } from "../../wire/mod.ts";
import { CostlyTurns, takingTurns } from "../_costly_turns.ts";

/** The balancer's requests that take turns. */
export const CONTROL_METHODS: ReadonlySet<string> = new Set([
  "balancer.backends",
  "sys.stats",
]);

/**
 * What one such request counts at least (ms). Its handler only gathers
 * objects; most of its cost, encoding the answer (0.3-1 ms for 256
 * backends), comes after the handler returns, outside what the turns can
 * time. So each counts as at least this much: at most 8 a turn.
 */
export const CONTROL_REQUEST_MS = 0.5;

/**
 * One budget for both of the balancer's ports (the worker port also
 * answers `balancer.backends` and `sys.stats`).
 */
export class ControlTurns {
  readonly turns: CostlyTurns;
  /** Wraps a port's request handler: the control methods take turns, the rest go straight on. */
  readonly wrap: (handle: RequestHandler) => RequestHandler;

  constructor(turns: CostlyTurns = new CostlyTurns({ msPerRequest: CONTROL_REQUEST_MS })) {
    this.turns = turns;
    this.wrap = takingTurns(
      turns,
      (method) => CONTROL_METHODS.has(method) ? CONTROL_REQUEST_MS : undefined,
    );
  }
}
