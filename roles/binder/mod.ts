/**
 * @module
 * The binder: a replicated service registry. This file holds the option spec
 * and `run()`, which only wires the parts together:
 *
 * - `clock.ts`: versions (hybrid logical clock + binder id);
 * - `registry.ts`: instances, leases, cyclic lookup, tombstones, merge (no sockets);
 * - `digest.ts`: the bucketed digest anti-entropy compares;
 * - `records.ts`: wire forms and the checks on clients' and peers' input;
 * - `replication.ts`: push, anti-entropy and catch-up with peer binders;
 * - `verify.ts`: shared verification of reported failures;
 * - `watch.ts`: `binder.watch` subscribers and `binder.changed` notifications;
 * - `quota.ts`: `--max-per-source`, live instances by the client that registered them;
 * - `durable.ts`: the registry in a data directory (`--data-dir`);
 * - `api.ts`: the methods, each checked and handed to one of the above.
 */
import { getLogger } from "@logtape/logtape";
import {
  type Address,
  defineOptions,
  formatAddress,
  LISTENER_OPTIONS,
  parseAddress,
  type RoleOptions,
} from "../../config/mod.ts";
import { codecByName, dial, DistError, type Peer } from "../../wire/mod.ts";
import { dialTlsFailure } from "../../wire/tls.ts";
import { cut } from "../../wire/_log.ts";
import { defineRole, type RunContext } from "../_role.ts";
import { connSettings } from "../_flags.ts";
import { type Bound, listening, type Served } from "../_shell.ts";
import { binderServing, watchList } from "./api.ts";
import { HybridClock } from "./clock.ts";
import { type Entry, Registry } from "./registry.ts";
import { Replicator } from "./replication.ts";
import { Verifier } from "./verify.ts";
import {
  DEFAULT_MAX_WATCHES,
  isVisibleChange,
  RESERVED_WATCHES_PER_CONN,
  Watchers,
} from "./watch.ts";
import { DurableRegistry } from "./durable.ts";
import { defaultPerSource, SourceQuota } from "./quota.ts";
import { replicationLag } from "../../obs/mod.ts";
import { FSYNC_OPTION, STORE_OPTIONS, storeOptions } from "../../store/mod.ts";

const log = getLogger(["dist", "binder"]);

/** How often leases are checked (ms): an expiry is acted on within this much of its time. */
const SWEEP_MS = 100;

const BINDER_OPTIONS = defineOptions({
  port: {
    type: "port",
    description: "Port to listen on (0 picks a free one)",
    default: 7000,
    short: "p",
  },
  peers: {
    type: "addresses",
    description: "Other binders to replicate with (this binder's own address is skipped)",
    default: [],
    ref: true,
  },
  ttl: {
    type: "duration",
    description: "Lease of a registration that names no ttl_ms",
    default: 3000,
  },
  antiEntropy: {
    type: "duration",
    description: "Period of digest comparisons with each peer",
    default: 1000,
  },
  catchUp: {
    type: "duration",
    description: "At start, longest wait for a peer's state before answering from its own",
    default: 3000,
  },
  verifyTimeout: {
    type: "duration",
    description: "How long checking a reported instance (connect + sys.ping) may take",
    default: 1000,
  },
  maxInstances: {
    type: "integer",
    description: "Most live instances (more are OVERLOADED; peers' fill 9/10 at most), and as " +
      "many removals kept apart (the source holding most loses its oldest first)",
    default: 100_000,
    min: 1,
  },
  maxPerSource: {
    type: "integer",
    description: "Most live instances one client (its user, else its address) may register " +
      "here; more are OVERLOADED (default: a hundredth of --max-instances, at least 100)",
    min: 1,
  },
  maxWatches: {
    type: "integer",
    description: "Most binder.watch subscriptions in all, across connections (each connection's " +
      `first ${RESERVED_WATCHES_PER_CONN} are granted anyway); more are OVERLOADED`,
    default: DEFAULT_MAX_WATCHES,
    min: 1,
  },
  ...STORE_OPTIONS,
  ...FSYNC_OPTION,
  ...LISTENER_OPTIONS,
});
type BinderOptions = RoleOptions<typeof BINDER_OPTIONS>;

export const binder = defineRole({
  summary: "Replicated service registry: servers register, clients resolve",
  usage: [
    "dist binder [--port 7000] [--peers HOST:PORT,...] [--ttl 3s] [--data-dir DIR]",
    "",
    "Methods:",
    "  binder.register {service, host, port, ttl_ms?, meta?} -> {id, ttl_ms}",
    "  binder.renew {id}, binder.deregister {id}",
    "  binder.lookup {service}        the next live instance, cyclically (NOT_FOUND if none)",
    "  binder.list {service?, after?, limit?}  live instances, a page at a time -> {instances, next?}",
    "  binder.report_down {id}        verify, remove if dead -> {id, alive, removed}",
    "  binder.watch {service}         then binder.changed {service, instances} notifications",
    "  binder.unwatch {service}, sys.ping, sys.stats",
  ],
  options: BINDER_OPTIONS,
  run: runBinder,
});

const LOCAL_HOSTS = new Set(["127.0.0.1", "localhost", "::1", "0.0.0.0", "::"]);

/** The peers other than this binder itself (a replicated entry lists all its replicas). */
export function otherBinders(peers: string[], self: { hostname: string; port: number }): Address[] {
  const seen = new Set<string>();
  const out: Address[] = [];
  for (const text of peers) {
    const a = parseAddress(text);
    const isSelf = a.port === self.port &&
      (a.host === self.hostname || (LOCAL_HOSTS.has(a.host) && LOCAL_HOSTS.has(self.hostname)));
    const key = formatAddress(a);
    if (isSelf || seen.has(key)) continue;
    seen.add(key);
    out.push(a);
  }
  return out;
}

function runBinder(options: BinderOptions, ctx: RunContext): Promise<number> {
  return listening(ctx, {
    role: "binder",
    log,
    options,
    setUp: (bound) => setUpBinder(options, ctx, bound),
  });
}

/** The binder's parts, once its port is bound and its name settled. */
function setUpBinder(options: BinderOptions, ctx: RunContext, bound: Bound): Served {
  const { name } = bound;
  const codec = codecByName(options.codec);
  // The id in this binder's stamps; the suffix keeps two binders that share a name apart.
  const node = `${name}.${crypto.randomUUID().slice(0, 8)}`;
  const { registry, durable } = openRegistry(options, node);
  const peers = otherBinders(options.peers, bound.addr);
  const replicator = new Replicator({
    registry,
    peers,
    node,
    name,
    codec,
    conn: connSettings(options),
    timeoutMs: 5000,
    intervalMs: options.antiEntropy,
    catchUpMs: options.catchUp,
  });
  if (ctx.metrics) replicator.lag = replicationLag(ctx.metrics.registry);
  const perSource = options.maxPerSource ?? defaultPerSource(options.maxInstances);
  const quota = new SourceQuota(perSource);
  const watchers = new Watchers(
    (service) => watchList(registry, service, options.maxFrame, undefined, quota),
    options.maxWatches,
    options.maxFrame,
  );
  registry.onChange((entry, previous) => {
    if (entry.removed !== undefined) quota.release(entry.id);
    if (isVisibleChange(entry, previous)) watchers.changed(entry.service);
  });
  const verifier = verifierOf(
    registry,
    options.verifyTimeout,
    (entry, timeoutMs) => probe(entry, timeoutMs, { name, codec, options }),
  );
  const parts = { registry, replicator, verifier, watchers };
  let sweeper: ReturnType<typeof setInterval> | undefined;
  return {
    serve: binderServing({
      ...parts,
      // A bound of the whole registry or more adds nothing: "Registry full" says why.
      quota: perSource < options.maxInstances ? quota : undefined,
      registrants: quota,
      defaultTtlMs: options.ttl,
      maxFrame: options.maxFrame,
      committed: durable && (() => durable.committed()),
    }),
    stats: () => ({
      ready: replicator.isReady,
      connections: bound.peers.size,
      ...registryStats(parts),
      registrations_refused: quota.refused,
      ...(durable === undefined ? {} : { store: durable.stats() }),
    }),
    started: () => {
      sweeper = setInterval(() => registry.sweep(), SWEEP_MS);
      replicator.start();
      if (peers.length > 0) {
        log.info("Replicating with {peers}", { peers: peers.map(formatAddress).join(", ") });
      }
    },
    stopping: async () => {
      log.info("Shutting down");
      clearInterval(sweeper);
      watchers.stop();
      await replicator.stop();
    },
    stopped: () => {
      durable?.close();
      log.info("Stopped with {n} instance(s) registered", { n: registry.liveCount });
    },
  };
}

/**
 * The registry, with what `--data-dir` kept read back before anything else
 * listens (restoring is not a change to tell anyone).
 */
function openRegistry(options: BinderOptions, node: string) {
  const registry = new Registry({ clock: new HybridClock(node), maxEntries: options.maxInstances });
  const durable = options.dataDir === undefined ? undefined : new DurableRegistry(
    registry,
    options.dataDir,
    storeOptions(options, log),
  );
  if (durable !== undefined) {
    const { restored, unreadable, path } = durable.stats();
    log.info("Read {n} entr(ies) back from {path}", { n: restored, path });
    if (unreadable > 0) {
      log.warn("{n} unreadable row(s) in {path}: kept, not read back", { n: unreadable, path });
    }
  }
  return { registry, durable };
}

/** Checks a reported instance (`probe`); one found dead is removed. */
function verifierOf(
  registry: Registry,
  timeoutMs: number,
  probe: (entry: Entry, timeoutMs: number) => Promise<boolean>,
): Verifier {
  return new Verifier({
    probe,
    timeoutMs,
    onStart: (entry) => registry.setSuspect(entry.id, true),
    onEnd: (entry, alive) => {
      registry.setSuspect(entry.id, false);
      // A removal changes the registry: worth a line. A check that found it alive is not.
      const props = { id: cut(entry.id), verdict: alive ? "alive, kept" : "dead, removed" };
      if (alive) log.debug("Verified {id} after a report: {verdict}", props);
      else log.info("Verified {id} after a report: {verdict}", props);
      if (!alive) registry.remove(entry.id, "down");
    },
  });
}

/** The registry's, verifier's, watchers' and replication's part of `sys.stats`. */
function registryStats(
  { registry, replicator, verifier, watchers }: {
    registry: Registry;
    replicator: Replicator;
    verifier: Verifier;
    watchers: Watchers;
  },
) {
  return {
    services: registry.serviceCount,
    instances: registry.liveCount,
    tombstones: registry.tombstoneCount,
    ...registry.counters,
    verifications: verifier.probes,
    verifying: verifier.running,
    watchers: watchers.count,
    notifications: watchers.sent,
    notifications_failed: watchers.failed,
    notifications_replaced: watchers.replaced,
    clock_drift_ms: registry.clock.drift,
    replication: {
      ...replicator.counters,
      peer_keys: replicator.peerKeys,
      peers: replicator.peers(),
    },
  };
}

/**
 * Whether an instance answers: connect, then `sys.ping`, within `timeoutMs`
 * in all. Any answer, even an error, means a process is there: so the
 * probe dials with no credentials (no client certificate) and claims no role but a client's (an
 * instance with a users file or a token answers UNAUTHORIZED, alive). The
 * address is the registrant's choice: a probe that said the binder's token
 * handed it to whoever listens there (hostile45c K-C1: a user allowed to
 * register one service read it, then evicted every other with a forged
 * `binder.sync`).
 */
async function probe(
  entry: Entry,
  timeoutMs: number,
  self: { name: string; codec: ReturnType<typeof codecByName>; options: BinderOptions },
): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  let peer: Peer | undefined;
  const settings = connSettings(self.options);
  try {
    peer = await dial({ host: entry.host, port: entry.port }, {
      ...settings,
      // No client certificate either: a --token listener refuses one without the token after
      // the delay of a failure, past --verify-timeout (review45 R9).
      tls: settings.tls === undefined ? undefined : { ca: settings.tls.ca },
      credentials: undefined,
      role: "client",
      name: self.name,
      codec: self.codec,
      connectTimeoutMs: timeoutMs,
    });
    await peer.call("sys.ping", undefined, {
      timeout: Math.max(1, deadline - performance.now()),
    });
    return true;
  } catch (err) {
    if (!(err instanceof DistError) || err.code === "TIMEOUT") return false;
    if (err.code !== "UNAVAILABLE") return true;
    // A certificate refused, or no TLS where TLS is due (any TLS failure the dial names but a
    // handshake cut for no stated reason), is not the instance: another process holds its port (review r46 R4: one another CA vouched for kept a dead instance listed).
    const tls = dialTlsFailure(err);
    if (tls !== undefined && tls !== "handshake") return false;
    // A connection closed at once after it was accepted is a live process too: a TLS listener
    // past its connection limits closes before the handshake, where it cannot say OVERLOADED
    // (hostile46c F5: a server held at its per-source limit was removed on every report), and a
    // TLS server checked in plain TCP (a binder with no --tls-ca) answers with an alert (F5b).
    return await accepts(entry, deadline);
  } finally {
    peer?.close();
  }
}

/** Whether a TCP connection to `entry` is accepted before `deadline`. */
async function accepts(entry: Entry, deadline: number): Promise<boolean> {
  const ms = deadline - performance.now();
  if (ms <= 0) return false;
  const conn = Deno.connect({ hostname: entry.host, port: entry.port });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<undefined>((r) => timer = setTimeout(r, ms, undefined));
  const got = await Promise.race([conn.catch(() => undefined), late]);
  clearTimeout(timer);
  conn.then((c) => c.close(), () => {});
  return got !== undefined;
}
