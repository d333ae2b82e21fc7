/**
 * @module
 * The balancer: takes client requests on one port and spreads them over
 * live backends — servers it dials (`--backends`, or every instance of
 * `--service` found through binders) and workers that dial in on
 * `--worker-port` — with failover, a bounded queue and health checks.
 *
 * This file holds `run()`, which only wires the parts together:
 * `options.ts` (the flags), `backends.ts` (pool and health rules),
 * `policies.ts` (which backend next), `forward.ts` (dispatch, queue,
 * retries, retry budget, idempotency guard), `queue.ts` (the fair waiting
 * line), `shares.ts` (each connection's share of the backends, bulk flows
 * yielding to the others), `sources.ts`
 * (where backends come from: `--backends`, `--service` through binders,
 * workers registering), `links.ts` (connections to backends and their
 * health checks), `relay.ts` (one request on a backend's connection,
 * decoded or passed through as bytes), `fast_paths.ts` (requests taken as
 * bytes: JSON, and MessagePack in `msgpack_job.ts`; `tarpit.ts` pauses a
 * client refused for its size as JSON), `pressure.ts` (what
 * clients and backends may hold of each other's output).
 */
import { clientSource } from "../../auth/mod.ts";
import { formatAddress, UsageError } from "../../config/mod.ts";
import {
  codecByName,
  DistError,
  msgpackCodec,
  owns,
  type Peer,
  type RequestMeta,
  setFlushAt,
} from "../../wire/mod.ts";
import { unread } from "./pressure.ts";
import { useRawSend } from "../../wire/raw_send.ts";
import { shareDescriptors } from "../../wire/descriptors.ts";
import { shareOutbound } from "../../wire/outbound.ts";
import {
  type BackendsPage,
  balancer as balancerContract,
  sys,
  worker as workerContract,
} from "../../clients/contracts/mod.ts";
import { counted, defineRole, type RunContext } from "../_role.ts";
import { forwardLatency } from "../../obs/mod.ts";
import { connSettings, serviceName } from "../_flags.ts";
import { type Bound, listening, type Served, serving } from "../_shell.ts";
import { type Backend, Pool, type Transition } from "./backends.ts";
import { Dispatcher, RetryBudget } from "./forward.ts";
import { ServerSet, ServiceSource, WorkerRegistry } from "./sources.ts";
import { createPolicy } from "./policies.ts";
import { BALANCER_OPTIONS, type BalancerOptions } from "./options.ts";
import { type ForwardJob, Relay } from "./relay.ts";
import { backendLines, log } from "./log.ts";
import { checkRpcFlags, runTcpBalancer, TCP_MODE_ROLE } from "./tcp/mod.ts";
import { Reclaimer } from "./reclaim.ts";
import { ControlTurns } from "./control_turns.ts";
import { listBackends } from "./listing.ts";
import { runThreads, type ThreadInfo } from "./threads.ts";
import { boundOwnFrames } from "./own_frames.ts";
import { DECODE_AT_MOST, rawForwarding } from "./fast_paths.ts";
import type { MsgpackRoute } from "./msgpack_job.ts";
import type { Link } from "./links.ts";
import { Tarpit } from "./tarpit.ts";

export { Backend, LatencyWindow, Pool } from "./backends.ts";
export { Dispatcher, type DispatchHooks, type Job, RetryBudget } from "./forward.ts";
export { type Candidate, createPolicy, type Policy, POLICY_NAMES } from "./policies.ts";
export { FairQueue, WaitQueue } from "./queue.ts";

/**
 * Most requests of one client connection in the balancer at once (sent or
 * waiting); the rest wait unread in its socket. Two servers' worth of
 * `--max-inflight`: a client gets full use of the backends from one
 * connection, and one that pipelines without reading holds no more than
 * this of the queue (the wire's default, 4096, let one such client fill
 * the queue for 3 s at a time).
 */
const CLIENT_MAX_IN_FLIGHT = 256;

/** Output size at which a connection's turn of output goes out before the turn ends. */
const RELAY_FLUSH_AT = 64 * 1024;

export const balancer = defineRole({
  summary: "Spread client requests over servers (--backends, --service) and workers that dial in",
  usage: [
    "dist balancer [--port 5556] [--backends HOST:PORT,...] [--worker-port 8889]",
    "              [--service NAME --binders HOST:PORT,...]",
    "              [--policy round-robin|least-loaded|p2c|random]",
    "dist balancer --mode tcp --backends HOST:PORT,... [--idle-timeout 10m]",
    "",
    "Clients call any method; all but sys.* and balancer.* go to a backend, and the",
    "answer comes back with the backend's `by`. balancer.backends lists the backends.",
    'A request with "idem": false is never sent twice (UNAVAILABLE if its backend dies).',
  ],
  options: BALANCER_OPTIONS,
  ...TCP_MODE_ROLE,
  run: runBalancer,
});

/** The pool, the relay and the dispatcher, with the log of backends going up and down. */
function forwarding(options: BalancerOptions) {
  const pool = new Pool();
  const reclaimer = new Reclaimer();
  pool.onRemoved = () => reclaimer.left();
  /** Set once the balancer is stopping: backends it lets go are not news. */
  const state = { stopping: false };
  const report = (t: Transition | undefined, quiet = false) => {
    if (t === undefined) return;
    const fields = { backend: t.backend.name, peer: t.backend.peerName, reason: t.reason };
    if (state.stopping) {
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
    timeoutMs: options.timeout,
    report,
    logRequests: log.isEnabledFor("debug"),
    finish: (job, outcome) => dispatcher.finish(job, outcome),
    wake: () => dispatcher.pump(),
    replay: (job): boolean => dispatcher.replay(job),
    resend: (job): boolean => dispatcher.resend(job),
    sourceOf,
  });
  const dispatcher = new Dispatcher<ForwardJob>(pool, createPolicy(options.policy), relay, {
    queueLimit: options.queue,
    queueBytes: options.queueBytes,
    queueTimeoutMs: options.queueTimeout,
    retries: options.retries,
    budget: new RetryBudget({ ratio: options.retryBudget }),
    contendedShare: options.clientShare,
    sourceOf,
    unread,
  });
  const forward = (method: string, params: unknown, peer: Peer, meta: RequestMeta) =>
    new Promise((resolve, reject) => {
      dispatcher.submit({
        raw: false,
        method,
        params,
        idempotent: meta.idempotent,
        client: peer.remote.name,
        flow: peer,
        attempts: 0,
        deadline: 0,
        sentAt: 0,
        takenAt: 0,
        queuedBytes: 0,
        bulk: false,
        bytes: 0,
        resolve,
        reject,
      });
    });
  return { pool, relay, dispatcher, report, state, forward, reclaimer };
}

/**
 * A client connection's source, whose connections share its shares while
 * another source is busy (shares.ts): its user when it authenticated as one
 * of its own (not the shared token, which every client may hold), else the
 * address it connects from.
 */
function sourceOf(flow: object): string {
  const peer = flow as Peer;
  return clientSource(peer.identity?.user, peer.conn.remoteHost);
}

function runBalancer(options: BalancerOptions, ctx: RunContext): Promise<number> {
  // L4 mode (tcp/): connections of any TCP service, passed as bytes.
  if (options.mode === "tcp") return runTcpBalancer(options, ctx, BALANCER_OPTIONS);
  checkRpcFlags(options, BALANCER_OPTIONS);
  if (options.threads > 1) {
    if (options.backends.length === 0 && serviceFrom(options) === undefined) {
      // Each thread forwards to its own backends: a dial-in worker serves thread 0 alone, and
      // the other threads' clients failed UNAVAILABLE beside it (hostile46a G2).
      throw new UsageError(
        "--threads applies with --backends or --service: dial-in workers serve thread 0's " +
          "clients only",
      );
    }
    return runThreads(options, ctx, runBalancerThread);
  }
  return runBalancerThread(options, ctx, { index: 0, count: 1 });
}

/** One RPC balancer on this thread (thread `index` of `--threads`, see threads.ts). */
export function runBalancerThread(
  options: BalancerOptions,
  ctx: RunContext,
  thread: ThreadInfo,
): Promise<number> {
  const service = serviceFrom(options);
  // Each thread's isolate counts its own connections: a thread's share of the descriptors and
  // of the process's output.
  shareDescriptors(thread.count);
  if (thread.count > 1) shareOutbound(thread.count);
  // Batches go on whole (see setFlushAt; 64 KiB: a larger turn still starts early).
  setFlushAt(RELAY_FLUSH_AT);
  // Writes by one libc send where it can (wire/raw_send.ts).
  useRawSend();
  const parts = forwarding(options);
  if (ctx.metrics) parts.dispatcher.latency = forwardLatency(ctx.metrics.registry);
  return listening(ctx, {
    role: "balancer",
    log,
    options,
    listen: { maxInFlight: CLIENT_MAX_IN_FLIGHT },
    setUp: (bound) => setUpBalancer(options, service, parts, bound, thread),
  });
}

/** The forwarding parts (see {@link forwarding}). */
type Forwarding = ReturnType<typeof forwarding>;

/** What the balancer's own ports answer themselves; the client port forwards the rest. */
const own = owns([sys, balancerContract, workerContract]);

/**
 * The balancer on its bound port: the worker port beside it, the servers
 * (`--backends`, `--service`), what the client port serves and forwards.
 */
function setUpBalancer(
  options: BalancerOptions,
  service: string | undefined,
  parts: Forwarding,
  bound: Bound,
  thread: ThreadInfo,
): Served {
  const { pool, report, forward } = parts;
  const backends = (page: BackendsPage | undefined) =>
    listBackends(pool.list, (b) => b.describe(), { page, maxFrame: options.maxFrame });
  const sources = {
    pool,
    rules: { rise: options.rise, fall: options.fall },
    checkIntervalMs: options.checkInterval,
    report,
    maxInflight: options.maxInflight,
    maxWorkers: options.maxWorkers,
    maxBackends: options.maxBackends,
  };
  const registry = new WorkerRegistry(sources);
  // balancer.backends and sys.stats take a few ms a turn, both ports together (control_turns.ts).
  const control = new ControlTurns();
  // Thread 0 alone takes workers, so --max-workers and a worker's name hold for the process
  // (each thread took its own: hostile46a G1); the others' clients go to the servers.
  const workerPort = thread.index > 0
    ? { addr: { hostname: options.host, port: options.workerPort } }
    : bound.also(
      options.workerPort,
      "--worker-port",
      serving([balancerContract, workerContract], {
        "balancer.backends": backends,
        "worker.register": (p, peer) => ({ ...registry.register(p, peer), balancer: bound.name }),
      }, { unknown: (m) => own(m) ? undefined : workerPortOnly(m), wrap: control.wrap }),
    );
  thread.onWorkerPort?.(workerPort.addr.port);
  const servers = new ServerSet({
    ...sources,
    // Servers see this balancer by its instance name (in their logs and stats).
    dial: {
      ...connSettings(options),
      role: "balancer",
      name: bound.name,
      codec: codecByName(options.codec),
    },
  });
  for (const address of options.backends) servers.add(address, "backends");
  const discovery = service === undefined
    ? undefined
    : new ServiceSource(service, { servers, binderOptions: options, name: bound.name });
  const workersAt = formatAddress({ host: workerPort.addr.hostname, port: workerPort.addr.port });
  const route = options.passthrough ? msgpackRoute(options, parts.pool) : undefined;
  return {
    serve: serving([balancerContract, workerContract], {
      "balancer.backends": backends,
      "worker.register": () => misdialedWorker(bound.name, workersAt),
    }, { fallback: forward, wrap: control.wrap }),
    fast: boundOwnFrames(
      route && rawForwarding(parts.dispatcher, parts.relay, own, route),
      own,
    ),
    onPeer: (peer) => {
      parts.relay.pressure.arrived(peer);
      route?.arrived?.(peer);
    },
    paced: (source) => parts.relay.pressure.pacedAs(source),
    stats: () => ({
      ...balancerStats(parts, bound, registry),
      ...(thread.count > 1 ? { thread: thread.index, threads: thread.count } : {}),
    }),
    ...lifecycle(parts, bound, { workerPort: workerPort.addr, servers, discovery }),
  };
}

/** The balancer's part of `sys.stats`. */
function balancerStats(
  { dispatcher, pool, relay }: Forwarding,
  bound: Bound,
  workers: WorkerRegistry,
) {
  return {
    connections: bound.peers.size,
    workers: workers.size,
    policy: dispatcher.policy.name,
    healthy: pool.healthy,
    checks_failed: pool.checksFailed,
    queued: dispatcher.queued,
    queued_clients: dispatcher.queuedClients,
    queued_bytes: dispatcher.queuedBytes,
    active_clients: dispatcher.activeClients,
    ...dispatcher.stats,
    trials_sent_on: relay.trialsSentOn,
    ...relay.pressure.stats,
    // A count: the list (balancer.backends) can outgrow a frame, and sys.stats must answer.
    backends: pool.list.length,
  };
}

/**
 * What the balancer says once listening, and how it stops: client requests
 * finish first (backends stay up meanwhile), then what still waits fails
 * and the backends go.
 */
function lifecycle(
  { dispatcher, state, reclaimer }: Forwarding,
  bound: Bound,
  sides: {
    workerPort: { hostname: string; port: number };
    servers: ServerSet;
    discovery?: ServiceSource;
  },
): Pick<Served, "started" | "inFlight" | "stopping" | "stopped"> {
  const { workerPort, servers, discovery } = sides;
  return {
    started: () =>
      log.info("Listening for workers on {addr}; {n} server backend(s), policy {policy}", {
        addr: `${workerPort.hostname}:${workerPort.port}`,
        n: servers.size,
        policy: dispatcher.policy.name,
      }),
    inFlight: () => {
      let handling = 0;
      for (const peer of bound.peers) handling += peer.handling;
      return handling > 0 ? `${handling} request(s) in flight` : undefined;
    },
    stopping: () =>
      log.info("Shutting down: finishing requests of {n} client connection(s)", {
        n: bound.peers.size,
      }),
    stopped: async () => {
      state.stopping = true;
      reclaimer.stop();
      dispatcher.close(new DistError("UNAVAILABLE", "Balancer is shutting down"));
      await discovery?.stop();
      await servers.stop();
      log.info("Stopped after {n} ({retries} retried)", {
        n: counted(dispatcher.stats.requests, "request"),
        retries: dispatcher.stats.retries,
      });
    },
  };
}

/** What the worker port says to anything but a worker registering. */
function workerPortOnly(method: string): string {
  return `Unknown method on the worker port: ${method} (workers call worker.register)`;
}

/**
 * A worker given the client port instead of the worker port is told which
 * port to dial, as a client dialing the worker port is (see workerPortOnly).
 */
function misdialedWorker(name: string, workersAt: string): never {
  throw new DistError(
    "UNKNOWN_METHOD",
    `This is the client port of ${name}: workers dial its worker port, ${workersAt} ` +
      `(--worker-port): give the worker --balancer ${workersAt}`,
  );
}

/** `--service`, checked; `--binders` without it is a mistake. @throws {UsageError} */
function serviceFrom(options: BalancerOptions): string | undefined {
  if (options.service === undefined) {
    if (options.binders !== undefined) {
      throw new UsageError("--binders applies only with --service NAME");
    }
    return undefined;
  }
  return serviceName(options.service);
}

/**
 * What a MessagePack request's params may take as JSON: the frame, unless
 * a backend speaks MessagePack (the servers dialed with `--codec msgpack`,
 * or a worker that registered in it) and may take them decoded; such a
 * request goes only to one of those (fitting.ts). A client refused for it
 * is paused (tarpit.ts).
 */
function msgpackRoute(options: BalancerOptions, pool: Pool): MsgpackRoute {
  const dialsMsgpack = codecByName(options.codec) === msgpackCodec;
  const tarpit = new Tarpit();
  const decoder = (b: Backend) => (b.link as Link | undefined)?.peer?.codec === msgpackCodec;
  return {
    maxFrame: options.maxFrame,
    refused: (client) => void tarpit.hold(client, sourceOf(client)),
    // A MessagePack frame past DECODE_AT_MOST may be refused: paused first if its source was.
    arrived: (client) =>
      client.conn.onFrameBegun = (length) => {
        if (length > DECODE_AT_MOST && client.codec === msgpackCodec) {
          tarpit.early(client, sourceOf(client));
        }
      },
    decodes: () => dialsMsgpack || pool.list.some(decoder),
    decoder: dialsMsgpack ? undefined : decoder,
  };
}
