/**
 * The connections a listener took that have not proven anything yet (no
 * dist hello, no MQTT CONNECT, not one byte through an L4 proxy), oldest
 * first. When the listener is full, the oldest of them is closed to make
 * room for the new one, as obs/http_guarded.ts closes the connection that
 * waited longest for its header: connections that never speak, renewed
 * just before their deadline, then cannot keep everyone else out, and a
 * client that speaks at once is never the oldest for long. Only when every
 * connection has proven itself is a new one refused. One implementation
 * for the native port (net.ts), the MQTT ports and the L4 balancer.
 */

/** One connection waiting to prove itself: see {@link Newcomers}. */
export class Newcomer {
  readonly #waiting: Set<Newcomer>;
  /** Hangs the connection up when it is closed to make room (settable: a connection changes hands). */
  close: () => void;

  constructor(waiting: Set<Newcomer>, close: () => void) {
    this.#waiting = waiting;
    this.close = close;
  }

  /** It proved itself (or closed): it is no longer closed to make room. Idempotent. */
  settled(): void {
    this.#waiting.delete(this);
  }
}

/** A listener's connections that have not proven anything yet; see the module comment. */
export class Newcomers {
  readonly #waiting = new Set<Newcomer>();
  /** Connections closed to make room, since the start. */
  evicted = 0;

  /** Files a connection just accepted; `close` hangs it up. */
  arrive(close: () => void): Newcomer {
    const n = new Newcomer(this.#waiting, close);
    this.#waiting.add(n);
    return n;
  }

  /**
   * Closes the connection that has waited longest without proving itself.
   * @returns false when none waits (then the new connection is refused)
   */
  makeRoom(): boolean {
    for (const oldest of this.#waiting) {
      this.#waiting.delete(oldest);
      this.evicted++;
      try {
        oldest.close();
      } catch {
        // Closed already by its peer.
      }
      return true;
    }
    return false;
  }

  /** How many wait now. */
  get size(): number {
    return this.#waiting.size;
  }
}
