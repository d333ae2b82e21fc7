/**
 * A listener's connections by source (hostile34 Z1): who holds how many of
 * `--max-connections`, so that one source cannot keep everyone else out.
 *
 * A source is whose a connection is ({@link SourceLimits.source}: the roles
 * give auth's clientSource, its own user once its hello proves one, else
 * its address, IPv6 by /64). Before, only connections without a hello made
 * room (newcomers.ts); one address holding every slot with hello'd
 * connections that pinged once a second got every other client refused
 * `Connection limit of 1000 reached` for as long as it liked. Now:
 *
 * - with a bound of its own ({@link SourceLimits.perSource}, HAProxy's
 *   `src_conn_cur` rule, NATS's per-user `max_connections`), a source
 *   holding that many is refused more, always;
 * - while the listener is full, one source may hold at most
 *   {@link SourceTable.fullShare} (a quarter of the limit, or the bound
 *   above if lower): a source holding that many may take no more (except by
 *   closing its own connections without a hello yet, as before), and a
 *   newcomer from another source closes a connection of the source holding
 *   the most, when that one holds more than its share (its oldest without a
 *   hello, else its newest), instead of being refused. Only a listener full
 *   of sources within their share refuses a newcomer of a source within its.
 *
 * The share applies only when the listener is full: every client of a test
 * or of `dist up` on one machine comes from 127.0.0.1 (as many behind a NAT
 * come from one address), and alone they may still use the whole limit.
 *
 * Every table also charges its connections' descriptors to the process's
 * account (descriptors.ts {@link DescriptorAccount}), which applies the same
 * rules over every port of the process at once when the descriptors left
 * for connections are all in use: each port under its own limit, together
 * they could run the process out of descriptors (hostile35, the sum of a
 * broker's native and MQTT ports).
 */
import { type DistError, truncate } from "./errors.ts";
import { sharedError } from "./shared_error.ts";
import { type Closer, type Newcomer, Newcomers } from "./newcomers.ts";
import type { Authenticator, HelloClaim } from "./credentials.ts";
import type { PaceStats } from "./accept_pace.ts";
import {
  type DescriptorAccount,
  type DescriptorHolder,
  type DescriptorStats,
  processAccount,
} from "./descriptors.ts";

/** The limits of a {@link SourceTable}. */
export interface SourceLimits {
  /** Most connections of the listener. */
  max: number;
  /** Most connections of one source, always (0 or absent: none but the share while full). */
  perSource?: number;
  /** Whose a connection is, from its user (once its hello proves one) and its host (default: the host). */
  source?: (user: string | undefined, host: string) => string;
  /** Descriptors each connection holds (default 1; an L4 proxy's 2: client and backend). */
  descriptors?: number;
  /** The process-wide account its connections are charged to (default: {@link processAccount}). */
  account?: DescriptorAccount;
}

/** A source's figures for `sys.stats`. */
export interface SourceStats {
  /** Connections open now (hello'd or not, TLS handshakes included). */
  connections: number;
  /** The listener's limit. */
  max_connections: number;
  /** The bound of one source (0: none). */
  max_per_source: number;
  /** What one source may hold while the listener is full. */
  share_when_full: number;
  /** Connections refused: the listener full of sources within their share. */
  refused_full: number;
  /** Connections refused because their source held its bound or share. */
  refused_source: number;
  /** Connections without a hello closed to make room. */
  closed_no_hello: number;
  /** Connections past their hello closed to make room: their source held more than its share. */
  closed_source: number;
  /** The process's descriptors for connections, every port's (descriptors.ts). */
  descriptors: DescriptorStats;
  /** New connections of sources taken at a pace (accept_pace.ts), when the port paces any. */
  paced?: PaceStats;
}

/** One source's connections. */
interface Source {
  readonly key: string;
  count: number;
  /** Its connections past their hello, oldest first: a list, so the newest is at hand. */
  first: SourceEntry | undefined;
  last: SourceEntry | undefined;
}

/** The shortest a source's name gets in a message (a user's name may be long). */
const NAME_CHARS = 80;

/** One connection of a {@link SourceTable}, from its accept to its close. */
export class SourceEntry {
  readonly #table: SourceTable;
  readonly host: string;
  /** Its source now (its address's, then its user's once the hello proves one). */
  source: Source;
  /** While it has no hello: its place among the newcomers. */
  newcomer: Newcomer | undefined;
  /**
   * Hangs the connection up with the error that says why, and whether it is
   * past its hello (settable: the connection changes hands).
   */
  close: Closer;
  prev: SourceEntry | undefined;
  next: SourceEntry | undefined;
  #linked = false;
  #left = false;

  constructor(
    table: SourceTable,
    host: string,
    source: Source,
    close: Closer,
  ) {
    this.#table = table;
    this.host = host;
    this.source = source;
    this.close = close;
  }

  /** Hangs it up with `why` ({@link close}). */
  closeForRoom(why: DistError, hello: boolean): void {
    const close = this.close;
    if (typeof close === "function") close(why, hello);
    else close.closeForRoom(why, hello);
  }

  /** It is closed to make room while it has no hello yet (see {@link Newcomers.makeRoom}). */
  hangUp(): void {
    this.#table.hangUpNewcomer(this);
  }

  /** Its TLS handshake ended (see {@link Newcomer.handshook}). */
  handshook(): void {
    this.newcomer?.handshook();
  }

  /**
   * Its hello was accepted, as `user` if it proved one: it moves to that
   * user's source, unless the source holds its bound already, or its share
   * while the listener is full.
   * @throws {DistError} OVERLOADED naming the bound (the hello is refused with it)
   */
  hello(user: string | undefined): void {
    // Closed to make room while its credentials were checked: it counts nowhere any more.
    if (!this.#left) this.#table.move(this, user);
  }

  /** `inner`, after which the connection moves to its user's source ({@link hello}). */
  checking(inner: Authenticator): Authenticator {
    const authenticate = async (claim: HelloClaim) => {
      const identity = await inner.authenticate(claim);
      this.hello(identity.user);
      return identity;
    };
    return { authenticate, saltFor: inner.saltFor?.bind(inner) };
  }

  /** It is past its hello: no longer a newcomer, and closed to make room only as its source's. */
  settled(): void {
    this.newcomer?.settled();
    this.newcomer = undefined;
    if (this.#left || this.#linked) return;
    this.#linked = true;
    this.#table.link(this);
  }

  /** Whether it is in its source's list of connections past their hello. */
  get linked(): boolean {
    return this.#linked;
  }

  /** It closed (or is being closed): it no longer counts. Idempotent. */
  leave(): void {
    if (this.#left) return;
    this.#left = true;
    this.newcomer?.handshook();
    this.newcomer?.settled();
    this.newcomer = undefined;
    this.#table.remove(this);
    this.#linked = false;
  }
}

/** A listener's connections by source; see the module comment. */
export class SourceTable implements DescriptorHolder {
  /** The connections without a hello (closed first to make room, as before). */
  readonly newcomers = new Newcomers();
  readonly max: number;
  readonly perSource: number;
  /** What one source may hold while the listener is full. */
  readonly fullShare: number;
  readonly #sourceOf: (user: string | undefined, host: string) => string;
  readonly #bySource = new Map<string, Source>();
  /** Sources holding more than {@link fullShare}: at most limit ÷ share of them. */
  readonly #over = new Set<Source>();
  /** Connections open now. */
  total = 0;
  #refusedFull = 0;
  #refusedSource = 0;
  #closedSource = 0;
  readonly #account: DescriptorAccount;
  /** While the account closes a newcomer: why, for its message. */
  #newcomerWhy: string | undefined;
  /** Descriptors a connection holds. */
  readonly #weight: number;

  constructor(limits: SourceLimits) {
    this.max = limits.max;
    this.#account = limits.account ?? processAccount();
    this.#weight = Math.max(1, limits.descriptors ?? 1);
    this.perSource = Math.max(0, limits.perSource ?? 0);
    const quarter = Math.max(1, Math.floor(limits.max / 4));
    this.fullShare = this.perSource > 0 ? Math.min(this.perSource, quarter) : quarter;
    this.#sourceOf = limits.source ?? ((_user, host) => host);
  }

  /** Whether the listener has no free slot. */
  get full(): boolean {
    return this.total >= this.max;
  }

  /** Connections `key` holds now. */
  held(key: string): number {
    return this.#bySource.get(key)?.count ?? 0;
  }

  /**
   * Takes a connection just accepted from `host`, making room when the
   * listener is full (see the module comment).
   * @param close hangs it up, with why, when it is closed to make room
   * @param options `handshaking`: its TLS handshake starts (see {@link Newcomers.arrive})
   * @returns its entry, or the OVERLOADED error to refuse it with
   */
  admit(
    host: string,
    close: Closer,
    options: { handshaking?: boolean } = {},
  ): SourceEntry | DistError {
    const key = this.#sourceOf(undefined, host);
    // This port's bounds, then the process's descriptors over every port (descriptors.ts).
    const refusal = this.#refusal(key) ?? this.#makeRoom(key) ??
      this.#account.makeRoom(key, this.#weight);
    if (refusal !== undefined) return refusal;
    const entry = new SourceEntry(this, host, this.#source(key), close);
    this.total++;
    this.#count(entry.source, +1);
    this.#account.charge(this, key, this.#weight);
    // The entry hangs itself up as a newcomer (hangUp): a closure made here cost ~100 B a connection.
    entry.newcomer = this.newcomers.arrive(
      entry,
      key,
      options,
    );
    return entry;
  }

  /** Closes `entry`, a connection without a hello yet, to make room (newcomers.ts). */
  hangUpNewcomer(entry: SourceEntry): void {
    this.#account.closing();
    entry.leave();
    const why = this.#newcomerWhy ?? `${this.max} connections`;
    entry.closeForRoom(
      sharedError("OVERLOADED", `Connection closed to make room: no hello yet, ${why}`),
      false,
    );
  }

  /** The error a new connection of `key` is refused with at its bound, if it holds it. */
  #refusal(key: string): DistError | undefined {
    const n = this.held(key);
    if (this.perSource === 0 || n < this.perSource) return undefined;
    this.#refusedSource++;
    return sharedError(
      "OVERLOADED",
      `Connection limit of ${this.perSource} per source reached: ${name(key)} holds ${n}`,
    );
  }

  /**
   * When full, closes a connection to make room for one of `key`.
   * @returns the error to refuse it with when none may be closed for it
   */
  #makeRoom(key: string): DistError | undefined {
    if (!this.full) return undefined;
    const n = this.held(key);
    if (n >= this.fullShare) {
      // At its share: only its own connections without a hello may make room for it.
      if (this.newcomers.makeRoom(key)) return undefined;
      this.#refusedSource++;
      return this.#shareError(key, n);
    }
    let most: Source | undefined;
    for (const s of this.#over) if (most === undefined || s.count > most.count) most = s;
    if (most !== undefined) {
      if (this.newcomers.makeRoom(most.key)) return undefined;
      const newest = most.last;
      if (newest !== undefined) {
        this.#closedSource++;
        this.#account.closing();
        const held = most.count;
        newest.leave();
        newest.closeForRoom(
          sharedError(
            "OVERLOADED",
            `Connection closed to make room: ${this.max} connections (the limit), ${
              name(most.key)
            } ` +
              `held ${held}, more than the ${this.fullShare} one source may hold while full`,
          ),
          true,
        );
        return undefined;
      }
    }
    if (this.newcomers.makeRoom()) return undefined;
    this.#refusedFull++;
    return sharedError("OVERLOADED", `Connection limit of ${this.max} reached`);
  }

  #shareError(key: string, n: number): DistError {
    return sharedError(
      "OVERLOADED",
      `Connection limit of ${this.max} reached, and ${name(key)} holds ${n}: ` +
        `one source may hold at most ${this.fullShare} while the limit is reached`,
    );
  }

  /** `entry`'s hello proved `user`: it moves to its source (see {@link SourceEntry.hello}). */
  move(entry: SourceEntry, user: string | undefined): void {
    const key = this.#sourceOf(user, entry.host);
    if (key === entry.source.key) return;
    const refused = this.#refusal(key);
    if (refused !== undefined) throw refused;
    const n = this.held(key);
    if (this.full && n >= this.fullShare) {
      this.#refusedSource++;
      throw this.#shareError(key, n);
    }
    this.#account.move(this, entry.source.key, key, this.#weight);
    const linked = entry.linked;
    if (linked) this.#unlink(entry);
    this.#count(entry.source, -1);
    entry.source = this.#source(key);
    this.#count(entry.source, +1);
    if (linked) this.link(entry);
  }

  /** Puts `entry` last in its source's list of connections past their hello. */
  link(entry: SourceEntry): void {
    const s = entry.source;
    entry.prev = s.last;
    entry.next = undefined;
    if (s.last === undefined) s.first = entry;
    else s.last.next = entry;
    s.last = entry;
  }

  #unlink(entry: SourceEntry): void {
    const s = entry.source;
    if (entry.prev === undefined) s.first = entry.next;
    else entry.prev.next = entry.next;
    if (entry.next === undefined) s.last = entry.prev;
    else entry.next.prev = entry.prev;
    entry.prev = entry.next = undefined;
  }

  /** `entry` left (see {@link SourceEntry.leave}). */
  remove(entry: SourceEntry): void {
    if (entry.linked) this.#unlink(entry);
    this.total--;
    this.#count(entry.source, -1);
    this.#account.release(this, entry.source.key, this.#weight);
  }

  /**
   * For the accept loop, before its next accept: the next turn of the event
   * loop once connections were closed to make room, so their descriptors
   * are freed first (descriptors.ts {@link DescriptorAccount.freed}); else undefined.
   */
  freed(): Promise<void> | undefined {
    return this.#account.freed();
  }

  /**
   * For the process's account: closes the oldest connection without a hello
   * of `key` (any: undefined), told it was for `why`.
   */
  closeNewcomer(key: string | undefined, why: string): boolean {
    this.#newcomerWhy = why;
    try {
      return this.newcomers.makeRoom(key);
    } finally {
      this.#newcomerWhy = undefined;
    }
  }

  /** For the process's account: closes `key`'s newest connection past its hello, told `why`. */
  closeNewest(key: string, why: DistError): boolean {
    const newest = this.#bySource.get(key)?.last;
    if (newest === undefined) return false;
    this.#account.closing();
    newest.leave();
    newest.closeForRoom(why, true);
    return true;
  }

  #source(key: string): Source {
    let s = this.#bySource.get(key);
    if (s === undefined) {
      s = { key, count: 0, first: undefined, last: undefined };
      this.#bySource.set(key, s);
    }
    return s;
  }

  #count(s: Source, by: number): void {
    s.count += by;
    if (s.count > this.fullShare) this.#over.add(s);
    else this.#over.delete(s);
    if (s.count === 0) this.#bySource.delete(s.key);
  }

  /** Its figures, for `sys.stats`. */
  stats(): SourceStats {
    return {
      connections: this.total,
      max_connections: this.max,
      max_per_source: this.perSource,
      share_when_full: this.fullShare,
      refused_full: this.#refusedFull,
      refused_source: this.#refusedSource,
      closed_no_hello: this.newcomers.evicted,
      closed_source: this.#closedSource,
      descriptors: this.#account.stats(),
    };
  }
}

/** A source as a message names it. */
function name(key: string): string {
  return truncate(key, NAME_CHARS);
}
