/**
 * @module
 * The balancer: takes client requests on one port and spreads them over
 * live backends — servers it dials (`--backends`, or every instance of
 * `--service` found through binders) and workers that dial in on
 * `--worker-port` — with failover, a bounded queue and health checks.
 *
 * This file holds the option spec and `run()`, which only wires the parts
 * together: `backends.ts` (pool and health rules), `policies.ts` (which
 * backend next), `forward.ts` (dispatch, queue, retries, retry budget,
 * idempotency guard), `queue.ts` (the bounded waiting line), `sources.ts`
 * (where backends come from: `--backends`, `--service` through binders,
 * workers registering), `links.ts` (connections to backends and their
 * health checks), `relay.ts` (one request on a backend's connection,
 * decoded or passed through as bytes).
 */
import { formatAddress, LISTENER_OPTIONS, type Options, UsageError } from "../../config/mod.ts";
import { DEFAULT_BINDERS, serviceName } from "../_flags.ts";
import {
  codecByName,
  DistError,
  type Envelope,
  type Listener,
  type Peer,
  type RequestMeta,
} from "../../wire/mod.ts";
import { announceListening, counted, type Role, type RunContext, untilAborted } from "../_role.ts";
import { setLogInstance } from "../_logging.ts";
import { connSettings } from "../_flags.ts";
import { type HealthRules, Pool, type Transition } from "./backends.ts";
import { Dispatcher, RetryBudget } from "./forward.ts";
import { ServerSet, ServiceSource, WorkerRegistry } from "./sources.ts";
import { createPolicy, POLICY_NAMES, type PolicyName } from "./policies.ts";
import { type ForwardJob, Relay } from "./relay.ts";
import { backendLines, log } from "./log.ts";
import { listenOn } from "../_listen.ts";

export { Backend, LatencyWindow, Pool } from "./backends.ts";
export { Dispatcher, type DispatchHooks, type Job, RetryBudget } from "./forward.ts";
export { type Candidate, createPolicy, type Policy, POLICY_NAMES } from "./policies.ts";
export { WaitQueue } from "./queue.ts";

export const balancer: Role = {
  summary: "Spread client requests over servers (--backends, --service) and workers that dial in",
  usage: [
    "dist balancer [--port 5556] [--backends HOST:PORT,...] [--worker-port 8889]",
    "              [--service NAME --binders HOST:PORT,...]",
    "              [--policy round-robin|least-loaded|p2c|random]",
    "",
    "Clients call any method; all but sys.* and balancer.* go to a backend, and the",
    "answer comes back with the backend's `by`. balancer.backends lists the backends.",
    'A request with "idem": false is never sent twice (UNAVAILABLE if its backend dies).',
  ],
  options: {
    ...LISTENER_OPTIONS,
    port: {
      type: "port",
      description: "Port clients connect to (0 picks a free one)",
      default: 5556,
      short: "p",
    },
    backends: {
      type: "addresses",
      description: "Servers to dial and spread requests over",
      default: [],
      ref: true,
      metavar: "HOST:PORT,...",
    },
    service: {
      type: "string",
      description: "Also spread over every live instance of this service, found through binders",
      metavar: "NAME",
    },
    binders: {
      type: "addresses",
      description: `With --service: binders to watch it on (default ${DEFAULT_BINDERS})`,
      ref: true,
      metavar: "HOST:PORT,...",
    },
    workerPort: {
      type: "port",
      description: "Port workers dial in on (0 picks a free one)",
      default: 8889,
    },
    policy: {
      type: "choice",
      description: "Which backend takes the next request",
      choices: POLICY_NAMES,
      default: "round-robin",
    },
    checkInterval: {
      type: "duration",
      description: "Time between health checks (sys.ping) of each backend",
      default: 1000,
    },
    rise: {
      type: "integer",
      description: "Successful checks that bring a backend back",
      default: 2,
      min: 1,
    },
    fall: {
      type: "integer",
      description: "Missed checks that take a backend out",
      default: 3,
      min: 1,
    },
    retries: {
      type: "integer",
      description: "Most extra sends of a request whose backend died with it",
      default: 2,
      min: 0,
    },
    retryBudget: {
      type: "number",
      description: "Retries allowed as a share of requests (plus 10 a second)",
      default: 0.2,
      min: 0,
      max: 1,
      metavar: "RATIO",
    },
    maxInflight: {
      type: "integer",
      description: "Most requests in flight on one server (a worker declares its own)",
      default: 128,
      min: 1,
      metavar: "N",
    },
    queue: {
      type: "integer",
      description: "Most requests waiting for a backend; beyond it OVERLOADED",
      default: 10_000,
      min: 0,
      metavar: "N",
    },
    queueBytes: {
      type: "integer",
      description: "Most bytes of requests waiting for a backend; beyond it OVERLOADED",
      default: 64 * 1024 * 1024,
      min: 0,
      metavar: "BYTES",
    },
    queueTimeout: {
      type: "duration",
      description: "How long a request waits for a backend before it fails",
      default: 3000,
    },
    timeout: {
      type: "duration",
      description: "Longest wait for a backend's answer",
      default: 30_000,
    },
    passthrough: {
      type: "boolean",
      description: "Forward JSON requests and answers as bytes, without decoding them",
      default: true,
    },
  },
  run: runBalancer,
};

async function runBalancer(options: Options, ctx: RunContext): Promise<number> {
  const started = performance.now();
  const service = serviceFrom(options);
  const rules: HealthRules = { rise: options.rise as number, fall: options.fall as number };
  const pool = new Pool();
  /** Set once the balancer is stopping: backends it lets go are not news. */
  let stopping = false;
  const report = (t: Transition | undefined, quiet = false) => {
    if (t === undefined) return;
    const fields = { backend: t.backend.name, peer: t.backend.peerName, reason: t.reason };
    if (stopping) {
      log.debug("Backend {backend} ({peer}) let go: {reason}", fields);
      return;
    }
    if (t.to === "up") {
      if (!quiet) backendLines.info("Backend {backend} ({peer}) is up: {reason}", fields);
      dispatcher.pump();
    } else if (!quiet) {
      backendLines.warn("Backend {backend} ({peer}) is down: {reason}", fields);
    }
  };
  const relay = new Relay({
    timeoutMs: options.timeout as number,
    report,
    logRequests: log.isEnabledFor("debug"),
  });
  const dispatcher = new Dispatcher<ForwardJob>(
    pool,
    createPolicy(options.policy as PolicyName),
    relay,
    {
      queueLimit: options.queue as number,
      queueBytes: options.queueBytes as number,
      queueTimeoutMs: options.queueTimeout as number,
      retries: options.retries as number,
      budget: new RetryBudget({ ratio: options.retryBudget as number }),
    },
  );
  relay.dispatcher = dispatcher;

  let name = options.name as string | undefined;
  const conn = {
    ...connSettings(options),
    host: options.host as string,
    role: "balancer",
    name: "balancer",
  };

  const stats = () => ({
    role: "balancer",
    name,
    uptime_ms: Math.round(performance.now() - started),
    rss_bytes: Deno.memoryUsage().rss,
    connections: clients.peers.size,
    workers: registry.size,
    policy: dispatcher.policy.name,
    healthy: pool.healthy,
    queued: dispatcher.queued,
    queued_bytes: dispatcher.queuedBytes,
    ...dispatcher.stats,
    // A count: the list (balancer.backends) can outgrow a frame, and sys.stats must answer.
    backends: pool.list.length,
  });
  /** sys.* and balancer.* on either port; undefined for anything else. */
  const own = (method: string): (() => unknown) | undefined => {
    if (method === "sys.ping") return () => ({ pong: true, role: "balancer", name });
    if (method === "sys.stats") return stats;
    if (method === "balancer.backends") return () => pool.list.map((b) => b.describe());
    if (method === "worker.register") return misdialedWorker;
    if (method.startsWith("sys.") || method.startsWith("balancer.")) {
      return () => {
        throw new DistError("UNKNOWN_METHOD", `Unknown method: ${method}`);
      };
    }
    return undefined;
  };

  // A worker given the client port instead of the worker port is told which
  // port to dial, as a client dialing the worker port is (see the worker port's handler).
  const misdialedWorker = () => {
    // (workers is unset only while the worker port is still being opened.)
    const port = workers === undefined
      ? `:${options.workerPort}`
      : formatAddress({ host: workers.addr.hostname, port: workers.addr.port });
    throw new DistError(
      "UNKNOWN_METHOD",
      `This is the client port of ${name}: workers dial its worker port, ${port} ` +
        `(--worker-port): give the worker --balancer ${port}`,
    );
  };

  const onClientRequest = (method: string, params: unknown, peer: Peer, meta: RequestMeta) => {
    const answer = own(method);
    if (answer !== undefined) return answer();
    return new Promise((resolve, reject) => {
      dispatcher.submit({
        raw: false,
        method,
        params,
        idempotent: meta.idempotent,
        client: peer.remote.name,
        attempts: 0,
        deadline: 0,
        sentAt: 0,
        queuedBytes: 0,
        resolve,
        reject,
      });
    });
  };

  // JSON requests are forwarded as bytes; the balancer's own methods are decoded.
  const onRawRequest = options.passthrough
    ? (peer: Peer, request: Envelope) => {
      if (own(request.method!) !== undefined) return false;
      dispatcher.submit(relay.rawJob(request, peer));
      return true;
    }
    : undefined;

  const clients = listenOn("--port", {
    ...conn,
    port: options.port as number,
    maxConnections: options.maxConnections as number,
    onRequest: onClientRequest,
    onRawRequest,
  });
  const sourceOptions = {
    pool,
    rules,
    checkIntervalMs: options.checkInterval as number,
    report,
    maxInflight: options.maxInflight as number,
  };
  const registry = new WorkerRegistry(sourceOptions);
  let workers: Listener | undefined;
  try {
    workers = listenOn("--worker-port", {
      ...conn,
      port: options.workerPort as number,
      onRequest: (method, params, peer) => {
        if (method === "worker.register") {
          return { ...registry.register(params, peer), balancer: name };
        }
        const answer = own(method);
        if (answer !== undefined) return answer();
        throw new DistError(
          "UNKNOWN_METHOD",
          `Unknown method on the worker port: ${method} (workers call worker.register)`,
        );
      },
    });
  } catch (err) {
    await clients.close(0);
    throw err;
  }
  name ??= `balancer-${clients.addr.port}`;
  setLogInstance(name);
  const servers = new ServerSet({
    ...sourceOptions,
    // Servers see this balancer by its instance name (in their logs and stats).
    dial: {
      ...connSettings(options),
      role: "balancer",
      name,
      codec: codecByName(options.codec as string),
    },
  });

  clients.name = clients.by = name;
  workers.name = workers.by = name;
  for (const address of options.backends as string[]) servers.add(address, "backends");
  const discovery = service === undefined
    ? undefined
    : new ServiceSource(service, { servers, binderOptions: options as never, name }); // TRANSITIONAL
  announceListening(ctx, log, { addr: clients.addr, name });
  log.info("Listening for workers on {addr}; {n} server backend(s), policy {policy}", {
    addr: `${workers.addr.hostname}:${workers.addr.port}`,
    n: servers.size,
    policy: dispatcher.policy.name,
  });
  ctx.onForcedExit?.(() => {
    let handling = 0;
    for (const peer of clients.peers) handling += peer.handling;
    return handling > 0 ? `${handling} request(s) in flight` : undefined;
  });

  await untilAborted(ctx.signal);
  log.info("Shutting down: finishing requests of {n} client connection(s)", {
    n: clients.peers.size,
  });
  // Stop accepting clients and let their requests finish (backends stay up
  // meanwhile), then fail what still waits and let the backends go.
  await clients.close(options.grace as number);
  stopping = true;
  dispatcher.close(new DistError("UNAVAILABLE", "Balancer is shutting down"));
  await discovery?.stop();
  await Promise.all([workers.close(0), servers.stop()]);
  log.info("Stopped after {n} ({retries} retried)", {
    n: counted(dispatcher.stats.requests, "request"),
    retries: dispatcher.stats.retries,
  });
  return 0;
}

/** `--service`, checked; `--binders` without it is a mistake. @throws {UsageError} */
function serviceFrom(options: Options): string | undefined {
  if (options.service === undefined) {
    if (options.binders !== undefined) {
      throw new UsageError("--binders applies only with --service NAME");
    }
    return undefined;
  }
  return serviceName(options.service);
}
