import { getLogger } from "@logtape/logtape";
import { LISTENER_OPTIONS, type Options } from "../config/mod.ts";
import { DistError } from "../wire/mod.ts";
import { findOperation, OPERATION_HELP } from "./ops.ts";
import { announceListening, counted, type Role, type RunContext, untilAborted } from "./_role.ts";
import { setLogInstance } from "./_logging.ts";
import { connSettings } from "./_flags.ts";
import { REGISTER_OPTIONS, registrationFor } from "./_flags.ts";
import { listenOn } from "./_listen.ts";
import { loggedRequests } from "./_request_log.ts";

const log = getLogger(["dist", "server"]);

/** The server: answers the operations of ops.ts on its own port. */
export const server: Role = {
  summary: "Answer echo/add/sub/mul/div/sum/sleep/eval requests on a port",
  usage: [
    "dist server [--port 5557] [--host 127.0.0.1] [--name NAME]",
    "",
    "Operations:",
    ...OPERATION_HELP.map((l) => "  " + l),
    "  sys.ping, sys.stats",
  ],
  options: {
    port: {
      type: "port",
      description: "Port to listen on (0 picks a free one)",
      default: 5557,
      short: "p",
    },
    ...LISTENER_OPTIONS,
    ...REGISTER_OPTIONS,
  },
  run: runServer,
};

async function runServer(options: Options, ctx: RunContext): Promise<number> {
  const started = performance.now();
  const stats = { requests: 0, errors: 0 };
  let name = options.name as string | undefined;
  const handle = (method: string, params: unknown): unknown => {
    stats.requests++;
    const op = findOperation(method);
    try {
      if (op !== undefined) return op(params);
      if (method === "sys.ping") return { pong: true, role: "server", name };
      if (method === "sys.stats") {
        return {
          role: "server",
          name,
          uptime_ms: Math.round(performance.now() - started),
          connections: listener.peers.size,
          requests: stats.requests,
          errors: stats.errors,
          rss_bytes: Deno.memoryUsage().rss,
        };
      }
    } catch (err) {
      stats.errors++;
      throw err;
    }
    stats.errors++;
    throw new DistError("UNKNOWN_METHOD", `Unknown method: ${method}`);
  };
  const registration = registrationFor(options); // --service: checked before listening
  const listener = listenOn("--port", {
    host: options.host as string,
    port: options.port as number,
    role: "server",
    name: "server",
    maxConnections: options.maxConnections as number,
    ...connSettings(options),
    onRequest: loggedRequests(log, handle),
  });
  name ??= `server-${listener.addr.port}`;
  // `by` and the handshake name are fixed once the port (maybe 0) is bound.
  setLogInstance(name);
  listener.name = listener.by = name;
  announceListening(ctx, log, { addr: listener.addr, name });
  ctx.onForcedExit?.(() => {
    let handling = 0;
    for (const peer of listener.peers) handling += peer.handling;
    return handling > 0 ? `${handling} request(s) being handled` : undefined;
  });
  const registrar = registration?.start(listener.addr, name);
  await untilAborted(ctx.signal);
  log.info("Shutting down: finishing {n} connection(s)", { n: listener.peers.size });
  await registrar?.stop(); // deregistered first: clients stop being sent here
  await listener.close(options.grace as number);
  log.info("Stopped after {requests}", { requests: counted(stats.requests, "request") });
  return 0;
}
