/**
 * @module
 * The balancer's L4 mode (`dist balancer --mode tcp`): a connection-level
 * proxy for services that do not speak dist (HTTP servers, Redis,
 * databases). Each client connection goes whole to one backend, chosen by
 * the RPC mode's policies (policies.ts: a backend's `inflight` is its open
 * connections here, so `least-loaded` is HAProxy's `leastconn`) over the
 * RPC mode's pool and health rules (backends.ts), with TCP checks
 * (health.ts); bytes go both ways untouched (splice.ts).
 *
 * A backend that refuses a client's connect is taken out at once and the
 * connect is tried on the next one (each backend once); with none left the
 * client's connection is closed.
 *
 * Connections are counted by source, their address (IPv6 by /64), as the
 * native ports count them (wire/sources.ts, hostile35 H1): at
 * `--max-connections` a new client connection closes the oldest one that
 * has not sent a byte yet (wire/newcomers.ts), else, when it comes from a
 * source holding less than a quarter, the newest of the source holding the
 * most beyond its quarter; `--max-connections-per-source` bounds a source
 * always. Connections that never speak cannot hold every slot for the
 * idle timeout, nor can one address whose connections all speak.
 *
 * Each connection holds two file descriptors (client and backend), so
 * `--max-connections` is lowered at start to what the process's descriptor
 * limit allows (hostile35 H2), and a dial or check that fails for want of a
 * descriptor (EMFILE, ENFILE) closes the client but never counts against the
 * backend: the shortage is this process's, not the backend's.
 */
import { type OptionSpec, parseAddress } from "../../../config/mod.ts";
import { DistError, sleep, SourceTable } from "../../../wire/mod.ts";
import { clientSource } from "../../../auth/mod.ts";
import {
  connectionsThatFit,
  isDescriptorShortage,
  RUNTIME_DESCRIPTORS,
} from "../../../wire/descriptors.ts";
import { setLogInstance } from "../../_logging.ts";
import { announceListening, counted, type RunContext, untilAborted } from "../../_role.ts";
import { roleStatMetrics } from "../../../obs/mod.ts";
import { Backend, Pool, type Transition } from "../backends.ts";
import { createPolicy, type Policy, type PolicyName } from "../policies.ts";
import { backendLines, log, LogBudget } from "../log.ts";
import { CONNECT_TIMEOUT_MS, ConnectionOutlier, judge, TcpChecks } from "./health.ts";
import { type Ended, EndReason, IdleClock } from "./splice.ts";
import { type BackendConn, type ClientConn, type L4Io, openIo, type Spliced } from "./io.ts";
import { checkTcpFlags } from "./options.ts";

export { checkRpcFlags, TCP_MODE_OPTIONS, TCP_MODE_ROLE } from "./options.ts";
export { EndReason, IdleClock, Splice } from "./splice.ts";

/** What the L4 mode reads of the balancer's options. */
export interface TcpOptions {
  readonly host: string;
  readonly port: number;
  readonly name?: string;
  readonly backends: readonly string[];
  readonly policy: PolicyName;
  readonly checkInterval: number;
  readonly rise: number;
  readonly fall: number;
  readonly idleTimeout: number;
  readonly maxConnections: number;
  readonly maxConnectionsPerSource?: number;
  readonly grace: number;
}

/** What a connection's splice tells the proxy. */
interface Hooks {
  spoke: () => void;
  ended: () => void;
}

/** Why a connection that sent nothing was closed to make room. */
const NO_BYTE = "no byte sent yet";

/** Connections that could not be given a backend, refused over the limit, and so on. */
const connectionLines = new LogBudget("connections");

/**
 * Runs a TCP balancer until `ctx.signal`; resolves with its exit code.
 * @param spec the balancer's option spec (flags only RPC mode reads are refused)
 * @throws {UsageError} for flags that do not fit the mode
 * @throws {DistError} UNAVAILABLE when the port cannot be had (naming `--port`)
 */
export async function runTcpBalancer(
  options: TcpOptions,
  ctx: RunContext,
  spec: OptionSpec,
): Promise<number> {
  checkTcpFlags(options as unknown as Record<string, unknown>, spec);
  const io = openIo(options.host, options.port, options.backends.map(addressOf));
  const addr = io.addr;
  const name = options.name ?? `balancer-${addr.port}`;
  setLogInstance(name);
  const fit = connectionsThatFit(options.maxConnections, 2, { extra: options.backends.length });
  if (fit.lowered) {
    log.warn(
      "--max-connections {asked} lowered to {max}: the process may open {limit} file descriptors " +
        "(ulimit -n), 2 a connection (client and backend) and a reserve; raise ulimit -n for more",
      { asked: options.maxConnections, max: fit.max, limit: fit.limit },
    );
  }
  const proxy = new TcpProxy({ ...options, maxConnections: fit.max }, fit.limit, io);
  if (ctx.metrics) {
    ctx.metrics.name = name;
    roleStatMetrics(ctx.metrics.registry, "balancer", () => proxy.stats());
  }
  await proxy.checks.first(proxy.pool.list);
  proxy.checks.start(proxy.pool.list);
  const accepting = proxy.accept();
  announceListening(ctx, log, { addr, name });
  log.info("Passing TCP connections to {n} backend(s), policy {policy}, through {io}", {
    n: proxy.pool.list.length,
    policy: proxy.policy.name,
    io: io.kind,
  });
  ctx.onForcedExit?.(() => proxy.open > 0 ? counted(proxy.open, "connection") : undefined);
  await untilAborted(ctx.signal);
  log.info("Shutting down: waiting for {n} to end (at most {grace} ms)", {
    n: counted(proxy.open, "connection"),
    grace: options.grace,
  });
  proxy.stopping = true;
  io.closeListener();
  await accepting;
  await proxy.drain(options.grace);
  await io.close();
  await proxy.checks.stop();
  log.info("Stopped after {n}", { n: counted(proxy.stats().connections_total, "connection") });
  return 0;
}

/** The pool, the policy, the checks and the connections of one TCP balancer. */
class TcpProxy {
  readonly pool = new Pool();
  readonly policy: Policy;
  readonly checks: TcpChecks;
  readonly clock: IdleClock;
  stopping = false;
  /** The spliced connections, by their client's. */
  readonly #splices = new Map<ClientConn, Spliced>();
  /**
   * Client connections accepted and not yet ended (connecting or spliced), by
   * source: those that sent no byte yet are the newcomers closed first to make room.
   */
  readonly sources: SourceTable;
  #total = 0;
  #noBackend = 0;
  #connectFailures = 0;
  #noDescriptor = 0;
  /**
   * Descriptors held for connections: a client's from its accept, its backend's from the dial,
   * both until the connection's end (a connection closed to make room may still be dialing).
   */
  #fds = 0;
  /** The most {@link #fds} may reach: the descriptor limit less the runtime's own. */
  readonly #fdBudget: number;
  readonly #ticker: ReturnType<typeof setInterval>;
  readonly #io: L4Io;

  /** @param descriptorLimit the process's (`ulimit -n`; undefined: unknown) */
  constructor(options: TcpOptions, descriptorLimit: number | undefined, io: L4Io) {
    this.#io = io;
    this.#fdBudget = (descriptorLimit ?? Infinity) - RUNTIME_DESCRIPTORS;
    this.sources = new SourceTable({
      max: options.maxConnections,
      perSource: options.maxConnectionsPerSource,
      // An address, IPv6 by its /64 (no hello here: no user to count by).
      source: (_user, host) => clientSource(undefined, host),
      descriptors: 2, // client and backend, charged to the process's account from the accept
    });
    this.policy = createPolicy(options.policy);
    const rules = { rise: options.rise, fall: options.fall };
    for (const address of options.backends) {
      // No cap of its own: --max-connections bounds the client connections. (Not that, as a
      // connection closed to make room gives its backend connection back only once that closes.)
      const outlier = new ConnectionOutlier();
      this.pool.add(
        new Backend("server", address, { capacity: Number.MAX_SAFE_INTEGER, rules, outlier }),
      );
    }
    this.checks = new TcpChecks(options.checkInterval, (t) => this.#report(t));
    this.clock = new IdleClock(options.idleTimeout);
    // Idle connections are ended until the last one is (drain).
    this.#ticker = setInterval(() => this.#tick(), this.clock.tickMs);
  }

  /** Accepts until the listener closes. */
  accept(): Promise<void> {
    return this.#io.accept((client) => this.#take(client), () => this.sources.freed());
  }

  /** Client connections open now. */
  get open(): number {
    return this.sources.total;
  }

  /** Waits up to `graceMs` for the connections to end, then ends the rest. */
  async drain(graceMs: number): Promise<void> {
    const deadline = performance.now() + graceMs;
    while (this.open > 0 && performance.now() < deadline) {
      await sleep(Math.min(50, Math.max(1, deadline - performance.now())));
    }
    for (const s of this.#splices.values()) s.end(EndReason.Shutdown);
    await Promise.all([...this.#splices.values()].map((s) => s.done));
    clearInterval(this.#ticker);
  }

  /** The balancer's figures (for `--metrics`; the names follow the RPC mode's `sys.stats`). */
  stats() {
    const limits = this.sources.stats();
    return {
      mode: "tcp",
      connections: this.open,
      connections_total: this.#total,
      refused: limits.refused_full + limits.refused_source,
      evicted: limits.closed_no_hello + limits.closed_source,
      no_backend: this.#noBackend,
      connect_failures: this.#connectFailures,
      no_descriptor: this.#noDescriptor,
      connection_limits: limits,
      policy: this.policy.name,
      healthy: this.pool.healthy,
      backends: this.pool.list.length,
      checks_failed: this.pool.checksFailed,
    };
  }

  #tick(): void {
    this.clock.tick++;
    for (const s of this.#splices.values()) if (s.idle) s.end(EndReason.Idle);
  }

  #report(t: Transition | undefined): void {
    if (t === undefined) return;
    const fields = { backend: t.backend.name, reason: t.reason };
    if (t.to === "up") backendLines.info("Backend {backend} is up: {reason}", fields);
    else backendLines.warn("Backend {backend} is down: {reason}", fields);
  }

  /**
   * A client connection: counted by its source (sources.ts), which at the
   * limit closes another to make room or refuses this one; then it gets a
   * backend. It counts until it ends, or until it is closed to make room.
   */
  #take(client: ClientConn): void {
    const remote = client.remote;
    if (this.#fds + 2 > this.#fdBudget) {
      // Connections closed to make room still dialing: refused, not made room for (not EMFILE).
      this.#noDescriptor++;
      connectionLines.warn("Connection from {remote} refused: {n} file descriptors in use", {
        remote,
        n: this.#fds,
      });
      client.close();
      return;
    }
    const entry = this.sources.admit(client.host, (why, spoke) => {
      connectionLines.warn("Connection from {remote} closed to make room: {why}", {
        remote,
        why: spoke ? why.message.replace(/^Connection closed to make room: /, "") : NO_BYTE,
      });
      const splice = this.#splices.get(client);
      if (splice !== undefined) splice.end(EndReason.Evicted);
      else client.close();
    });
    if (entry instanceof DistError) {
      connectionLines.warn("Connection from {remote} refused: {why}", {
        remote,
        why: entry.message,
      });
      client.close();
      return;
    }
    this.#total++;
    this.#fds++;
    let left = false;
    // At once when the connection ends: its source's count is right for the next accept.
    const leave = () => {
      if (left) return;
      left = true;
      this.#fds--;
      entry.leave();
    };
    this.#forward(client, remote, { spoke: () => entry.settled(), ended: leave }).catch((err) => {
      log.error("Connection from {remote} failed: {error}", { remote, error: String(err) });
      client.close();
    }).finally(leave);
  }

  /**
   * Dials a backend for `client` (the next one if it refuses), then splices
   * the two; `hooks.spoke` is called at the client's first byte, `ended` at its end.
   */
  async #forward(client: ClientConn, remote: string, hooks: Hooks): Promise<void> {
    const tried = new Set<Backend>();
    for (;;) {
      const list = tried.size === 0 ? this.pool.list : this.pool.list.filter((b) => !tried.has(b));
      const backend = this.policy.pick(list);
      if (backend === undefined || this.stopping) {
        this.#noBackend++;
        connectionLines.warn("Connection from {remote} closed: no backend is up ({tried})", {
          remote,
          tried: tried.size === 0 ? "none tried" : `${tried.size} refused it`,
        });
        client.close();
        return;
      }
      tried.add(backend);
      backend.inflight++;
      this.#fds++;
      const started = performance.now();
      let conn: BackendConn;
      try {
        conn = await this.#io.dial(addressOf(backend.address), CONNECT_TIMEOUT_MS);
      } catch (err) {
        backend.inflight--;
        this.#fds--;
        if (isDescriptorShortage(err)) {
          // This process is out of descriptors: no backend is to blame, and the next would fail too.
          this.#noDescriptor++;
          connectionLines.warn(
            "Connection from {remote} closed: no file descriptor left to dial {backend} " +
              "({error}); the backend is not taken out",
            { remote, backend: backend.name, error: (err as Error).message },
          );
          client.close();
          return;
        }
        this.#connectFailures++;
        backend.failures++;
        const timedOut = err instanceof DistError && err.code === "TIMEOUT";
        const reason = (err as Error).message;
        this.#report(judge(backend, { ok: false, timedOut, reason }));
        continue;
      }
      backend.onAnswered(performance.now() - started, "answered");
      await this.#splice(client, conn, backend, remote, hooks);
      return;
    }
  }

  async #splice(
    client: ClientConn,
    conn: BackendConn,
    backend: Backend,
    remote: string,
    hooks: Hooks,
  ) {
    let open = true;
    const release = () => {
      if (!open) return;
      open = false;
      this.#splices.delete(client);
      backend.inflight--;
      this.#fds--;
      hooks.ended();
    };
    const splice = this.#io.splice(client, conn, {
      clock: this.clock,
      spoke: hooks.spoke,
      ended: release,
    });
    // Ended already (closed to make room while dialing): not kept.
    if (open) this.#splices.set(client, splice);
    // Debug lines only: their fields are not even built otherwise (a new connection costs little).
    const debug = log.isEnabledFor("debug");
    if (debug) {
      log.debug("Connection from {remote} to {backend}", { remote, backend: backend.name });
    }
    let ended: Ended;
    try {
      ended = await splice.done;
    } finally {
      release();
    }
    if (!debug) return;
    const fields = {
      remote,
      backend: backend.name,
      reason: ended.reason,
      detail: ended.detail === "" ? "" : ` (${ended.detail})`,
      up: ended.up,
      down: ended.down,
      ms: Math.round(ended.ms),
    };
    log.debug(
      "Connection from {remote} to {backend} closed ({reason}{detail}): " +
        "{up} bytes up, {down} bytes down in {ms} ms",
      fields,
    );
  }
}

/** Backends' addresses as dialed, parsed once each (a new connection dials one). */
const parsed = new Map<string, { host: string; port: number }>();

function addressOf(address: string): { host: string; port: number } {
  let a = parsed.get(address);
  if (a === undefined) {
    // Backends come and go (binders): the map is only ever as large as a few pools.
    if (parsed.size >= 4096) parsed.clear();
    parsed.set(address, a = parseAddress(address));
  }
  return a;
}
