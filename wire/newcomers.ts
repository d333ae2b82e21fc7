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
import type { DistError } from "./errors.ts";

/**
 * What hangs a connection up when it is closed to make room: a function, or an object with a
 * `hangUp` method (sources.ts's entry: no closure made a connection).
 */
export type Hangup = (() => void) | { hangUp(): void };

/**
 * What hangs a connection of a source table (sources.ts) up when it is closed to make room, told
 * why and whether it is past its hello: a function, or an object with that method (the L4 proxy's
 * connection: no closure made a connection).
 */
export type Closer =
  | ((why: DistError, hello: boolean) => void)
  | { closeForRoom(why: DistError, hello: boolean): void };

/** One connection waiting to prove itself: see {@link Newcomers}. */
export class Newcomer {
  readonly #from: Newcomers;
  /** Where it came from (its peer's address): see {@link Newcomers.makeRoom}. */
  readonly source: string;
  /** Hangs the connection up when it is closed to make room (settable: a connection changes hands). */
  close: Hangup;

  constructor(from: Newcomers, source: string, close: Hangup) {
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

/** One source's waiting connections, and its place in {@link Newcomers}' heap. */
interface Source {
  readonly key: string;
  /** Its waiting connections, oldest first. */
  readonly waiting: Set<Newcomer>;
  /** When it began waiting (ties go to the earlier). */
  seq: number;
  /** Its index in the heap. */
  at: number;
}

/** A listener's connections that have not proven anything yet; see the module comment. */
export class Newcomers {
  /** Waiting connections by source (a peer's address). */
  readonly #bySource = new Map<string, Source>();
  /**
   * The sources with any waiting, the one {@link makeRoom} closes from on top: most waiting, then
   * the one waiting since the longest. A connection arriving or leaving moves its source a few
   * places (log of the sources), where scanning for the top was every source's work per eviction.
   */
  readonly #heap: Source[] = [];
  #seq = 0;
  #size = 0;
  /** Connections closed to make room, since the start. */
  evicted = 0;
  /** Of the connections filed, those in their TLS handshake (see {@link Newcomer.handshook}). */
  readonly #handshaking = new Set<Newcomer>();
  /**
   * The last source whose waiting emptied, its record kept for its next arrival: a client that
   * speaks at once (an L4 connection settles at its first read) empties its source at nearly
   * every connection, and a record and a Set were made and dropped each time (~540 B).
   */
  #spare: Source | undefined;

  /**
   * Files a connection just accepted from `source` (its address); `close`
   * hangs it up. With `handshaking`, it is starting its TLS handshake and
   * counts in {@link admits} until {@link Newcomer.handshook}.
   */
  arrive(close: Hangup, source = "", options: { handshaking?: boolean } = {}): Newcomer {
    let from = this.#bySource.get(source);
    if (from === undefined) {
      const spare = this.#spare;
      if (spare !== undefined && spare.key === source) {
        this.#spare = undefined;
        from = spare;
        from.seq = this.#seq++;
        from.at = this.#heap.length;
      } else {
        from = { key: source, waiting: new Set(), seq: this.#seq++, at: this.#heap.length };
      }
      this.#bySource.set(source, from);
      this.#heap.push(from);
    }
    const n = new Newcomer(this, source, close);
    if (options.handshaking === true) this.#handshaking.add(n);
    from.waiting.add(n);
    this.#size++;
    this.#up(from);
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
    const from = this.#bySource.get(n.source);
    if (from === undefined || !from.waiting.delete(n)) return;
    this.#size--;
    if (from.waiting.size > 0) return this.#down(from);
    this.#bySource.delete(from.key);
    this.#spare = from;
    const last = this.#heap.pop()!;
    if (last === from) return;
    this.#heap[from.at] = last;
    last.at = from.at;
    this.#up(last);
    this.#down(last);
  }

  /** Whether `a` belongs above `b` in the heap: more waiting, or as many and waiting longer. */
  #above(a: Source, b: Source): boolean {
    const d = a.waiting.size - b.waiting.size;
    return d > 0 || (d === 0 && a.seq < b.seq);
  }

  #up(s: Source): void {
    const heap = this.#heap;
    while (s.at > 0) {
      const parent = heap[(s.at - 1) >> 1];
      if (!this.#above(s, parent)) return;
      this.#swap(s, parent);
    }
  }

  #down(s: Source): void {
    const heap = this.#heap;
    for (;;) {
      const l = 2 * s.at + 1;
      if (l >= heap.length) return;
      const child = l + 1 < heap.length && this.#above(heap[l + 1], heap[l])
        ? heap[l + 1]
        : heap[l];
      if (!this.#above(child, s)) return;
      this.#swap(s, child);
    }
  }

  #swap(a: Source, b: Source): void {
    const at = a.at;
    a.at = b.at;
    b.at = at;
    this.#heap[a.at] = a;
    this.#heap[b.at] = b;
  }

  /**
   * Closes the connection that has waited longest without proving itself,
   * of the source that has the most such connections: a flood from one
   * address closes its own connections first, not a slower client's from
   * another (hostile review W3).
   * @param source only of this source (the one holding the most of the
   *   listener's connections: sources.ts)
   * @returns false when none waits (then the new connection is refused)
   */
  makeRoom(source?: string): boolean {
    const most = source === undefined ? this.#heap[0] : this.#bySource.get(source);
    if (most === undefined) return false;
    const oldest: Newcomer = most.waiting.values().next().value!;
    this.leave(oldest);
    this.evicted++;
    try {
      const close = oldest.close;
      if (typeof close === "function") close();
      else close.hangUp();
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
