/**
 * @module
 * The balancer's L4 mode (`dist balancer --mode tcp`): a connection-level
 * proxy for services that do not speak dist (HTTP servers, Redis,
 * databases). Each client connection goes whole to one backend, chosen by
 * the RPC mode's policies (policies.ts: a backend's `inflight` is its open
 * connections here, so `least-loaded` is HAProxy's `leastconn`) over the
 * RPC mode's pool and health rules (backends.ts), with TCP checks
 * (health.ts); bytes go both ways untouched (splice.ts, raw_splice.ts over
 * the sockets of io.ts). proxy.ts takes each connection through that.
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
import type { OptionSpec } from "../../../config/mod.ts";
import { connectionsThatFit } from "../../../wire/descriptors.ts";
import { setLogInstance } from "../../_logging.ts";
import { announceListening, counted, type RunContext, untilAborted } from "../../_role.ts";
import { roleStatMetrics } from "../../../obs/mod.ts";
import type { PolicyName } from "../policies.ts";
import { log } from "../log.ts";
import { openIo } from "./io.ts";
import { checkTcpFlags } from "./options.ts";
import { addressOf, TcpProxy } from "./proxy.ts";

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
    roleStatMetrics(ctx.metrics.registry, "balancer-tcp", () => proxy.stats());
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
  // Before the sockets close: a check dials through them.
  await proxy.checks.stop();
  await io.close();
  log.info("Stopped after {n}", { n: counted(proxy.stats().connections_total, "connection") });
  return 0;
}
