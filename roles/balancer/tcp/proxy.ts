/**
 * The proxy of the L4 mode (mod.ts): the pool, the policy, the checks, and
 * each client connection's way through them: counted by its source, a
 * backend dialed (the next one if it refuses), then spliced.
 */
import { parseAddress } from "../../../config/mod.ts";
import { DistError, sleep, SourceTable } from "../../../wire/mod.ts";
import { clientSource } from "../../../auth/mod.ts";
import { isDescriptorShortage, RUNTIME_DESCRIPTORS } from "../../../wire/descriptors.ts";
import { Backend, Pool, type Transition } from "../backends.ts";
import { createPolicy, type Policy } from "../policies.ts";
import { backendLines, log, LogBudget } from "../log.ts";
import { CONNECT_TIMEOUT_MS, ConnectionOutlier, judge, TcpChecks } from "./health.ts";
import { type Ended, EndReason, IdleClock } from "./splice.ts";
import type { BackendConn, ClientConn, L4Io } from "./io.ts";
import type { TcpOptions } from "./mod.ts";
import { backendFigures, BackendTally } from "./tally.ts";
import { Passage } from "./passage.ts";
import { PANIC_CONNECT_TIMEOUT_MS, type PanicHost, PanicRace } from "./panic.ts";

/** Why a connection that sent nothing was closed to make room. */
const NO_BYTE = "no byte sent yet";

/** Connections that could not be given a backend, refused over the limit, and so on. */
const connectionLines = new LogBudget("connections");

/** The pool, the policy, the checks and the connections of one TCP balancer. */
export class TcpProxy {
  readonly pool = new Pool();
  readonly policy: Policy;
  readonly checks: TcpChecks;
  readonly clock: IdleClock;
  stopping = false;
  /**
   * The connections spliced and not ended, each at its {@link Passage.at}
   * (an array: a Set's add and delete rehashed its table as it grew and shrank).
   */
  readonly #passages: Passage[] = [];
  /**
   * Client connections accepted and not yet ended (connecting or spliced), by
   * source: those that sent no byte yet are the newcomers closed first to make room.
   */
  readonly sources: SourceTable;
  #total = 0;
  #noBackend = 0;
  #connectFailures = 0;
  /** Client connections refused at accept for want of descriptors. */
  #noDescriptor = 0;
  /** Client connections closed for want of a descriptor to dial their backend. */
  #noDialDescriptor = 0;
  /** Bytes of the connections ended: from clients (up) and to them (down). */
  #up = 0;
  #down = 0;
  /** Each backend's figures, for `--metrics` (the backends are fixed: `--backends`). */
  readonly tallies = new Map<Backend, BackendTally>();
  /**
   * Descriptors held for connections: a client's from its accept, its backend's from the dial,
   * both until the connection's end (a connection closed to make room may still be dialing).
   */
  #fds = 0;
  /** The most {@link #fds} may reach: the descriptor limit less the runtime's own. */
  readonly #fdBudget: number;
  readonly #ticker: ReturnType<typeof setInterval>;
  readonly #io: L4Io;
  /**
   * Whether each connection's start and end are logged (debug), asked once: logging is set up
   * before the role starts, and asking logtape made garbage twice a connection.
   */
  readonly #debug = log.isEnabledFor("debug");

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
      const backend = new Backend("server", address, {
        capacity: Number.MAX_SAFE_INTEGER,
        rules,
        outlier,
      });
      this.pool.add(backend);
      this.tallies.set(backend, new BackendTally());
    }
    this.checks = new TcpChecks(
      options.checkInterval,
      (t) => this.#report(t),
      (backend, timeoutMs, hooks, signal) =>
        io.dial(addressOf(backend.address), timeoutMs, hooks, signal),
    );
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
    const splices = this.#passages.map((p) => p.splice!);
    for (const s of splices) s.end(EndReason.Shutdown);
    await Promise.all(splices.map((s) => s.done));
    clearInterval(this.#ticker);
  }

  /**
   * The balancer's figures (for `--metrics`, obs/role_stats.ts; the names follow the RPC mode's
   * `sys.stats`). Bytes count those of the connections open now too.
   */
  stats() {
    const limits = this.sources.stats();
    const { up, down, servers } = backendFigures(this.pool.list, this.tallies, this.#passages);
    return {
      mode: "tcp",
      connections: this.open,
      connections_total: this.#total,
      refused: limits.refused_full + limits.refused_source,
      evicted: limits.closed_no_hello + limits.closed_source,
      no_backend: this.#noBackend,
      connect_failures: this.#connectFailures,
      no_descriptor: this.#noDescriptor + this.#noDialDescriptor,
      refused_descriptors: this.#noDescriptor,
      no_dial_descriptor: this.#noDialDescriptor,
      received_bytes: this.#up + up,
      sent_bytes: this.#down + down,
      connection_limits: limits,
      policy: this.policy.name,
      healthy: this.pool.healthy,
      backends: this.pool.list.length,
      checks_failed: this.pool.checksFailed,
      servers,
    };
  }

  #tick(): void {
    this.clock.tick++;
    // From the last: an ended one's place takes the last one's, seen already.
    const all = this.#passages;
    for (let i = all.length - 1; i >= 0; i--) {
      const p = all[i];
      if (p !== undefined && p.splice!.idle) p.splice!.end(EndReason.Idle);
    }
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
    if (this.#fds + 2 > this.#fdBudget) {
      // Connections closed to make room still dialing: refused, not made room for (not EMFILE).
      this.#noDescriptor++;
      connectionLines.warn("Connection from {remote} refused: {n} file descriptors in use", {
        remote: client.remote,
        n: this.#fds,
      });
      client.close();
      return;
    }
    const p = new Passage(this, client);
    const entry = this.sources.admit(client.host, p);
    if (entry instanceof DistError) {
      connectionLines.warn("Connection from {remote} refused: {why}", {
        remote: client.remote,
        why: entry.message,
      });
      client.close();
      return;
    }
    p.entry = entry;
    this.#total++;
    this.#fds++;
    this.#forward(p);
  }

  /** Closes `p` to make room for another (sources.ts says why). */
  evict(p: Passage, why: DistError, spoke: boolean): void {
    connectionLines.warn("Connection from {remote} closed to make room: {why}", {
      remote: p.client.remote,
      why: spoke ? why.message.replace(/^Connection closed to make room: /, "") : NO_BYTE,
    });
    p.evicted = true;
    if (p.splice !== undefined) p.splice.end(EndReason.Evicted);
    else p.client.close();
  }

  /**
   * Dials a backend for `p` (the next one if it refuses; each once): its
   * splice starts once the dial is done ({@link dialed}), at once over
   * loopback through libc's sockets.
   */
  #forward(p: Passage): void {
    // Closed to make room while a dial failed: nothing to dial for.
    if (p.evicted) return this.#gone(p);
    let backend: Backend | undefined;
    try {
      const all = this.pool.list;
      const tried = p.tried;
      const left = tried === undefined ? all : all.filter((b) => !tried.has(b));
      backend = this.policy.pick(left);
      // None up: those that are out are tried, all at once, before the client is closed (panic.ts).
      if (backend === undefined && left.length > 0 && !this.stopping) return this.#panic(p, left);
      if (backend === undefined || this.stopping) {
        this.#noBackend++;
        connectionLines.warn("Connection from {remote} closed: no backend is up ({tried})", {
          remote: p.client.remote,
          tried: tried === undefined ? "none tried" : `${tried.size} refused it`,
        });
        return this.#gone(p);
      }
      backend.inflight++;
      this.#fds++;
      p.backend = backend;
      p.dialing = performance.now();
    } catch (err) {
      return this.#broke(p, err);
    }
    try {
      this.#io.dial(addressOf(backend.address), CONNECT_TIMEOUT_MS, p);
    } catch (err) {
      // As a connect that failed (a fault of ours, said as such by the judge's reason).
      this.failed(p, err);
    }
  }

  /** Dials `p` to every backend of `left` (all out) at once, as many as descriptors allow. */
  #panic(p: Passage, left: readonly Backend[]): void {
    const n = Math.max(1, Math.min(left.length, this.#fdBudget - this.#fds));
    const race = new PanicRace(this.#panicHost, p, n);
    for (let i = 0; i < n && !race.won; i++) {
      const backend = left[i];
      backend.inflight++;
      this.#fds++;
      const hooks = race.dial(backend);
      try {
        this.#io.dial(addressOf(backend.address), PANIC_CONNECT_TIMEOUT_MS, hooks);
      } catch (err) {
        hooks.failed(err);
      }
    }
  }

  /** What a panic dial's race tells the proxy (panic.ts). */
  readonly #panicHost: PanicHost<Passage> = {
    wants: (p) => !p.evicted && !this.stopping,
    won: (p, backend, conn, startedAt) => {
      p.backend = backend;
      p.dialing = startedAt;
      this.dialed(p, conn);
    },
    dropped: (backend, conn, err) => {
      backend.inflight--;
      this.#fds--;
      conn?.close();
      if (err === undefined || isDescriptorShortage(err)) return;
      this.#connectFailures++;
      this.tallies.get(backend)!.failures++;
    },
    none: (p, tried) => {
      for (const b of tried) (p.tried ??= new Set()).add(b);
      this.#forward(p);
    },
  };

  /** `p`'s dial is done: the bytes pass from now on. */
  dialed(p: Passage, conn: BackendConn): void {
    const backend = p.backend!;
    try {
      const now = performance.now();
      this.tallies.get(backend)!.connections++;
      // `othersUp` given: its default is a closure made at each call.
      backend.onAnswered(now - p.dialing, "answered", now, othersUp);
      const splice = this.#io.splice(p.client, conn, p);
      // Ended already (closed to make room while dialing): not kept.
      if (!p.released) {
        p.splice = splice;
        p.at = this.#passages.push(p) - 1;
      }
    } catch (err) {
      if (p.splice === undefined && !p.released) {
        // No splice to end: the backend's connection is given back here.
        p.released = true;
        conn.close();
        backend.inflight--;
        this.#fds--;
      }
      return this.#broke(p, err);
    }
    if (this.#debug) {
      log.debug("Connection from {remote} to {backend}", {
        remote: p.client.remote,
        backend: backend.name,
      });
    }
  }

  /** `p`'s dial failed: the backend is judged, and the next one tried. */
  failed(p: Passage, err: unknown): void {
    const backend = p.backend!;
    backend.inflight--;
    this.#fds--;
    if (isDescriptorShortage(err)) {
      // This process is out of descriptors: no backend is to blame, and the next would fail too.
      this.#noDialDescriptor++;
      connectionLines.warn(
        "Connection from {remote} closed: no file descriptor left to dial {backend} " +
          "({error}); the backend is not taken out",
        { remote: p.client.remote, backend: backend.name, error: (err as Error).message },
      );
      return this.#gone(p);
    }
    this.#connectFailures++;
    this.tallies.get(backend)!.failures++;
    backend.failures++;
    const timedOut = err instanceof DistError && err.code === "TIMEOUT";
    this.#report(judge(backend, { ok: false, timedOut, reason: (err as Error).message }));
    (p.tried ??= new Set()).add(backend);
    this.#forward(p);
  }

  /** `p`'s splice ended: both its connections are closed. */
  ended(p: Passage, ended: Ended): void {
    if (p.released) return;
    p.released = true;
    this.#unlist(p);
    const backend = p.backend!;
    backend.inflight--;
    this.#fds--;
    this.#up += ended.up;
    this.#down += ended.down;
    const t = this.tallies.get(backend)!;
    t.up += ended.up;
    t.down += ended.down;
    this.#leave(p);
    if (!this.#debug) return;
    log.debug(
      "Connection from {remote} to {backend} closed ({reason}{detail}): " +
        "{up} bytes up, {down} bytes down in {ms} ms",
      {
        remote: p.client.remote,
        backend: p.backend!.name,
        reason: ended.reason,
        detail: ended.detail === "" ? "" : ` (${ended.detail})`,
        up: ended.up,
        down: ended.down,
        ms: Math.round(ended.ms),
      },
    );
  }

  /** Takes `p` out of {@link #passages}: the last one takes its place. */
  #unlist(p: Passage): void {
    if (p.at < 0) return;
    const last = this.#passages.pop()!;
    if (last !== p) {
      this.#passages[p.at] = last;
      last.at = p.at;
    }
    p.at = -1;
  }

  /** A fault of ours in `p`'s handling: said, and it is closed. */
  #broke(p: Passage, err: unknown): void {
    log.error("Connection from {remote} failed: {error}", {
      remote: p.client.remote,
      error: String(err),
    });
    if (p.splice !== undefined) p.splice.end(EndReason.ClientError);
    else this.#gone(p);
  }

  /** `p` gets no backend: closed. */
  #gone(p: Passage): void {
    p.client.close();
    this.#leave(p);
  }

  /** `p` no longer counts: at once as it ends, so its source's count is right for the next accept. */
  #leave(p: Passage): void {
    if (p.left) return;
    p.left = true;
    this.#fds--;
    p.entry!.leave();
  }
}

/** {@link Backend.onAnswered}'s default, made once (a dial's outcome, "answered", never asks it). */
const othersUp = () => true;

/** Backends' addresses as dialed, parsed once each (a new connection dials one). */
const parsed = new Map<string, { host: string; port: number }>();

export function addressOf(address: string): { host: string; port: number } {
  let a = parsed.get(address);
  if (a === undefined) {
    // Backends come and go (binders): the map is only ever as large as a few pools.
    if (parsed.size >= 4096) parsed.clear();
    parsed.set(address, a = parseAddress(address));
  }
  return a;
}
