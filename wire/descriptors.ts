/**
 * The process's file descriptors (hostile35 H2): how many it may open, how
 * many connections fit in that, and whether an error is the process running
 * out of them rather than the peer's doing.
 *
 * A connection's limit above what the descriptors allow is not a limit:
 * `dist balancer --mode tcp` at its default `--max-connections 10000` holds
 * two descriptors a connection (client and backend), 20,000 where `ulimit -n`
 * was 20,000; one address holding 9,990 connections made every accept and
 * every dial fail `Too many open files`, and the failed dials took every
 * healthy backend out. Deno has no getrlimit: on Linux the limit is read from
 * /proc/self/limits; elsewhere it is unknown and nothing is capped.
 */
import { DistError, truncate } from "./errors.ts";

/**
 * Descriptors kept for what is not a connection at the limit: the runtime's
 * own (about 25), logs, checks, metrics, and the connections being accepted
 * or closed meanwhile (a connection closed to make room may still be dialing
 * its backend): 100, and a 32nd of the limit ({@link reserveFor}).
 */
export const DESCRIPTOR_RESERVE = 100;

/** Descriptors the runtime and its files need besides connections: a process keeps this many free. */
export const RUNTIME_DESCRIPTORS = 60;

/** The reserve kept out of `limit` descriptors (see {@link DESCRIPTOR_RESERVE}). */
export function reserveFor(limit: number): number {
  return DESCRIPTOR_RESERVE + Math.floor(limit / 32);
}

/**
 * The most file descriptors this process may open (the soft `Max open
 * files`, `ulimit -n`), or undefined when unknown or unlimited.
 */
export function descriptorLimit(): number | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync("/proc/self/limits");
  } catch {
    return undefined; // Not Linux, or no /proc.
  }
  return parseDescriptorLimit(text);
}

/** The soft `Max open files` of a /proc/PID/limits text (undefined: absent or unlimited). */
export function parseDescriptorLimit(text: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith("Max open files"));
  const soft = line?.slice("Max open files".length).trim().split(/\s+/)[0];
  const n = Number(soft);
  return soft === undefined || !Number.isSafeInteger(n) || n <= 0 ? undefined : n;
}

/** What {@link connectionsThatFit} found. */
export interface Fit {
  /** The connections allowed: `max`, or fewer when the descriptors do not allow it. */
  max: number;
  /** The descriptor limit (undefined: unknown, nothing capped). */
  limit?: number;
  /** Whether the limit lowered `max`. */
  lowered: boolean;
}

/**
 * The most connections that fit in the process's descriptors, `max` at most.
 * @param perConnection descriptors each connection holds (2 for a proxy: client and backend)
 * @param options `limit` (default: {@link descriptorLimit}), `reserve` (default
 *   {@link reserveFor} the limit), `extra`: more descriptors to keep (one per backend checked)
 */
export function connectionsThatFit(
  max: number,
  perConnection: number,
  options: { limit?: number; reserve?: number; extra?: number } = {},
): Fit {
  const limit = "limit" in options ? options.limit : descriptorLimit();
  if (limit === undefined) return { max, lowered: false };
  const reserve = (options.reserve ?? reserveFor(limit)) + (options.extra ?? 0);
  const fits = Math.max(1, Math.floor((limit - reserve) / perConnection));
  return fits >= max ? { max, limit, lowered: false } : { max: fits, limit, lowered: true };
}

/** Local shortages: no descriptor, no local port to dial from, no buffer or kernel memory. */
const LOCAL_SHORTAGES = new Set(["EMFILE", "ENFILE", "EADDRNOTAVAIL", "ENOBUFS", "ENOMEM"]);

/**
 * Whether `err` (or an error it wraps) is this process, or the whole
 * system, out of something of its own: file descriptors (EMFILE, ENFILE),
 * local ports to dial from (EADDRNOTAVAIL: a client churning connections
 * through an L4 balancer fills TIME_WAIT, hostile39a P6), buffers or kernel
 * memory (ENOBUFS, ENOMEM). A local shortage, never the fault of the peer
 * being dialed or checked: it takes no backend out.
 */
export function isDescriptorShortage(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    if (LOCAL_SHORTAGES.has((e as { code?: unknown }).code as string)) return true;
    if (/\(os error (12|23|24|99|105)\)/.test(e.message)) return true;
  }
  return false;
}

/** Within this many descriptors of the account's capacity, accept loops wait a turn per accept. */
const NEAR_FULL = 32;

/** What a {@link DescriptorAccount} asks of a listener's table of connections (sources.ts). */
export interface DescriptorHolder {
  /**
   * Closes its oldest connection that has proven nothing yet (no hello),
   * of `key` (undefined: of the source holding the most such), told it was
   * closed for `why`.
   * @returns whether one was closed
   */
  closeNewcomer(key: string | undefined, why: string): boolean;
  /** Closes `key`'s newest connection past its hello, told `why`. @returns whether one was */
  closeNewest(key: string, why: DistError): boolean;
}

/** One source's descriptors in a {@link DescriptorAccount}. */
interface Holding {
  readonly key: string;
  /** Descriptors it holds, on every listener. */
  n: number;
  /** Of those, by listener. */
  readonly by: Map<DescriptorHolder, number>;
}

/** The figures of a {@link DescriptorAccount}, for `sys.stats`. */
export interface DescriptorStats {
  /** The process's limit (`ulimit -n`; 0: unknown, nothing counted against it). */
  limit: number;
  /** Descriptors connections may hold now: the limit less the reserve and the dials out. */
  for_connections: number;
  /** Held now by accepted connections, on every port. */
  in_use: number;
  /** Held now by this process's own connections out (dials). */
  dialed: number;
  /** What one source may hold while they are all in use. */
  share_when_full: number;
  /** Connections refused: every descriptor for connections in use. */
  refused: number;
  /** Connections closed to make room: their source held more than its share. */
  closed: number;
}

/**
 * The process's descriptors for accepted connections, counted on every
 * port at once. Each port's table bounds its own connections
 * (`--max-connections`), but their sum is what runs the process out of
 * descriptors: a broker's native and MQTT ports at 10,000 each, a
 * balancer's client and worker ports, where `ulimit -n` is 20,000; filled
 * in turn from one address, every accept then failed EMFILE, the legit
 * client and the process's own dials with them. Every port's table
 * ({@link SourceTable}) charges this account the descriptors of each
 * connection from its accept to its close (an L4 proxy's two); the
 * process's own dials ({@link dialed}) lower what is left for them, and a
 * reserve ({@link reserveFor}) is kept for the runtime, files, the data
 * dir, and dials in progress. When they are all in use, it acts as a full
 * port's table does, over every port: a source holding more than a quarter
 * may take no more, and a connection from another source closes one of the
 * source holding the most (its oldest without a hello, else its newest), so
 * one address filling a process's ports in turn keeps nobody else out.
 */
export class DescriptorAccount {
  /** The process's limit (undefined: unknown, nothing counted against it). */
  readonly limit: number | undefined;
  /** Descriptors for connections, dials included: the limit less the reserve. */
  readonly room: number;
  /** What one source may hold while every descriptor for connections is in use. */
  readonly share: number;
  /** Held by accepted connections, on every port. */
  used = 0;
  /** Held by the process's own connections out. */
  #dialed = 0;
  readonly #bySource = new Map<string, Holding>();
  /** The sources holding more than {@link share}. */
  readonly #over = new Set<Holding>();
  /** The tables holding any, and how many. */
  readonly #holders = new Map<DescriptorHolder, number>();
  #refused = 0;
  #closed = 0;
  /** Whether connections were closed to make room since the accept loops last let the runtime turn. */
  #closedSinceTurn = false;
  #turn: Promise<void> | undefined;

  /** @param options `limit` (default {@link descriptorLimit}), `reserve` (default {@link reserveFor} it) */
  constructor(options: { limit?: number; reserve?: number } = {}) {
    this.limit = "limit" in options ? options.limit : descriptorLimit();
    this.room = this.limit === undefined
      ? Infinity
      : Math.max(1, this.limit - (options.reserve ?? reserveFor(this.limit)));
    this.share = Math.max(1, Math.floor(this.room / 4));
  }

  /** Descriptors accepted connections may hold now: {@link room} less the dials out. */
  get capacity(): number {
    return Math.max(0, this.room - this.#dialed);
  }

  /** Descriptors `key` holds now. */
  held(key: string): number {
    return this.#bySource.get(key)?.n ?? 0;
  }

  /**
   * Makes room for a new connection of `key` holding `weight` descriptors
   * when those for connections are all in use (see the class comment),
   * closing connections of other sources (their release comes back here).
   * @returns the OVERLOADED error to refuse it with when none may be closed for it
   */
  makeRoom(key: string, weight: number): DistError | undefined {
    // A weight of 2 may need two closed; a bound on the rounds, in case a close does not release.
    for (let round = 0; this.used + weight > this.capacity; round++) {
      if (round >= 4) return this.#refuse(this.#fullError());
      const n = this.held(key);
      if (n + weight > this.share) {
        // At its share: only its own connections without a hello may make room for it.
        if (this.#closeNewcomer(key)) continue;
        return this.#refuse(this.#shareError(key, n));
      }
      let most: Holding | undefined;
      for (const s of this.#over) if (most === undefined || s.n > most.n) most = s;
      if (most !== undefined && this.#closeOneOf(most)) continue;
      if (this.#closeNewcomer(undefined)) continue;
      return this.#refuse(this.#fullError());
    }
    return undefined;
  }

  /**
   * A connection of `key` on `holder` moves to `to` (its hello proved a
   * user): refused when that source holds its share and every descriptor
   * for connections is in use.
   * @throws {DistError} OVERLOADED then
   */
  move(holder: DescriptorHolder, key: string, to: string, weight: number): void {
    const n = this.held(to);
    if (this.used >= this.capacity && n + weight > this.share) {
      throw this.#refuse(this.#shareError(to, n));
    }
    this.release(holder, key, weight);
    this.charge(holder, to, weight);
  }

  /** `holder` took a connection of `key` holding `weight` descriptors. */
  charge(holder: DescriptorHolder, key: string, weight: number): void {
    this.used += weight;
    let s = this.#bySource.get(key);
    if (s === undefined) {
      s = { key, n: 0, by: new Map() };
      this.#bySource.set(key, s);
    }
    s.n += weight;
    s.by.set(holder, (s.by.get(holder) ?? 0) + weight);
    this.#holders.set(holder, (this.#holders.get(holder) ?? 0) + weight);
    if (s.n > this.share) this.#over.add(s);
  }

  /** A connection {@link charge}d closed. */
  release(holder: DescriptorHolder, key: string, weight: number): void {
    const s = this.#bySource.get(key);
    if (s === undefined) return;
    this.used -= weight;
    s.n -= weight;
    const mine = (s.by.get(holder) ?? 0) - weight;
    if (mine > 0) s.by.set(holder, mine);
    else s.by.delete(holder);
    const all = (this.#holders.get(holder) ?? 0) - weight;
    if (all > 0) this.#holders.set(holder, all);
    else this.#holders.delete(holder);
    if (s.n <= this.share) this.#over.delete(s);
    if (s.n <= 0) this.#bySource.delete(key);
  }

  /**
   * The process opened a connection of its own (a dial): one descriptor
   * fewer for accepted ones until `release` is called (idempotent).
   */
  dialed(): () => void {
    this.#dialed++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#dialed--;
    };
  }

  /** A connection was closed to make room (by any port's table): see {@link freed}. */
  closing(): void {
    this.#closedSinceTurn = true;
  }

  /**
   * For an accept loop, before its next accept: once connections were
   * closed to make room, a promise of the event loop's next turn (one
   * timer), else undefined. A socket closed while its read is pending keeps
   * its descriptor until the runtime settles that read, which it does only
   * when the event loop turns; accepts from a full backlog complete without
   * a turn, so a burst that closed one connection per accept held about 80
   * closed descriptors at once under `ulimit -n 256` and hit EMFILE.
   */
  freed(): Promise<void> | undefined {
    // Near the limit every accept waits a turn too: accepts not yet charged (their setup still
    // pending) and closes not yet freed may not pile up past the reserve in one burst.
    if (!this.#closedSinceTurn && this.used + NEAR_FULL < this.capacity) return undefined;
    return this.#turn ??= new Promise((resolve) =>
      setTimeout(() => {
        this.#turn = undefined;
        this.#closedSinceTurn = false;
        resolve();
      }, 0)
    );
  }

  /** Its figures, for `sys.stats`. */
  stats(): DescriptorStats {
    const finite = (n: number) => Number.isFinite(n) ? n : 0;
    return {
      limit: this.limit ?? 0,
      for_connections: finite(this.capacity),
      in_use: this.used,
      dialed: this.#dialed,
      share_when_full: finite(this.share),
      refused: this.#refused,
      closed: this.#closed,
    };
  }

  /** Closes a connection of `s` (one without a hello first, else its newest) on the port where it holds the most. */
  #closeOneOf(s: Holding): boolean {
    const holders = [...s.by].sort((a, b) => b[1] - a[1]).map(([h]) => h);
    for (const h of holders) if (h.closeNewcomer(s.key, this.#inUse())) return true;
    const why = new DistError(
      "OVERLOADED",
      `Connection closed to make room: ${this.#inUse()}, ${name(s.key)} held ${s.n}, ` +
        `more than the ${this.share} one source may hold then`,
    );
    for (const h of holders) {
      if (h.closeNewest(s.key, why)) {
        this.#closed++;
        return true;
      }
    }
    return false;
  }

  /** Closes the oldest connection without a hello of `key` (undefined: any source's), on any port. */
  #closeNewcomer(key: string | undefined): boolean {
    const holders = key === undefined ? this.#holders.keys() : this.#bySource.get(key)?.by.keys();
    for (const h of holders ?? []) if (h.closeNewcomer(key, this.#inUse())) return true;
    return false;
  }

  /** Why a connection without a hello is closed to make room here. */
  #inUse(): string {
    return `the process's ${this.room} file descriptors for connections ` +
      `(ulimit -n ${this.limit}) are in use`;
  }

  #refuse(err: DistError): DistError {
    this.#refused++;
    return err;
  }

  #fullError(): DistError {
    return new DistError(
      "OVERLOADED",
      `File descriptors for connections in use: ${this.used} of ${this.capacity} ` +
        `(ulimit -n ${this.limit}), every source within its share`,
    );
  }

  #shareError(key: string, n: number): DistError {
    return new DistError(
      "OVERLOADED",
      `File descriptors for connections in use (${this.capacity}, ulimit -n ${this.limit}), ` +
        `and ${name(key)} holds ${n}: one source may hold at most ${this.share} then`,
    );
  }
}

/** The account of this process (one per isolate: see {@link shareDescriptors}). */
let account: DescriptorAccount | undefined;

/** The process's {@link DescriptorAccount}, made at first use. */
export function processAccount(): DescriptorAccount {
  return account ??= new DescriptorAccount();
}

/**
 * This isolate is one of `count` event loops of one process (the
 * balancer's `--threads`: each Web Worker has its own modules): its
 * account gets a `count`th of the room, so the sum stays within the limit.
 */
export function shareDescriptors(count: number): void {
  const limit = descriptorLimit();
  if (limit === undefined || count <= 1) return;
  const room = limit - reserveFor(limit);
  account = new DescriptorAccount({ limit, reserve: limit - Math.floor(room / count) });
}

/** A source as a message names it (a user's name may be long). */
function name(key: string): string {
  return truncate(key, 80);
}
