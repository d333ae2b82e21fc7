import { getLogger } from "@logtape/logtape";
import { dialerCounters } from "../obs/mod.ts";
import {
  defineOptions,
  formatAddress,
  parseAddress,
  type RoleOptions,
  UsageError,
} from "../config/mod.ts";
import { serve } from "../clients/mod.ts";
import { ops, worker as workerContract } from "../clients/contracts/mod.ts";
import { OPERATION_HELP, OPERATIONS } from "./ops.ts";
import { counted, defineRole, type RunContext, untilAborted } from "./_role.ts";
import { setLogInstance } from "./_logging.ts";
import { connSettings } from "./_flags.ts";
import { loggedRequests } from "./_request_log.ts";
import { printableJson } from "./_printable.ts";

const log = getLogger(["dist", "worker"]);

const WORKER_OPTIONS = defineOptions({
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
});
type WorkerOptions = RoleOptions<typeof WORKER_OPTIONS>;

/**
 * The worker: dials a balancer's worker port, registers (name, capacity),
 * then answers the requests the balancer hands it on that connection with
 * the server's operations, through the library's serve(). When the balancer
 * goes away it redials with backoff and registers again (the ZeroMQ
 * guide's Paranoid Pirate worker; the heartbeats are the wire's).
 */
export const worker = defineRole({
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
  options: WORKER_OPTIONS,
  run: runWorker,
});

async function runWorker(options: WorkerOptions, ctx: RunContext): Promise<number> {
  const name = options.name ?? `worker-${Deno.pid}`;
  try {
    // A name every balancer refuses is the user's mistake, said once: it retried for ever
    // (hostile46a G4).
    workerContract.methods.register.params({ name, capacity: options.capacity });
  } catch (err) {
    throw new UsageError(`--name ${printableJson(name)}: ${(err as Error).message}`);
  }
  const address = parseAddress(options.balancer);
  setLogInstance(name);
  const worker = serve(address, { contracts: [ops], handlers: OPERATIONS }, {
    capacity: options.capacity,
    name,
    codec: options.codec,
    wire: connSettings(options),
    wrap: (handle) => loggedRequests(log, handle),
  });
  dialerCounters(ctx.metrics?.registry, {
    tasks: () => worker.counters.tasks,
    taskErrors: () => worker.counters.errors,
    registrations: () => worker.counters.registrations,
  });
  log.info("Worker {name} dialing balancer at {addr}", { name, addr: formatAddress(address) });
  ctx.onForcedExit?.(() =>
    worker.handling > 0 ? `${worker.handling} task(s) in flight` : undefined
  );
  const misdialed = await Promise.race([untilAborted(ctx.signal), worker.ended]);
  if (misdialed !== undefined) throw misdialed;
  log.info("Shutting down: finishing {n} task(s)", { n: worker.handling });
  await worker.drain(options.grace);
  log.info("Stopped after {n}", { n: counted(worker.counters.tasks, "task") });
  return 0;
}
