import { getLogger } from "@logtape/logtape";
import { type Options, parseAddress } from "../config/mod.ts";
import { codecByName, DistError, Redialer } from "../wire/mod.ts";
import { findOperation, OPERATION_HELP } from "./ops.ts";
import { counted, type Role, type RunContext, untilAborted } from "./_role.ts";
import { setLogInstance } from "./_logging.ts";
import { connSettings } from "./_flags.ts";
import { loggedRequests } from "./_request_log.ts";

const log = getLogger(["dist", "worker"]);

/**
 * The worker: dials a balancer's worker port, registers (name, capacity),
 * then answers the requests the balancer hands it on that connection with
 * the server's operations. When the balancer goes away it redials with
 * backoff and registers again (the ZeroMQ guide's Paranoid Pirate worker;
 * the heartbeats are the wire's).
 */
export const worker: Role = {
  summary: "Dial a balancer's worker port, register, and run the tasks it hands out",
  flagHints: {
    "--port": "the worker dials, it does not listen: give --balancer HOST:PORT",
    "-p": "the worker dials, it does not listen: give --balancer HOST:PORT (or -b HOST:PORT)",
    "--host": "the worker dials, it does not listen: give --balancer HOST:PORT",
  },
  usage: [
    "dist worker [--balancer 127.0.0.1:8889] [--name NAME] [--capacity 16]",
    "",
    "Operations:",
    ...OPERATION_HELP.map((l) => "  " + l),
    "  sys.ping, sys.stats",
  ],
  options: {
    balancer: {
      type: "address",
      description: "The balancer's worker port",
      default: "127.0.0.1:8889",
      short: "b",
      ref: true,
      refPort: "workerPort",
      metavar: "HOST:PORT",
    },
    capacity: {
      type: "integer",
      description: "Most tasks run at once (the balancer sends no more)",
      default: 16,
      min: 1,
      max: 10_000,
      metavar: "N",
    },
    grace: {
      type: "duration",
      description: "On shutdown, how long tasks in flight may take to finish",
      default: 2000,
    },
  },
  run: runWorker,
};

async function runWorker(options: Options, ctx: RunContext): Promise<number> {
  const started = performance.now();
  const name = (options.name as string | undefined) ?? `worker-${Deno.pid}`;
  const capacity = options.capacity as number;
  const address = parseAddress(options.balancer as string);
  const where = `${address.host}:${address.port}`;
  setLogInstance(name);
  const stats = { tasks: 0, errors: 0, registrations: 0 };
  const handle = (method: string, params: unknown): unknown => {
    if (method === "sys.ping") return { pong: true, role: "worker", name };
    if (method === "sys.stats") {
      return {
        role: "worker",
        name,
        uptime_ms: Math.round(performance.now() - started),
        rss_bytes: Deno.memoryUsage().rss,
        balancer: where,
        connected: dialer.peer !== undefined,
        registrations: stats.registrations,
        capacity,
        tasks: stats.tasks,
        errors: stats.errors,
      };
    }
    stats.tasks++;
    const op = findOperation(method);
    if (op === undefined) {
      stats.errors++;
      throw new DistError("UNKNOWN_METHOD", `Unknown method: ${method}`);
    }
    try {
      return op(params);
    } catch (err) {
      stats.errors++;
      throw err;
    }
  };
  /** Aborted with the reason when --balancer turns out to be something else. */
  const misdialed = new AbortController();
  const dialer = new Redialer(address, {
    ...connSettings(options),
    role: "worker",
    name,
    by: name,
    codec: codecByName(options.codec as string),
    onRequest: loggedRequests(log, handle),
    onConnect: async (peer) => {
      try {
        await peer.call("worker.register", { name, capacity }, { timeout: 5000 });
      } catch (err) {
        // UNKNOWN_METHOD is an answer: what listens there is not a balancer's
        // worker port, and dialing it again will not make it one.
        if (err instanceof DistError && err.code === "UNKNOWN_METHOD") {
          misdialed.abort(
            new DistError(
              "UNKNOWN_METHOD",
              `${where} is not a balancer's worker port: ${peer.remote.name} ` +
                `(${peer.remote.role}) answered worker.register with: ${err.message}`,
            ),
          );
        }
        throw err;
      }
      stats.registrations++;
      log.info("Registered with {addr} as {name} (capacity {capacity})", {
        addr: where,
        name,
        capacity,
      });
    },
  });
  dialer.start();
  log.info("Worker {name} dialing balancer at {addr}", { name, addr: where });
  ctx.onForcedExit?.(() => {
    const n = dialer.peer?.handling ?? 0;
    return n > 0 ? `${n} task(s) in flight` : undefined;
  });
  await untilAborted(AbortSignal.any([ctx.signal, misdialed.signal]));
  if (misdialed.signal.aborted) {
    await dialer.stop();
    throw misdialed.signal.reason;
  }
  const peer = dialer.peer;
  log.info("Shutting down: finishing {n} task(s)", { n: peer?.handling ?? 0 });
  await peer?.idle(options.grace as number);
  await dialer.stop();
  log.info("Stopped after {n}", { n: counted(stats.tasks, "task") });
  return 0;
}
