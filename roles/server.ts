import { getLogger } from "@logtape/logtape";
import { defineOptions, LISTENER_OPTIONS, type RoleOptions } from "../config/mod.ts";
import type { RequestHandler } from "../wire/mod.ts";
import type { Registrar } from "../clients/discovery/mod.ts";
import { ops } from "../clients/contracts/mod.ts";
import { OPERATION_HELP, OPERATIONS } from "./ops.ts";
import { counted, defineRole, type RunContext } from "./_role.ts";
import { REGISTER_OPTIONS, registrationFor } from "./_flags.ts";
import { listening, serving } from "./_shell.ts";
import { loggedRequests } from "./_request_log.ts";

const log = getLogger(["dist", "server"]);

/** The server's options (exported for the type fixture of tests/types/). */
export const SERVER_OPTIONS = defineOptions({
  port: {
    type: "port",
    description: "Port to listen on (0 picks a free one)",
    default: 5557,
    short: "p",
  },
  ...LISTENER_OPTIONS,
  ...REGISTER_OPTIONS,
});
export type ServerOptions = RoleOptions<typeof SERVER_OPTIONS>;

/** The server: answers the operations of ops.ts on its own port. */
export const server = defineRole({
  summary: "Answer echo/add/sub/mul/div/sum/sleep/eval requests on a port",
  usage: [
    "dist server [--port 5557] [--host 127.0.0.1] [--name NAME]",
    "",
    "Operations:",
    ...OPERATION_HELP.map((l) => "  " + l),
    "  sys.ping, sys.stats",
  ],
  options: SERVER_OPTIONS,
  run: runServer,
});

function runServer(options: ServerOptions, ctx: RunContext): Promise<number> {
  const stats = { requests: 0, errors: 0 };
  // Every request counts; one that fails at once (unknown, bad params) is an error too.
  const counting = (handle: RequestHandler): RequestHandler => (method, params, peer, meta) => {
    stats.requests++;
    try {
      return handle(method, params, peer, meta);
    } catch (err) {
      stats.errors++;
      throw err;
    }
  };
  const registration = registrationFor(options); // --service: checked before listening
  let registrar: Registrar | undefined;
  return listening(ctx, {
    role: "server",
    log,
    options,
    setUp: (bound) => ({
      serve: serving([ops], OPERATIONS, { wrap: (h) => loggedRequests(log, counting(h)) }),
      stats: () => ({ connections: bound.peers.size, ...stats }),
      started: () => registrar = registration?.start(bound.addr, bound.name),
      inFlight: () => {
        let handling = 0;
        for (const peer of bound.peers) handling += peer.handling;
        return handling > 0 ? `${handling} request(s) being handled` : undefined;
      },
      stopping: async () => {
        log.info("Shutting down: finishing {n} connection(s)", { n: bound.peers.size });
        await registrar?.stop(); // deregistered first: clients stop being sent here
      },
      stopped: () =>
        log.info("Stopped after {requests}", { requests: counted(stats.requests, "request") }),
    }),
  });
}
