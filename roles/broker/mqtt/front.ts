/**
 * The broker's MQTT front end (`dist broker --mqtt-port`): a second front
 * end on the same core as the dist protocol's (roles/broker/front.ts), so
 * both share one topic tree, retained store, queue groups and delivery
 * queues. This file holds the listener, the client ids and the counters;
 * the sessions are sessions.ts, wills wills.ts, a connection's protocol
 * connection.ts.
 */
import { getLogger } from "@logtape/logtape";
import { Backoff, goneBeforeAccept, sleep } from "../../../wire/backoff.ts";
import { cut, warnPeer } from "../../../wire/_log.ts";
import type { Authenticator, Credentials, Identity } from "../../../wire/credentials.ts";
import { listensTls, type TlsSettings } from "../../../wire/tls.ts";
import type { SourceEntry } from "../../../wire/sources.ts";
import { DistError } from "../../../wire/mod.ts";
import { bindPort, type PortListener, secureAccepted } from "../../../wire/transport.ts";
import type { BrokerCore } from "../core.ts";
import { type CostlyTurns, costlyTurnsOf } from "../costly_turns.ts";
import { expiredRetained } from "../values.ts";
import { MqttConnection } from "./connection.ts";
import { BUSY_RESPONSE, WsStream } from "./ws.ts";
import type { MqttSession } from "./session.ts";
import type { SessionRefusal } from "./connect.ts";
import type { MqttLimits, SessionRequest } from "./limits.ts";
import { SessionTable } from "./sessions.ts";
import { Wills } from "./wills.ts";
import { SysTopics } from "./sys.ts";
import { MqttSlots } from "./slots.ts";
import type { Store } from "../../../store/mod.ts";
import { sessionMemory } from "../memory.ts";
import { type GiveBacks, giveBacksOf } from "../give_back.ts";

const log = getLogger(["dist", "broker", "mqtt"]);
const decoder = new TextDecoder("utf-8", { ignoreBOM: true });

export type { MqttLimits, SessionRequest } from "./limits.ts";
export type { SessionRefusal } from "./connect.ts";

export class MqttFront {
  readonly core: BrokerCore;
  /** SUBSCRIBE and UNSUBSCRIBE take turns with the native front's costly requests. */
  readonly costly: CostlyTurns;
  readonly limits: MqttLimits;
  readonly #authenticator: Authenticator | undefined;
  readonly #connections = new Set<MqttConnection>();
  readonly #byClientId = new Map<string, MqttConnection>();
  /** The sessions by client id, connected or away. */
  readonly sessions: SessionTable = new SessionTable(this);
  #listener: PortListener | undefined;
  #closing = false;
  /**
   * Every connection from its accept (its TLS handshake or WebSocket upgrade included), by
   * source: those without CONNACK, then those of a source over its share, make room when full.
   */
  readonly #slots: MqttSlots;
  #tls: TlsSettings | undefined;
  /** Connections whose TLS handshake failed (plain MQTT on the TLS port, a bad certificate). */
  tlsFailures = 0;
  messagesIn = 0;
  /** With a data directory: resolves once every retained value so far is on disk. */
  committed: (() => Promise<void>) | undefined;
  accepted = 0;
  refusedConnections = 0;
  badConnects = 0;
  protocolErrors = 0;
  refusedPublishes = 0;
  oversize = 0;
  /** Packets not sent as past the client's Maximum Packet Size (a SUBACK of many filters). */
  oversizeOut = 0;
  slowConsumers = 0;
  undeliverable = 0;
  /** Deliveries not sent because their MQTT 5 Message Expiry ran out. */
  expired = 0;
  /** QoS 0 deliveries to away persistent sessions, dropped (see MqttLimits.queueQos0). */
  awayQos0Dropped = 0;
  takeovers = 0;
  /** Wills: published, waiting for their delay, cancelled. */
  readonly wills: Wills;
  /** What ended sessions' queue group subscriptions give back, a slice per turn. */
  readonly giveBacks: GiveBacks;

  constructor(core: BrokerCore, limits: MqttLimits, authenticator?: Authenticator) {
    this.core = core;
    this.costly = costlyTurnsOf(core);
    this.limits = limits;
    this.#slots = new MqttSlots(limits);
    this.#authenticator = authenticator;
    this.wills = new Wills(core);
    this.giveBacks = giveBacksOf(core);
    this.#sys = new SysTopics(this, core, limits.sysIntervalMs ?? 0);
  }
  readonly #sys: SysTopics;

  /**
   * Binds, over TLS when `tls` has a certificate and key: the native port's
   * listener (wire/transport.ts), so both ports take the same files, client
   * CA included. Accepting starts with `start()`.
   * @throws {Error} as Deno.listen does (the caller says it in the flag's words)
   */
  bind(hostname: string, port: number, tls?: TlsSettings): Deno.NetAddr {
    this.#listener = bindPort(hostname, port, tls);
    this.#tls = tls;
    return this.#listener.addr;
  }

  /**
   * Accepts connections until `close()`, on the TCP port and the WebSocket
   * one alike. A connection still in its TLS handshake (or, on the
   * WebSocket port, its HTTP upgrade) holds a slot of `maxConnections` as a
   * connected one does, so silent or dripping handshakes cannot take more
   * than that many file descriptors (each goes at the CONNECT deadline).
   */
  async start(): Promise<void> {
    this.#sys.start();
    await Promise.all([
      this.#listener && this.#accept(this.#listener, false),
      this.#ws && this.#accept(this.#ws, true),
    ]);
  }

  async #accept(listener: PortListener, ws: boolean): Promise<void> {
    const backoff = new Backoff({ min: 5, max: 1000 });
    while (true) {
      // Connections closed to make room free their descriptors once the event loop turns.
      const turn = this.#slots.table.freed();
      if (turn !== undefined) await turn;
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
        backoff.reset();
      } catch (err) {
        if (this.#closing || err instanceof Deno.errors.BadResource) return;
        if (goneBeforeAccept(err)) continue; // The client reset it in the queue.
        // Out of descriptors and the like: wait a little, don't spin, leave those open alone.
        log.warn("MQTT accept failed: {error}; retrying in {ms} ms", {
          error: String(err),
          ms: backoff.current,
        });
        await sleep(backoff.next());
        continue;
      }
      const entry = this.#slots.admit(conn);
      if (entry instanceof DistError) {
        this.refusedConnections++;
        log.debug("MQTT connection refused: {why}", { why: entry.message });
        if (ws && !listensTls(this.#wsTls)) {
          conn.write(BUSY_RESPONSE).catch(() => {}).finally(() => conn.close());
        } else conn.close();
        continue;
      }
      this.accepted++;
      this.#secure(conn, ws, entry);
    }
  }

  /**
   * Listens for MQTT over WebSocket too (ws.ts; `wss://` with the TLS
   * certificate); its connections count in the same `maxConnections`.
   * Accepting starts with `start()`.
   * @throws {Error} as Deno.listen does
   */
  bindWebSocket(hostname: string, port: number, tls?: TlsSettings): Deno.NetAddr {
    this.#ws = bindPort(hostname, port, tls);
    this.#wsTls = tls;
    return this.#ws.addr;
  }
  #ws: PortListener | undefined;
  #wsTls: TlsSettings | undefined;

  /** Nagle off and the TLS handshake (within the CONNECT deadline), then MQTT. */
  async #secure(accepted: Deno.Conn, ws: boolean, arrival: SourceEntry): Promise<void> {
    let conn: Deno.Conn;
    let subject: string | undefined;
    const started = Date.now();
    try {
      const tls = ws ? this.#wsTls : this.#tls;
      const secured = await secureAccepted(accepted, tls, this.limits.connectTimeoutMs);
      if (secured.refused !== undefined) {
        // MQTT has no word for it before CONNECT: the log says why, the dialer sees a close.
        this.tlsFailures++;
        log.warn("MQTT TLS client refused: {error}", { error: secured.refused.message });
        secured.conn.close();
        return void arrival.leave();
      }
      conn = secured.conn;
      subject = secured.peer?.commonName;
    } catch (err) {
      this.tlsFailures++;
      log.debug("MQTT TLS handshake failed: {error}", { error: String(err) });
      return void arrival.leave();
    } finally {
      arrival.handshook();
    }
    if (this.#closing) {
      arrival.leave();
      return void conn.close();
    }
    // The handshake's time counts in the CONNECT deadline: one deadline from accept. On the
    // WebSocket port the HTTP upgrade is the stream's first read, within the same deadline.
    if (ws) conn = new WsStream(conn) as unknown as Deno.Conn;
    const c = new MqttConnection(conn, this, Date.now() - started);
    // A client certificate is who the client is, when CONNECT carries no credentials.
    c.certSubject = subject;
    this.#connections.add(c);
    this.#slots.attach(c, arrival, (c, message) => this.warn(c, message));
    c.run();
  }

  /**
   * Stops accepting and closes every connection (their wills are not sent:
   * the broker leaves). With `--data-dir`, persistent sessions are written
   * as they are now, and kept: they end here, not on disk.
   */
  close(): void {
    this.#closing = true;
    this.sessions.closing();
    this.#sys.stop();
    try {
      this.#listener?.close();
    } catch {
      // Closed already.
    }
    try {
      this.#ws?.close();
    } catch {
      // Closed already.
    }
    // Their clients are away from now: the expiry clock runs from the stop.
    for (const c of [...this.#connections]) c.close("shutdown", false);
    this.wills.clear();
    this.sessions.close();
    this.giveBacks.close();
  }

  /**
   * Keeps persistent sessions in `store` from now on, and takes back those
   * it holds (sessions.ts). Before `start()`.
   */
  persist(store: Store): { restored: number; unreadable: number; messages: number } {
    return this.sessions.persist(store);
  }

  get connections(): number {
    return this.#connections.size;
  }

  /** Who a CONNECT's credentials say the client is (anyone, when the broker needs none). */
  authenticate(
    c: MqttConnection,
    username: string | undefined,
    password: Uint8Array | undefined,
  ): Promise<Identity | undefined> {
    if (this.#authenticator === undefined) return Promise.resolve(undefined);
    const secret = password === undefined ? undefined : decoder.decode(password);
    // `--token`: the token is the password (user name `token` or none); `--users`: user and password.
    const credentials: Credentials = (username === undefined || username === "token") &&
        secret !== undefined
      ? { token: secret }
      : { user: username, password: secret };
    const [host] = c.remote.split(":");
    let closed!: () => void;
    const closedP = new Promise<void>((r) => closed = r);
    this.#closers.set(c, closed);
    return this.#authenticator.authenticate({
      role: "mqtt",
      name: c.clientId,
      credentials,
      host,
      address: c.remote,
      certSubject: c.certSubject,
      closed: closedP,
    }).then((identity) => {
      // Its user's connections count together (their source): refused at its bound.
      this.#slots.authenticated(c, identity.user);
      return identity;
    }).finally(() => this.#closers.delete(c));
  }
  readonly #closers = new Map<MqttConnection, () => void>();

  /**
   * A connection was accepted: one with the same client id is taken over
   * (closed), and the session is resumed (`present`) or a new one started.
   * With authentication on, a session is its maker's: `"owner"` when the
   * client id's session belongs to another user, `"ownerless"` when it was
   * made while authentication was off (read back from `--data-dir`): no
   * user takes it over, resumed or ended, since none can be told from the
   * client that made it (one user cannot end another's session or cut its
   * connection by reusing its client id). `"sessions"` when a new
   * persistent session would pass `maxSessions`, `"user sessions"` when it
   * would pass its user's `maxUserSessions`, `"memory"` when it or its will
   * would pass their share of max-memory (SessionTable.refusal). Each leaves
   * everything as it was.
   */
  register(
    c: MqttConnection,
    want: SessionRequest,
  ): { session: MqttSession; present: boolean } | SessionRefusal {
    const id = c.clientId;
    let session = this.sessions.get(id);
    if (
      this.#authenticator !== undefined && session !== undefined && session.owner !== want.owner
    ) {
      return session.owner === undefined ? "ownerless" : "owner";
    }
    const resumable = session !== undefined && !want.clean && session.owner === want.owner &&
      session.version === want.version;
    const refused = this.sessions.refusal(session, resumable, want);
    if (refused !== undefined) return refused;
    const keeper = this.core.keeper;
    const written = keeper?.written;
    const old = this.#byClientId.get(id);
    if (old !== undefined && old !== c) {
      this.takeovers++;
      // Its session ends here, unless it is persistent: then it is the one resumed.
      old.close("taken over by a new connection with its client id", true);
    }
    session = this.sessions.get(id);
    let present = false;
    // A will waiting for its delay: not sent when its session goes on, sent when it ends here.
    this.wills.drop(id, !(session !== undefined && resumable));
    if (session !== undefined && resumable) {
      present = true;
      this.sessions.resumed++;
    } else {
      // Clean start, another protocol's or an unowned session: it ends, a new one begins.
      session?.end("replaced by a new session");
      session = this.sessions.start(id, want.owner, want.version);
    }
    session.expiry = want.expiry;
    if (want.will !== undefined) want.will.owner = want.owner;
    this.#byClientId.set(id, c);
    this.#settled(c);
    // What this changed on disk (a persistent session ended or replaced, its expiry) is committed
    // before CONNACK says so: a SIGKILL then does not bring the old session back (hostile review
    // 40a T5: 6 rounds of 8 under batch). Committed now, in this turn, not waiting for the sync.
    keeper?.commitSince(written!, false, true);
    if (keeper?.failing === true && keeper.written !== written) return "unstored"; // 41b X6
    return { session, present };
  }

  /** A connection closed. */
  gone(c: MqttConnection, why: string): void {
    this.#connections.delete(c);
    this.#slots.gone(c);
    this.#closers.get(c)?.();
    if (this.#byClientId.get(c.clientId) === c) this.#byClientId.delete(c.clientId);
    log.debug("MQTT client {id} at {peer} gone: {why}", {
      id: cut(c.clientId, 60),
      peer: c.remote,
      why,
    });
  }

  /** `c` was given CONNACK: closed to make room only as its source's. */
  #settled(c: MqttConnection): void {
    this.#slots.settled(c);
  }

  /** A line about a misbehaving client (rate-limited with every other peer warning). */
  warn(c: { remote: string; clientId: string }, message: string): void {
    warnPeer("MQTT {peer} ({id}): {message}", {
      peer: c.remote,
      id: cut(c.clientId, 60),
      message: cut(message),
    });
  }

  stats(): Record<string, unknown> {
    const queues = this.sessions.queues(); // with the QoS 0 parked subscriptions did not take:
    queues.session_dropped += this.core.matches.parkedDrops.stalled; // parking.ts
    return {
      port: this.#listener?.addr.port,
      ws_port: this.#ws?.addr.port,
      tls: listensTls(this.#tls),
      tls_failures: this.tlsFailures,
      connections: this.#connections.size,
      handshaking: this.#slots.table.newcomers.handshaking,
      accepted: this.accepted,
      refused_connections: this.refusedConnections,
      evicted_connections: this.#slots.table.newcomers.evicted,
      connection_limits: this.#slots.stats(),
      messages_in: this.messagesIn,
      bad_connects: this.badConnects,
      protocol_errors: this.protocolErrors,
      refused_publishes: this.refusedPublishes,
      oversize: this.oversize,
      oversize_out: this.oversizeOut,
      slow_consumers: this.slowConsumers,
      undeliverable: this.undeliverable,
      expired: this.expired + expiredRetained.count,
      away_qos0_dropped: this.awayQos0Dropped + this.core.matches.parkedDrops.away,
      takeovers: this.takeovers,
      wills: this.wills.published,
      wills_delayed: this.wills.delayed,
      wills_cancelled: this.wills.cancelled,
      sessions: this.sessions.size,
      sessions_persistent: this.sessions.persistent,
      sessions_bytes: sessionMemory.bytes,
      sessions_away: this.sessions.size - this.#byClientId.size,
      sessions_resumed: this.sessions.resumed,
      sessions_expired: this.sessions.expired,
      sessions_restored: this.sessions.restored,
      messages_restored: this.sessions.messagesRestored,
      ...queues,
      ...this.sessions.inflight(),
    };
  }
}
