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
 * - a client told OVERLOADED is not read for a moment, and then only once
 *   it has taken its answers ({@link Pressure.backOff}).
 * Backend connections themselves are read whatever output waits (wire
 * keepReading, set by links.ts): their answers are what drain the clients.
 */
import { drainTarget, type Peer, stalledLoad } from "../../wire/mod.ts";
import type { Backend } from "./backends.ts";
import { UNREAD_BYTES } from "./share_limits.ts";

/**
 * Whether a client connection leaves its answers unread: its socket holds
 * more than UNREAD_BYTES its peer has not acknowledged, and the peer
 * acknowledged nothing for a while (wire's stalledLoad; allowance.ts).
 */
export function unread(flow: object): boolean {
  return stalledLoad((flow as Peer).conn, UNREAD_BYTES, true) > 0;
}

/** How long a client told OVERLOADED is not read (ms; see Pressure.backOff). */
export const OVERLOAD_BACKOFF_MS = 100;

export class Pressure {
  /** Sends what waits (the dispatcher's `pump`). */
  #wake: () => void;
  /** Client connections held with a wake-up waiting on their output. */
  #held = new WeakSet<Peer>();
  /** Client connections not read for a moment after an OVERLOADED answer. */
  #backingOff = new WeakSet<Peer>();

  constructor(wake: () => void) {
    this.#wake = wake;
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
   * Nor is it read again before it has taken its answers (none waits in
   * the process, its socket is not {@link unread}; looked at again every
   * OVERLOAD_BACKOFF_MS): a refused request frees its slot for the next,
   * so 40 connections that pipeline small requests and never read were
   * refused ~60,000 requests a second, each parsed and answered into a
   * socket nobody drains (hostile39a P9). Now a non-reader is refused
   * about what its receive buffer takes, then left unread, as a proxy
   * stops reading a client that does not take its responses.
   */
  backOff(flow: Peer): void {
    if (this.#backingOff.has(flow) || flow.isClosed) return;
    this.#backingOff.add(flow);
    flow.conn.pauseReading();
    const look = (): void => {
      const conn = flow.conn;
      if (!flow.isClosed && conn.pendingBytes > 0) {
        conn.drained(0).then(() => setTimeout(look, OVERLOAD_BACKOFF_MS));
      } else if (!flow.isClosed && unread(flow)) {
        setTimeout(look, OVERLOAD_BACKOFF_MS);
      } else {
        this.#backingOff.delete(flow);
        conn.resumeReading();
      }
    };
    setTimeout(look, OVERLOAD_BACKOFF_MS);
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
