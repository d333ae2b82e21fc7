/**
 * The connections a listener took that have not proven anything yet (no
 * dist hello, no MQTT CONNECT, not one byte through an L4 proxy), oldest
 * first. When the listener is full, the oldest of them is closed to make
 * room for the new one (of the source that holds the most of them: one
 * address's flood closes its own first), as obs/http_guarded.ts closes the connection that
 * waited longest for its header: connections that never speak, renewed
 * just before their deadline, then cannot keep everyone else out, and a
 * client that speaks at once is never the oldest for long. Only when every
 * connection has proven itself is a new one refused. A connection still in
 * its TLS handshake holds a descriptor before its listener counts it as
 * open: the newcomers count those too ({@link Newcomers.admits}). One
 * implementation for the native port (net.ts), the MQTT ports and the L4
 * balancer.
 */

/** One connection waiting to prove itself: see {@link Newcomers}. */
export class Newcomer {
  readonly #from: Newcomers;
  /** Where it came from (its peer's address): see {@link Newcomers.makeRoom}. */
  readonly source: string;
  /** Hangs the connection up when it is closed to make room (settable: a connection changes hands). */
  close: () => void;

  constructor(from: Newcomers, source: string, close: () => void) {
    this.#from = from;
    this.source = source;
    this.close = close;
  }

  /**
   * Its TLS handshake ended, secured or not (it no longer counts in
   * {@link Newcomers.handshaking}; it still waits until it settles). Idempotent.
   */
  handshook(): void {
    this.#from.handshook(this);
  }

  /** It proved itself (or closed): it is no longer closed to make room. Idempotent. */
  settled(): void {
    this.#from.leave(this);
  }
}

/** A listener's connections that have not proven anything yet; see the module comment. */
export class Newcomers {
  /** Waiting connections by source (a peer's address), each oldest first. */
  readonly #bySource = new Map<string, Set<Newcomer>>();
  #size = 0;
  /** Connections closed to make room, since the start. */
  evicted = 0;
  /** Of the connections filed, those in their TLS handshake (see {@link Newcomer.handshook}). */
  readonly #handshaking = new Set<Newcomer>();

  /**
   * Files a connection just accepted from `source` (its address); `close`
   * hangs it up. With `handshaking`, it is starting its TLS handshake and
   * counts in {@link admits} until {@link Newcomer.handshook}.
   */
  arrive(close: () => void, source = "", options: { handshaking?: boolean } = {}): Newcomer {
    let set = this.#bySource.get(source);
    if (set === undefined) this.#bySource.set(source, set = new Set());
    const n = new Newcomer(this, source, close);
    if (options.handshaking === true) this.#handshaking.add(n);
    set.add(n);
    this.#size++;
    return n;
  }

  /**
   * Whether a listener with `open` connections past their handshake (and
   * {@link handshaking} in it) may take one more under `max`: at the limit,
   * only by closing a newcomer to make room ({@link makeRoom}).
   * @returns false when it is full and none waits (then the new one is refused)
   */
  admits(open: number, max: number): boolean {
    return open + this.#handshaking.size < max || this.makeRoom();
  }

  /** Takes `n` out (it settled, or is being closed). */
  leave(n: Newcomer): void {
    const set = this.#bySource.get(n.source);
    if (set === undefined || !set.delete(n)) return;
    this.#size--;
    if (set.size === 0) this.#bySource.delete(n.source);
  }

  /**
   * Closes the connection that has waited longest without proving itself,
   * of the source that has the most such connections: a flood from one
   * address closes its own connections first, not a slower client's from
   * another (hostile review W3).
   * @returns false when none waits (then the new connection is refused)
   */
  makeRoom(): boolean {
    let most: Set<Newcomer> | undefined;
    for (const set of this.#bySource.values()) {
      if (most === undefined || set.size > most.size) most = set;
    }
    if (most === undefined) return false;
    const oldest: Newcomer = most.values().next().value!;
    this.leave(oldest);
    this.evicted++;
    try {
      oldest.close();
    } catch {
      // Closed already by its peer.
    }
    return true;
  }

  /** Takes `n` out of those in their TLS handshake (it ended). */
  handshook(n: Newcomer): void {
    this.#handshaking.delete(n);
  }

  /** How many of those filed are in their TLS handshake now (settled or not). */
  get handshaking(): number {
    return this.#handshaking.size;
  }

  /** How many wait now. */
  get size(): number {
    return this.#size;
  }
}

/** A connection's source for {@link Newcomers.arrive}: its peer's address, without the port. */
export function sourceOf(conn: Deno.Conn): string {
  try {
    return (conn.remoteAddr as Deno.NetAddr).hostname;
  } catch {
    return "";
  }
}
