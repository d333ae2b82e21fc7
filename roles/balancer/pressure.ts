/**
 * Backpressure between the balancer's clients and its backends (hostile32
 * X5), by the connections' high-water mark (4 MiB by default) at both ends:
 * - a client that has not read more than that of its answers gets no more
 *   of its requests sent ({@link Pressure.held}): a non-reader slows only
 *   itself (its requests wait in the queue and fail after
 *   `--queue-timeout`, and the write timeout cuts it off);
 * - a backend whose connection holds more than that of unwritten requests
 *   takes no more until they drain ({@link Pressure.checkBacklog}), so what
 *   waits for a slow backend waits in the fair queue, and the balancer
 *   never cuts its own backend connection as a slow consumer;
 * - a client told OVERLOADED is not read for a moment, and then, until it
 *   takes its answers, only while its source's refused connections hold
 *   few enough ({@link Pressure.backOff}).
 * Backend connections themselves are read whatever output waits (wire
 * keepReading, set by links.ts): their answers are what drain the clients.
 */
import { drainTarget, type Peer, stalledLoad, unsentBytes } from "../../wire/mod.ts";
import { askIfDue, askPeer, type ProofHolder, unanswered } from "../../wire/read_proof.ts";
import type { Backend } from "./backends.ts";
import { UNREAD_BYTES } from "./share_limits.ts";

/** What each client connection's answers to the balancer's requests have shown (wire/read_proof.ts). */
const proofs = new WeakMap<Peer, ProofHolder>();

/**
 * How long a client may leave the balancer's request unanswered, given
 * UNREAD_BYTES past its last answer, before it counts as leaving its
 * answers unread (the broker's queue groups wait as long).
 */
const ANSWER_STALL_MS = 25;

/**
 * Whether a client connection leaves its answers unread (allowance.ts): its
 * socket holds more than UNREAD_BYTES its peer has not acknowledged, and
 * the peer acknowledged nothing for a while (wire's stalledLoad); or it
 * leaves unanswered the `sys.ping` sent behind its answers (wire's
 * read_proof.ts, asked here when due) for ANSWER_STALL_MS with UNREAD_BYTES
 * given past its last answer. The kernel's word alone let a client that
 * sets a 4 MiB SO_RCVBUF and never reads pass for a reader until 8 MiB of
 * answers sat unread (hostile39a P2: it took the whole bulk allowance); an
 * answer says its client read every byte before it.
 */
export function unread(flow: object): boolean {
  const peer = flow as Peer, conn = peer.conn;
  if (conn === undefined) return false; // not a connection: nothing to ask
  if (stalledLoad(conn, UNREAD_BYTES, true) > 0) return true;
  let holder = proofs.get(peer);
  if (holder === undefined) proofs.set(peer, holder = {});
  const p = askIfDue(
    holder,
    conn,
    conn.pendingBytes,
    (id, answered) => askPeer(peer, id, answered),
  );
  return unanswered(p, conn.bytesOut, UNREAD_BYTES, ANSWER_STALL_MS);
}

/** How long a client told OVERLOADED is not read (ms; see Pressure.backOff). */
export const OVERLOAD_BACKOFF_MS = 100;

/**
 * Bytes of output the connections of one source told OVERLOADED may have
 * been given together since, before they are no longer read until they
 * take their answers (see Pressure.backOff): a connection's default
 * high-water mark (4 MiB) and its socket's send buffer (up to tcp_wmem's
 * 4 MiB on Linux), what a `dist server` holds for one client before its
 * backpressure stops reading it.
 */
export const REFUSED_OUTPUT_BYTES = 8 * 1024 * 1024;

/** A connection told OVERLOADED (see Pressure.backOff). */
interface Refused {
  /** Its source (itself when it has none). */
  source: unknown;
  /** Its output (written and pending) when it was refused. */
  since: number;
  /** Bytes of output it was given since, as of its last look. */
  holds: number;
  /** Whether its reading is paused by backOff now, and since when (performance.now()). */
  paused: boolean;
  pausedAt: number;
}

export class Pressure {
  /** Sends what waits (the dispatcher's `pump`). */
  #wake: () => void;
  /** Client connections held with a wake-up waiting on their output. */
  #held = new WeakSet<Peer>();
  /** Client connections told OVERLOADED that have not shown since that they take their answers. */
  #refused = new Map<Peer, Refused>();
  /** Those by source, each source's in the order they were refused. */
  #bySource = new Map<unknown, Set<Refused>>();
  #sourceOf: ((flow: object) => string | undefined) | undefined;

  /**
   * @param wake sends what waits (the dispatcher's `pump`)
   * @param sourceOf a client connection's source (undefined: its own)
   */
  constructor(wake: () => void, sourceOf?: (flow: object) => string | undefined) {
    this.#wake = wake;
    this.#sourceOf = sourceOf;
  }

  /**
   * Whether client `flow` owes more unread answers than it may (drainTarget:
   * its high-water mark, or its share while the process holds too much
   * output): then its requests wait, and the dispatcher is woken once it
   * has read enough (or closed).
   */
  held(flow: Peer): boolean {
    const conn = flow.conn;
    const target = drainTarget(conn.pendingBytes, conn.highWater);
    if (target < 0) return false;
    if (!this.#held.has(flow)) {
      this.#held.add(flow);
      conn.drained(target).then(() => {
        this.#held.delete(flow);
        this.#wake();
      });
    }
    return true;
  }

  /**
   * Client `flow` was told OVERLOADED (the queue is full, or its requests
   * waited it out): it is not read for OVERLOAD_BACKOFF_MS, and what it
   * sends meanwhile waits in its socket. Refusing is cheap per request but
   * not per byte: 8 connections sending 1 MB requests to a full queue were
   * read at line rate (1.1 GB in 5 s), the balancer's event loop had a read
   * ready on each at every turn, and the runtime then went seconds without
   * taking up its other sockets' input (backends' answers, other clients'
   * pings): backends were cut for frame and heartbeat timeouts.
   *
   * Then, until it has taken every answer (none waits in the process nor
   * unacknowledged in its socket, wire's unsentBytes; looked at every
   * OVERLOAD_BACKOFF_MS), it is read again only while it and the
   * connections of its source refused before it (and not done since) were
   * given at most REFUSED_OUTPUT_BYTES of output together since they were
   * refused. A refused request frees its
   * slot for the next, so 40 connections that pipeline small requests and
   * never read were refused ~60,000 requests a second, each parsed and
   * answered into a socket nobody drains (hostile39a P9). Left unread until
   * they had taken their answers, as stop 39 had it, a client that writes
   * all its requests before it reads any answer stalled for good once its
   * answers filled its socket (5,000 echoes of 2 KB past `--queue 50`:
   * stuck, where a `dist server` answers them all in 0.2-0.6 s). Now one
   * such client is read on about as far as a server reads it, and 40
   * non-readers of one source are refused that much together, then left
   * unread. Output given, not output unacknowledged: a client's kernel
   * acknowledges what fits its receive buffer unread (8 MiB with SO_RCVBUF).
   * Counted in the order they were refused, not all together: two
   * non-readers of one address that reconnect after each reset spent the
   * source's 8 MiB again and again, and an honest write-all client of the
   * same address refused before them was never read again (hostile40c V6:
   * 0 of 5,000 answers in 30 s). A newer connection can no longer stop an
   * older one; an older non-reader still stops the newer ones until it
   * goes (its write timeout cuts it).
   */
  backOff(flow: Peer): void {
    if (flow.isClosed) return;
    let r = this.#refused.get(flow);
    if (r === undefined) {
      const since = flow.conn.bytesOut + flow.conn.pendingBytes;
      r = { source: this.#sourceOf?.(flow) ?? flow, since, holds: 0, paused: false, pausedAt: 0 };
      this.#refused.set(flow, r);
      const same = this.#bySource.get(r.source);
      if (same === undefined) this.#bySource.set(r.source, new Set([r]));
      else same.add(r);
      setTimeout(() => this.#look(flow), OVERLOAD_BACKOFF_MS);
    }
    if (r.paused) return;
    r.paused = true;
    r.pausedAt = performance.now();
    flow.conn.pauseReading();
  }

  /** Looks at a refused connection again (see backOff), every OVERLOAD_BACKOFF_MS until it is done. */
  #look(flow: Peer): void {
    const r = this.#refused.get(flow)!;
    const conn = flow.conn;
    const same = this.#bySource.get(r.source)!;
    if (flow.isClosed || (conn.pendingBytes === 0 && unsentBytes(conn) === 0)) {
      // Gone, or it took every answer: read as any other.
      this.#refused.delete(flow);
      same.delete(r);
      if (same.size === 0) this.#bySource.delete(r.source);
      if (r.paused && !flow.isClosed) conn.resumeReading();
      return;
    }
    r.holds = conn.bytesOut + conn.pendingBytes - r.since;
    // Its own, and what those of its source refused before it hold (as of their last look).
    let total = 0;
    for (const o of same) {
      total += o.holds;
      if (o === r) break;
    }
    if (
      r.paused && total <= REFUSED_OUTPUT_BYTES &&
      performance.now() - r.pausedAt >= OVERLOAD_BACKOFF_MS
    ) {
      r.paused = false;
      conn.resumeReading();
    }
    setTimeout(() => this.#look(flow), OVERLOAD_BACKOFF_MS);
  }

  /** After a send to `backend` on `peer`: a connection holding too much takes no more until it drains. */
  checkBacklog(backend: Backend, peer: Peer): void {
    const conn = peer.conn;
    if (conn.pendingBytes <= conn.highWater || backend.backlogged) return;
    backend.backlogged = true;
    conn.drained(conn.highWater / 2).then(() => {
      backend.backlogged = false;
      this.#wake();
    });
  }
}
