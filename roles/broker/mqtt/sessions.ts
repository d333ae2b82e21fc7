/**
 * The MQTT front end's sessions by client id (front.ts makes, resumes or
 * refuses them at CONNECT): which are persistent, what ended sessions
 * dropped, the counters of `sys.stats`, and under `--data-dir` their rows
 * on disk, written as they change and read back at start (persist.ts,
 * journal.ts).
 *
 * Persistent sessions (each at session_cost.ts `sessionBytes`, its filters'
 * text, and what it keeps of deliveries in flight for a redelivery) and
 * wills are counted in max-memory (memory.ts `sessionMemory`), and take at most {@link SESSION_SHARE} of it: past it
 * (or while the broker is over its budget) a CONNECT that would add a
 * persistent session or a will is refused (CONNACK 0x97 / 3), so clients
 * that vanish cannot hold the broker's memory, nor take the rest of the
 * budget from topics, subscriptions and deliveries; a client resuming its
 * session without a will is served as always. Within that share, wills
 * take at most {@link WILL_SHARE} of it, so persistent sessions keep a
 * reserve; and with `--users` each user's sessions and wills take at most
 * {@link USER_SHARE} of it, so one user's wills (live, or MQTT 5's delayed
 * a day after its client vanished) cannot refuse everyone else's sessions.
 * Sessions whose clients are away are held, with their subscriptions and
 * queues, to memory.ts AWAY_SHARE by the memory guard ({@link away}: away.ts).
 */
import type { Store } from "../../../store/mod.ts";
import type { MqttFront, SessionRefusal, SessionRequest } from "./front.ts";
import { TOKEN_USER } from "../../../auth/mod.ts";
import { sessionMemory } from "../memory.ts";
import { willBytes } from "./wills.ts";
import { connectHasWill } from "./packets.ts";
import { MqttSession } from "./session.ts";
import { sessionBytes } from "./session_cost.ts";
import { CONNECTED } from "./reader.ts";
import { keepAlive, lastAlive, readRow, type SessionRow, SESSIONS } from "./persist.ts";
import { QOS2_IN, SessionJournal, SUBSCRIPTIONS } from "./journal.ts";
import { AwaySessions } from "./away.ts";
import { paced } from "./pace.ts";
import {
  copiedMark,
  deleteRows,
  type NumberedSession,
  numberedSession,
  restoreJournal,
  restoreQos2In,
  restoreSubscriptions,
  rowSessions,
} from "./journal_restore.ts";

/** The part of max-memory that persistent sessions and wills may take together. */
export const SESSION_SHARE = 0.5;

/** The part of that share wills may take: the rest is kept for persistent sessions. */
export const WILL_SHARE = 0.5;

/**
 * The part of that share one user's persistent sessions and wills may take
 * together (the shared token's holders and unauthenticated clients are
 * not counted apart).
 */
export const USER_SHARE = 1 / 8;

export class SessionTable {
  readonly #front: MqttFront;
  readonly #byId = new Map<string, MqttSession>();
  /** Sessions whose expiry is not 0 (kept up to date by the sessions). */
  readonly #persistent = new Set<MqttSession>();
  /** How many of them each owner holds (authenticated users only). */
  readonly #persistentBy = new Map<string, number>();
  /** What each owner's sessions are counted at (MqttSession.#recount, and what they keep in flight). */
  readonly #bytesBy = new Map<string, number>();
  /** Those whose clients are away, held to their share of max-memory by the memory guard. */
  readonly away: AwaySessions;
  resumed = 0;
  expired = 0;
  restored = 0;
  messagesRestored = 0;
  /** Deliveries dropped by sessions that ended (the live ones count their own). */
  #droppedGone = 0;
  #store: Store | undefined;
  #alive: ReturnType<typeof setInterval> | undefined;
  /** Set while persist() puts sessions back: their rows are written once they are whole. */
  #restoring = false;
  /** The next session number of the rows on disk (journal.ts). */
  #nextNo = 1;
  /** Set at shutdown: rows are no longer written as sessions change (close() writes them). */
  #closing = false;

  constructor(front: MqttFront) {
    this.#front = front;
    this.away = new AwaySessions(front);
  }

  get(clientId: string): MqttSession | undefined {
    return this.#byId.get(clientId);
  }

  /** A new session for `clientId`, in place of any it had (ended by the caller). */
  start(clientId: string, owner: string | undefined, version: number): MqttSession {
    const session = new MqttSession(this.#front, clientId, owner, version);
    this.#byId.set(clientId, session);
    return session;
  }

  get size(): number {
    return this.#byId.size;
  }

  /** How many sessions are persistent (expiry not 0). */
  get persistent(): number {
    return this.#persistent.size;
  }

  /**
   * Keeps persistent sessions in `store` from now on, and takes back those
   * it holds (away, each ending when what is left of its expiry runs out;
   * past `maxSessions`, the rest are dropped).
   */
  persist(store: Store): { restored: number; unreadable: number; messages: number } {
    this.#store = store;
    // A publish's PUBACK (or answer) waits for the commit of the rows its deliveries wrote.
    this.#front.core.keeper = store;
    let unreadable = 0;
    const now = Date.now();
    const alive = lastAlive(store) ?? now;
    // Each session takes a new number (its rows read back are written anew under it): past
    // every number of a row or a session on disk.
    const numbers = rowSessions(store);
    const subsAt = rowSessions(store, SUBSCRIPTIONS);
    const mark = copiedMark(store);
    const rows: [string, SessionRow][] = [];
    for (const [clientId, text] of store.rows(SESSIONS)) {
      try {
        if (typeof text !== "string") throw new Error("Not text");
        const row = readRow(text);
        rows.push([clientId, row]);
        this.#nextNo = Math.max(this.#nextNo, (row.no ?? 0) + 1, (row.subsAt ?? 0) + 1);
      } catch {
        unreadable++;
        store.delete(SESSIONS, clientId);
      }
    }
    // (And past the mark's, if a restart died before deleting it: journal_restore.ts.)
    for (const no of [...numbers, ...subsAt, mark?.[1] ?? 0]) {
      this.#nextNo = Math.max(this.#nextNo, no + 1);
    }
    const numbered: NumberedSession[] = [];
    this.#restoring = true;
    for (const [clientId, row] of rows) {
      if (this.#persistent.size >= this.#front.limits.maxSessions) {
        unreadable++; // past max-sessions
        store.delete(SESSIONS, clientId);
        continue;
      }
      const session = this.start(clientId, row.owner ?? undefined, row.version);
      let subs: Map<number, string>;
      try {
        session.expiry = row.expiry;
        subs = restoreSubscriptions(store, session, row);
        restoreQos2In(store, session);
        session.recount();
      } catch {
        unreadable++;
        session.end("unreadable");
        store.delete(SESSIONS, clientId);
        continue;
      }
      const withRows = numberedSession(session, row, subs, mark);
      if (withRows !== undefined) numbered.push(withRows);
      // Its row again: its subscriptions, its new number, and the old ones until the restart is over.
      this.#restoring = false;
      session.save();
      this.#restoring = true;
      // Away since it went, or (connected when the broker was killed) since its last sign of life.
      const away = row.away ?? Math.min(alive, now);
      session.awaitClient(row.expiry * 1000 - (now - away), away, row.source);
      this.restored++;
    }
    this.#restoring = false;
    // Subscriptions of no session (ended, unreadable, or a kill during their rows' first writing).
    const live = new Set(numbered.map(({ journal }) => journal.subsAt));
    for (const at of subsAt) if (!live.has(at)) deleteRows(store, at, SUBSCRIPTIONS);
    for (const at of rowSessions(store, QOS2_IN)) if (!live.has(at)) deleteRows(store, at, QOS2_IN);
    const { restored, dropped } = restoreJournal(store, numbers, numbered, mark);
    this.away.readBackDone();
    this.messagesRestored = restored;
    this.#front.undeliverable += dropped;
    this.#alive = keepAlive(store, () => this.#persistent.size > 0);
    return { restored: this.restored, unreadable, messages: this.messagesRestored };
  }

  /** The disk journal of a persistent session (none without `--data-dir`), numbered anew. */
  journal(session: MqttSession): SessionJournal | undefined {
    const store = this.#store;
    if (store === undefined) return undefined;
    // A subscription's row is its filter (from the session) and options.
    return new SessionJournal(
      store,
      this.#nextNo++,
      (sub) => session.subscriptions().filterOf(sub),
    );
  }

  /** A session changed: its row is written (or deleted) at the store's next commit. */
  save(session: MqttSession): void {
    const store = this.#store;
    // (Restoring: written once its subscriptions and numbers are back, see persist.)
    if (store === undefined || this.#closing || this.#restoring) return;
    const id = session.clientId;
    // The row of whatever session has the id when the commit runs (or none: deleted).
    store.put(SESSIONS, id, () => this.#byId.get(id)?.row() ?? null);
  }

  /** A session's expiry became non-zero, or zero. */
  persistentChanged(session: MqttSession, persistent: boolean): void {
    if (persistent === this.#persistent.has(session)) return;
    const owner = session.owner;
    if (persistent) {
      this.#persistent.add(session);
      if (owner !== undefined) this.#persistentBy.set(owner, this.heldBy(owner) + 1);
      return;
    }
    this.#persistent.delete(session);
    if (owner === undefined) return;
    const left = this.heldBy(owner) - 1;
    if (left > 0) this.#persistentBy.set(owner, left);
    else this.#persistentBy.delete(owner);
  }

  /**
   * A session's count in max-memory changed by `delta` (what it is, what
   * it keeps in flight): in all, and in its owner's share.
   */
  charge(owner: string | undefined, delta: number): void {
    sessionMemory.bytes += delta;
    if (owner === undefined) return;
    const left = (this.#bytesBy.get(owner) ?? 0) + delta;
    if (left > 0) this.#bytesBy.set(owner, left);
    else this.#bytesBy.delete(owner);
  }

  /**
   * Why a CONNECT may not have the session it asks for (MqttFront.register),
   * or undefined: a new persistent session past `maxSessions` or its user's
   * `maxUserSessions` (the shared token's holders and unauthenticated
   * clients not counted apart), or one, or a will, that would pass their
   * share of max-memory, wills' part of it, or its user's (see the module
   * comment).
   */
  refusal(
    session: MqttSession | undefined,
    resumable: boolean,
    want: SessionRequest,
  ): SessionRefusal | undefined {
    const limits = this.#front.limits;
    const will = willBytes(want.will);
    let adds = will;
    if (!resumable && want.expiry > 0) {
      if (this.persistent >= limits.maxSessions) return "sessions";
      // The user's own persistent session of this client id would be replaced, not added.
      const replaced = session !== undefined && session.owner === want.owner &&
        this.isPersistent(session);
      const owner = want.owner;
      const most = limits.maxUserSessions;
      if (
        !replaced && owner !== undefined && owner !== TOKEN_USER && most !== undefined &&
        this.heldBy(owner) >= most
      ) return "user sessions";
      if (!replaced) adds += sessionBytes(want.clientId);
    }
    if (adds === 0) return undefined;
    if (this.memoryFull(adds) || (will > 0 && this.willsFull(will))) return "memory";
    const owner = want.owner;
    const counted = owner !== undefined && owner !== TOKEN_USER;
    return counted && this.userFull(owner, adds) ? "memory" : undefined;
  }

  /**
   * Whether CONNECT `packet` (its body from `head`) carries a will that
   * would pass the share of max-memory: refused before it is parsed (copied).
   */
  refusesWill(packet: Uint8Array, head: number): boolean {
    return connectHasWill(packet, head) &&
      (this.memoryFull(packet.length) || this.willsFull(packet.length));
  }

  /** Whether a CONNECT of `total` bytes (a will, if that large) is refused before it is buffered. */
  refusesBuffer(total: number): boolean {
    return this.memoryFull(total) || this.willsFull(total);
  }

  /** The share of max-memory sessions and wills may take (Infinity without max-memory). */
  #share(): number {
    return this.#front.core.maxMemory * SESSION_SHARE;
  }

  /** Whether `adds` more bytes of wills would pass their part of the share. */
  willsFull(adds: number): boolean {
    return this.#front.wills.bytes + adds > this.#share() * WILL_SHARE;
  }

  /** Whether `adds` more bytes of `owner`'s sessions or wills would pass the user's part of the share. */
  userFull(owner: string, adds: number): boolean {
    const held = (this.#bytesBy.get(owner) ?? 0) + this.#front.wills.heldBy(owner);
    return held + adds > this.#share() * USER_SHARE;
  }

  /** Whether `adds` more bytes of sessions or wills would pass their share of max-memory. */
  memoryFull(adds: number): boolean {
    const core = this.#front.core;
    if (core.maxMemory === Infinity) return false;
    return core.overBudget || sessionMemory.bytes + adds > core.maxMemory * SESSION_SHARE;
  }

  /** Whether `session` is persistent (expiry not 0). */
  isPersistent(session: MqttSession): boolean {
    return this.#persistent.has(session);
  }

  /** How many persistent sessions `owner` holds. */
  heldBy(owner: string): number {
    return this.#persistentBy.get(owner) ?? 0;
  }

  /** A session ended (its client's clean disconnect, a clean start, expiry, shutdown). */
  ended(session: MqttSession, why: string): void {
    if (this.#byId.get(session.clientId) === session) this.#byId.delete(session.clientId);
    this.away.back(session);
    this.#droppedGone += session.dropped;
    if (why === "expired") this.expired++;
  }

  /** Shutdown begins: rows are no longer written as sessions change (connections are closing). */
  closing(): void {
    this.#closing = true;
    clearInterval(this.#alive);
  }

  /**
   * With `--data-dir`, writes the persistent sessions as they are now, and
   * keeps them: they end here, not on disk.
   */
  close(): void {
    const store = this.#store;
    if (store !== undefined) {
      for (const session of this.#persistent) store.put(SESSIONS, session.clientId, session.row()!);
    }
    for (const session of [...this.#byId.values()]) session.end("shutdown");
  }

  /**
   * What persistent sessions hold for their clients, and what they dropped
   * past max-pending (only theirs drop: clean sessions are cut off). A walk
   * of at most `maxSessions` sessions, per sys.stats.
   */
  queues(): {
    session_queued_bytes: number;
    session_inflight_bytes: number;
    session_dropped: number;
    publishers_paced: number;
    subscribers_slow: number;
  } {
    let queued = 0;
    let kept = 0;
    let dropped = this.#droppedGone;
    for (const session of this.#persistent) {
      // (Its pending bytes count what it keeps in flight: shown apart.)
      queued += session.queued.bytes - session.inflight.keptBytes;
      kept += session.inflight.keptBytes;
      dropped += session.dropped;
    }
    return {
      session_queued_bytes: queued,
      session_inflight_bytes: kept,
      session_dropped: dropped,
      // Publishers' waits for the subscribers they fed, and those found not keeping up (pace.ts).
      publishers_paced: paced.publishers,
      subscribers_slow: paced.slow,
    };
  }

  /** Deliveries awaiting their acknowledgement on the connections, and connections whose window is full. */
  inflight(): { inflight: number; windows_full: number } {
    let inflight = 0;
    let full = 0;
    for (const session of this.#byId.values()) {
      const c = session.connection;
      if (c === undefined || c.state() !== CONNECTED) continue;
      inflight += session.inflight.size;
      if (session.inflight.size >= c.window) full++;
    }
    return { inflight, windows_full: full };
  }
}
