import { DistError } from "./errors.ts";
import { type Codec, jsonCodec } from "./codec.ts";
import { CloseReason, FramedConn } from "./conn.ts";
import { handshakeDialer, handshakeListener, refusal, refusedWelcome } from "./handshake.ts";
import { DEFAULT_HEARTBEAT_MS, Peer } from "./peer.ts";
import type { NotificationHandler, RequestCounter, RequestHandler } from "./peer_options.ts";
import { DEFAULT_MAX_IN_FLIGHT_TOTAL, InFlightBudget } from "./admission.ts";
import { MAX_TIMER_MS } from "./calls.ts";
import type { RawFrameHandler, RawRequestHandler } from "./fast_path.ts";
import { foreignBytes } from "./foreign.ts";
import { sourceOf } from "./newcomers.ts";
import { type SourceEntry, type SourceStats, SourceTable } from "./sources.ts";
import { processAccount } from "./descriptors.ts";
import { AcceptPace } from "./accept_pace.ts";
import { Backoff, goneBeforeAccept, sleep } from "./backoff.ts";
import { cut, log, warnPeer } from "./_log.ts";
import { logFailedHello, remoteOf } from "./listen_log.ts";
import type { Authenticator, Credentials } from "./credentials.ts";
import { explainListenTls, listensTls, type TlsSettings } from "./tls.ts";
import { bindPort, connectPort, hostPort, type PortListener, secureAccepted } from "./transport.ts";

/** Connection settings shared by listeners and dialers. */
export interface ConnSettings {
  /** Largest frame payload accepted (default 1 MiB). */
  maxFrame?: number;
  /** Pending output above which reading pauses (backpressure). */
  highWater?: number;
  /** Pending output above which a peer is cut off as a slow consumer. */
  maxOutbound?: number;
  /** This side's heartbeat (ms); the handshake agrees on the shorter. */
  heartbeatMs?: number;
  /** Heartbeats of silence after which the peer is dead (default 3). */
  liveness?: number;
  /** Default call timeout (ms). */
  timeoutMs?: number;
  /** Time allowed for the handshake (ms). */
  handshakeMs?: number;
  /** Most requests from one peer handled at once; then reading pauses. */
  maxInFlight?: number;
  /** A peer that takes no bytes of our output for this long is cut off (ms). */
  writeTimeoutMs?: number;
  /** What a dialer proves who it is with, in its hello (listeners ignore it). */
  credentials?: Credentials;
  /**
   * Decides who each dialer is from its hello (tokens, users, certificate);
   * a refused hello is answered and closed. Without one, anyone may in.
   * (Listeners only: dialers ignore it.)
   */
  authenticator?: Authenticator;
  /** TLS: a listener's certificate (and client CA), a dialer's CA (see TlsSettings). */
  tls?: TlsSettings;
}

/** Options of `listen()`. */
export interface ListenOptions extends ConnSettings {
  /** Address to bind (default 127.0.0.1). */
  host?: string;
  /** Port to bind (0 picks a free one). */
  port: number;
  /** This process's role and name, told to every dialer. */
  role: string;
  /** This process's name, told to every dialer. */
  name: string;
  /** Put in `by` of every response. */
  by?: string;
  /**
   * Most concurrent connections; at it, a new one closes the oldest that
   * has not finished its hello yet (newcomers.ts), or one of a source
   * holding more than its share (sources.ts), or else gets OVERLOADED and
   * is closed.
   */
  maxConnections?: number;
  /** Most connections of one source, always (0, the default: only its share while full; sources.ts). */
  maxConnectionsPerSource?: number;
  /** Whose a connection is, for the bounds by source (default: its host; the roles give auth's clientSource). */
  source?: (user: string | undefined, host: string) => string;
  /**
   * Most requests handled at once across all of this listener's connections
   * (default DEFAULT_MAX_IN_FLIGHT_TOTAL); past it no connection starts another.
   */
  maxInFlightTotal?: number;
  /** Answers requests (see RequestHandler). */
  onRequest?: RequestHandler;
  /** Takes notifications. */
  onNotification?: NotificationHandler;
  /** Counts the requests answered on every connection (metrics). */
  counter?: RequestCounter;
  /** Byte pass-through of requests on JSON connections (see Peer's RawRequestHandler). */
  onRawRequest?: RawRequestHandler;
  /** Frames taken before decoding (see RawFrameHandler in peer.ts). */
  rawFrames?: RawFrameHandler;
  /** Called for each connection once its handshake is done. */
  onPeer?: (peer: Peer) => void;
  /** Whether a source's new connections are taken at a bounded pace now (accept_pace.ts). */
  paced?: (source: string) => string | undefined;
}

/** A running listener (see `listen()`). */
export interface Listener {
  /** The address bound (with the port `0` picked). */
  readonly addr: { hostname: string; port: number };
  /**
   * Name told to dialers and put in `by` of responses; settable after
   * binding, so a name may carry the port that `--port 0` picked.
   */
  name: string;
  /** Put in `by` of responses; settable with `name`. */
  by?: string;
  /** The connections open now (after their handshake). */
  readonly peers: ReadonlySet<Peer>;
  /** Its connections by source: how many, refused, closed to make room, and taken (`accepted`). */
  connectionStats(): SourceStats & { accepted: number };
  /**
   * Stops accepting, lets requests in flight finish (up to `graceMs`),
   * then closes every connection.
   */
  close(graceMs?: number): Promise<void>;
  /** Resolves once the accept loop has ended. */
  readonly done: Promise<void>;
}

/** Listens for dist connections and runs an RPC peer on each. */
export function listen(options: ListenOptions): Listener {
  return bind(options).start(options);
}

/** A port bound and not accepting yet: {@link bind}. */
export interface BoundPort {
  /** The address bound (the port that port 0 picked). */
  readonly addr: { hostname: string; port: number };
  /**
   * Starts accepting with `options` (handlers, name, limits; its host and
   * port are the bound ones). Call it once.
   */
  start(options: Omit<ListenOptions, "host" | "port">): Listener;
  /** Releases the port without ever accepting. */
  close(): void;
}

/**
 * Binds `host:port` without accepting: an owner that needs the port (its
 * name may carry it) to build its handlers starts accepting once they exist.
 * @throws {DistError} UNAVAILABLE when the address cannot be had (the cause says why)
 */
export function bind(options: { host?: string; port: number; tls?: TlsSettings }): BoundPort {
  const where = hostPort(options.host ?? "127.0.0.1", options.port);
  let listener: PortListener;
  try {
    listener = bindPort(options.host ?? "127.0.0.1", options.port, options.tls);
  } catch (err) {
    throw new DistError("UNAVAILABLE", `Cannot listen on ${where}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const addr = listener.addr as Deno.NetAddr;
  return {
    addr: { hostname: addr.hostname, port: addr.port },
    start: (startOptions) => accepting(listener, startOptions, options.tls),
    close: () => listener.close(),
  };
}

/** Accepts on `listener` and runs an RPC peer on each connection. */
function accepting(
  listener: PortListener,
  options: Omit<ListenOptions, "host" | "port">,
  tls: TlsSettings | undefined,
): Listener {
  const addr = listener.addr as Deno.NetAddr;
  const peers = new Set<Peer>();
  const conns = new Set<FramedConn>();
  const budget = new InFlightBudget(options.maxInFlightTotal ?? DEFAULT_MAX_IN_FLIGHT_TOTAL);
  /** Every connection from its accept (TLS handshakes included: a descriptor each), by source. */
  const sources = new SourceTable({
    max: options.maxConnections ?? 10_000,
    perSource: options.maxConnectionsPerSource,
    source: options.source,
  });
  let stopping = false;
  let accepted = 0;
  const pace = options.paced && new AcceptPace(options.paced, listensTls(tls));

  async function accept(raw: Deno.Conn): Promise<void> {
    const handshakeMs = options.handshakeMs ?? 5000;
    const host = sourceOf(raw);
    // A source marked by its owner waits for its turn here, unread (accept_pace.ts).
    const go = pace && pace.admit(options.source?.(undefined, host) ?? host, raw);
    if (go === false || (go instanceof Promise && !(await go))) return;
    if (stopping) return raw.close();
    // A TLS handshake counts against the limit from accept, and is a newcomer: one that never
    // finishes is the first to make room (hostile review W2: uncounted, they ran the process out of
    // descriptors). Before TLS there is no way to say OVERLOADED: a refused one is just closed.
    let entry: SourceEntry | undefined;
    if (listensTls(tls)) {
      const taken = sources.admit(host, () => raw.close(), { handshaking: true });
      if (taken instanceof DistError) {
        log.debug("TLS connection from {remote} refused: {why}", {
          remote: remoteOf(raw),
          why: taken.message,
        });
        raw.close();
        return;
      }
      entry = taken;
    }
    let secured;
    try {
      secured = await secureAccepted(raw, tls, handshakeMs);
    } catch (err) {
      entry?.leave();
      const remote = remoteOf(raw);
      const { text, warn } = explainListenTls(err);
      const line = "TLS connection from {remote} closed: {why}";
      if (warn) warnPeer(line, { remote, why: text });
      else log.debug(line, { remote, why: text });
      return;
    } finally {
      entry?.handshook();
    }
    const conn = secured.conn;
    const framed = new FramedConn(conn, {
      ...options,
      tracker: conns,
      tlsPeer: secured.peer,
      // The authenticator's user when the hello names none: the verified certificate's CN.
      peerIdentity: secured.peer?.commonName,
    });
    if (secured.refused !== undefined) {
      // It counts until closed (its farewell may take a moment), and may be closed to make room.
      const counted = entry;
      if (counted !== undefined) {
        counted.close = () => framed.close(CloseReason.HandshakeFailed);
        framed.closed.then(() => counted.leave());
      }
      warnPeer("TLS connection from {remote} refused: {why}", {
        remote: framed.remoteAddress,
        why: secured.refused.message,
      });
      await framed.closeWith(
        CloseReason.HandshakeFailed,
        secured.refused,
        refusal(secured.refused),
      );
      return;
    }
    const evict = (why: DistError, hello: boolean) => {
      warnPeer("{why} (from {remote})", { remote: framed.remoteAddress, why: why.message });
      // Past its hello it is told why; before, it may not even speak the protocol.
      if (hello) void framed.closeWith(CloseReason.Overloaded, why, refusal(why));
      else framed.close(CloseReason.Overloaded, why);
    };
    if (entry !== undefined) {
      entry.close = evict; // Counted and filed at accept.
    } else {
      // Full: one without a hello, or of a source over its share, makes room; else this one goes.
      const taken = sources.admit(host, evict);
      if (taken instanceof DistError) {
        log.debug("Connection from {remote} refused: {why}", {
          remote: framed.remoteAddress,
          why: taken.message,
        });
        await framed.closeWith(CloseReason.Overloaded, undefined, refusal(taken));
        return;
      }
      entry = taken;
    }
    const counted = entry;
    accepted++;
    framed.closed.then(() => counted.leave());
    framed.start();
    let agreed: Awaited<ReturnType<typeof handshakeListener>>;
    try {
      agreed = await handshakeListener(framed, {
        role: options.role,
        name: self.name,
        timeoutMs: handshakeMs,
        heartbeatMs: options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS,
        // Its user's connections count together (their source), checked with the hello.
        authenticator: options.authenticator && entry.checking(options.authenticator),
      });
    } catch (err) {
      logFailedHello(framed, err);
      return;
    } finally {
      entry.settled();
    }
    if (framed.isClosed) return;
    log.debug("Connection from {addr}: {name} ({role}, {codec}){user}", {
      addr: framed.remoteAddress,
      name: agreed.remote.name,
      role: agreed.remote.role,
      codec: agreed.codec.name,
      user: agreed.identity === undefined ? "" : ` as user ${cut(agreed.identity.user, 60)}`,
    });
    // The options a Peer takes, and what the handshake agreed (codec, remote, heartbeat).
    const peer = new Peer(framed, { ...options, by: self.by, budget, tracker: peers, ...agreed });
    options.onPeer?.(peer);
  }

  const done = (async () => {
    const backoff = new Backoff({ min: 5, max: 1000 });
    while (!stopping) {
      // Connections closed to make room free their descriptors once the event loop turns.
      const turn = sources.freed();
      if (turn !== undefined) await turn;
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
        backoff.reset();
      } catch (err) {
        if (stopping || err instanceof Deno.errors.BadResource) break;
        if (goneBeforeAccept(err)) continue; // The client reset it in the queue.
        // Out of file descriptors and the like: wait a little, don't spin.
        log.warn("Accept failed: {error}; retrying in {ms} ms", {
          error: String(err),
          ms: backoff.current,
        });
        await sleep(backoff.next());
        continue;
      }
      if (stopping) {
        conn.close();
        break;
      }
      accept(conn).catch((err) =>
        log.error("Connection setup failed: {error}", { error: String(err) })
      );
    }
  })();

  const self: Listener = {
    addr: { hostname: addr.hostname, port: addr.port },
    name: options.name,
    by: options.by,
    peers,
    done,
    connectionStats: () => ({ ...sources.stats(), accepted, ...pace && { paced: pace.stats } }),
    async close(graceMs = 2000) {
      if (!stopping) {
        stopping = true;
        try {
          listener.close();
        } catch {
          // Already closed.
        }
      }
      await done;
      await Promise.all([...peers].map((p) => p.idle(graceMs)));
      for (const c of conns) c.close(CloseReason.Shutdown);
    },
  };
  return self;
}

/** Options of `dial()`. */
export interface DialOptions extends ConnSettings {
  /** Codec to ask for (default JSON). */
  codec?: Codec;
  /** This process's role and name, told to the listener. */
  role: string;
  /** This process's name, told to the listener. */
  name: string;
  /** Connect plus handshake timeout (ms). */
  connectTimeoutMs?: number;
  /** Put in `by` of every response this side sends. */
  by?: string;
  /** Answers the listener's requests on this connection. */
  onRequest?: RequestHandler;
  /** Takes the listener's notifications. */
  onNotification?: NotificationHandler;
  /** Frames taken before decoding (see RawFrameHandler in peer.ts). */
  rawFrames?: RawFrameHandler;
  /** Aborting ends the connect and the handshake at once (UNAVAILABLE). */
  signal?: AbortSignal;
}

/**
 * Connects to `host:port`, does the handshake and returns the peer.
 * @throws {DistError} UNAVAILABLE when nothing listens or the connection
 * drops, TIMEOUT when connect plus handshake take too long, or the
 * listener's own refusal (OVERLOADED, BAD_REQUEST).
 */
export async function dial(
  address: { host: string; port: number },
  options: DialOptions,
): Promise<Peer> {
  const timeoutMs = Math.min(options.connectTimeoutMs ?? 5000, MAX_TIMER_MS);
  const where = hostPort(address.host, address.port);
  const signal = options.signal;
  if (signal?.aborted) throw new DistError("UNAVAILABLE", `Dial to ${where} aborted`);
  const conn = await connectPort(address, options.tls, { timeoutMs, signal });
  const framed = new FramedConn(conn, options);
  // One descriptor fewer for accepted connections, on every port, while it lasts (descriptors.ts).
  framed.closed.then(processAccount().dialed());
  framed.start();
  const codec = options.codec ?? jsonCodec;
  // An abort during the handshake closes the socket, which fails the handshake.
  const onAbort = () => framed.close(CloseReason.Local);
  signal?.addEventListener("abort", onAbort, { once: true });
  let agreed;
  try {
    agreed = await handshakeDialer(framed, {
      codec,
      role: options.role,
      name: options.name,
      timeoutMs,
      heartbeatMs: options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS,
      credentials: options.credentials,
    });
  } catch (err) {
    framed.close(CloseReason.HandshakeFailed, err);
    const foreign = foreignBytes(framed.head, framed.maxFrame);
    if (err instanceof DistError && refusedWelcome(err)) {
      throw new DistError("UNAUTHORIZED", err.message.replace(/^The listener/, where), {
        cause: err,
        data: err.data,
      });
    }
    if (err instanceof DistError && err.code === "UNAUTHORIZED") {
      // Say who refused: a dialer of several listeners cannot tell otherwise.
      throw new DistError("UNAUTHORIZED", `${where} refused the hello: ${err.message}`, {
        cause: err,
      });
    }
    if (foreign === undefined) throw err;
    if (foreign.startsWith("a TLS")) {
      throw new DistError(
        "UNAVAILABLE",
        `${where} speaks TLS: dial it with --tls-ca FILE (it answered ${foreign})`,
        { cause: err },
      );
    }
    throw new DistError(
      "UNAVAILABLE",
      `${where} does not speak the dist protocol (it answered ${foreign})`,
      { cause: err },
    );
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
  log.debug("Connected to {addr}: {name} ({role}, {codec})", {
    addr: framed.remoteAddress,
    name: agreed.remote.name,
    role: agreed.remote.role,
    codec: codec.name,
  });
  return new Peer(framed, { ...options, codec, ...agreed });
}
