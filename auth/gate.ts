/**
 * The listener's authenticator: who a hello's credentials prove the dialer
 * to be, and how guessing is made expensive.
 *
 * - A token is compared (SHA-256 digests, constant time) with the shared
 *   `--token` (every right) and with each user's own token.
 * - A user and password are checked against the users file with scrypt, at
 *   most two at a time (HashSlots); an unknown user costs a hash too, so
 *   timing does not tell which users exist. A success is remembered for a
 *   while, so a reconnect storm does not pay scrypt again.
 * - With neither, the subject of a verified TLS client certificate names
 *   the user.
 *
 * Failures are counted per address and claimed user (a user of the users
 * file; every other name, a token and a certificate share the address's
 * other record): one warning line with the address (rate-limited with the
 * wire's other warnings about peers), then, after a delay that grows with
 * that record's recent failures (`base·2^(n-1)`, up to `maxDelayMs`),
 * UNAUTHORIZED and the connection closed. A record with recent failures
 * may have at most `maxBusy` hellos being checked or held at once; past
 * that, a hello gets only the checks that need no hashing (a token, a
 * certificate subject, a password that succeeded lately) and is otherwise
 * refused at once (OVERLOADED). So a guesser gets at most `maxBusy`
 * guesses at one user per delay whatever its parallelism, and its flood
 * holds a bounded number of connections. Password checks wait their turn
 * by record (HashSlots lanes), so a flood guessing other users, unknown
 * names or tokens from the same address (on one host, every local process
 * is 127.0.0.1) never delays the check of a user it does not name. A flood
 * guessing a user's own password from that user's address shares that
 * user's checks with her: she gets in at once with a token, a certificate
 * or a password that succeeded in the last 10 minutes (each success renews
 * it), and otherwise once one of the flood's few checks falls to her (no
 * gate can tell her first hello from a guess before hashing it). A
 * record's failures are forgotten after `forgetMs` without one (at most
 * `maxAddresses` records are kept).
 */
import { DistError } from "../wire/mod.ts";
import type { Authenticator, HelloClaim, Identity } from "../wire/mod.ts";
import { cut, warnPeer } from "../wire/_log.ts";
import {
  digest,
  hashPassword,
  HashSlots,
  parsePasswordHash,
  type PasswordHash,
  sameDigest,
  verifyPassword,
} from "./passwords.ts";
import { Grants } from "./permissions.ts";
import type { UserEntry, Users } from "./users.ts";
import { userAccess } from "./access.ts";

/** How failures are slowed (see the module comment). */
export interface DelayOptions {
  baseMs: number;
  maxDelayMs: number;
  forgetMs: number;
  maxBusy: number;
  maxAddresses: number;
}

export const DEFAULT_DELAYS: DelayOptions = Object.freeze({
  baseMs: 250,
  maxDelayMs: 10_000,
  forgetMs: 60_000,
  maxBusy: 16,
  maxAddresses: 10_000,
});

/** What a listener accepts. */
export interface GateOptions {
  /** The shared token (`--token`): whoever has it has every right. */
  token?: string;
  /** The users file (`--users`): then anything not granted is denied. */
  users?: Users;
  delays?: Partial<DelayOptions>;
  /** Hashing slots (a test gives its own). */
  slots?: HashSlots;
  /** The clock (ms), for tests. */
  now?: () => number;
}

/** The identity of the shared token's holders (every right). */
export const TOKEN_USER = "token";

/**
 * `user X` for a client that authenticated as a user of its own, undefined
 * for none or the shared token (which every client may hold).
 */
export function userSource(user: string | undefined): string | undefined {
  return user === undefined || user === TOKEN_USER ? undefined : `user ${user}`;
}

/**
 * Whose a client is, for the shares that keep one party from taking all
 * (the balancer's slots, the broker's turns and subscriptions): its own
 * user ({@link userSource}), else the address it connects from — an IPv6
 * address by its /64 ({@link addressSource}).
 */
export function clientSource(user: string | undefined, host: string): string {
  return userSource(user) ?? addressSource(host);
}

/**
 * The source an address counts as: an IPv4 address itself (also written
 * IPv4-mapped, `::ffff:192.0.2.1`), an IPv6 one its /64, written
 * `2001:db8:0:1::/64` (a zone, `%eth0`, left out): one host or site usually
 * holds a whole /64, so one source per address would give it 2^64 (hostile33).
 * `::1` stays itself.
 */
export function addressSource(host: string): string {
  if (!host.includes(":") || host === "::1" || host.endsWith("/64")) return host;
  const address = host.split("%")[0].toLowerCase();
  if (address.startsWith("::ffff:") && address.includes(".")) return address.slice(7);
  const [head, tail] = address.split("::");
  const first = head === "" ? [] : head.split(":");
  const last = tail === undefined || tail === "" ? [] : tail.split(":");
  const groups = [
    ...first,
    ...Array(Math.max(0, 8 - first.length - last.length)).fill("0"),
    ...last,
  ];
  const net = groups.slice(0, 4).map((g) => (parseInt(g, 16) || 0).toString(16));
  return `${net.join(":")}::/64`;
}

/**
 * The host a hello's failures and hash checks count against: its
 * {@link addressSource}, with every loopback address one host (127.0.0.0/8
 * and ::1 are this machine: any local process may dial from any of them,
 * and 80 of them × 16 hellos naming a made-up user were 80 lanes of hash
 * checks that kept a password user out, hostile45c K-C3).
 */
export function hostSource(host: string): string {
  const h = host.startsWith("::ffff:") && host.includes(".") ? host.slice(7) : host;
  if (h.startsWith("127.") || h === "::1") return "loopback";
  return addressSource(h);
}

/**
 * Whose a registration is (the binder's `--max-per-source`, `registrant`): its user, else its
 * {@link hostSource} (127.0.0.2 … 127.0.0.101 were 100 sources, hostile46c F1).
 */
export function machineSource(user: string | undefined, host: string): string {
  return userSource(user) ?? hostSource(host);
}

/** An address and claimed user with hellos in progress or recent failures. */
interface AddressRecord {
  host: string;
  failures: number;
  last: number;
  /** Its hellos being checked or held before their refusal. */
  busy: number;
}

/** Why a hello was refused: said to the log (never to the dialer) and the answer sent. */
class Refused extends Error {
  constructor(readonly answer: string, readonly why: string) {
    super(why);
  }
}

const SUCCESS_TTL_MS = 10 * 60_000;
const MAX_SUCCESSES = 1024;

/** See the module comment. */
export class Gate implements Authenticator {
  #token: Uint8Array | undefined;
  #users: Users | undefined;
  #delays: DelayOptions;
  #slots: HashSlots;
  #now: () => number;
  #records = new Map<string, AddressRecord>();
  /** Password checks that succeeded: sha256(user, password, stored hash) → expiry. */
  #successes = new Map<string, number>();
  /** A hash checked for unknown users, so they cost what known ones do. */
  #dummy: Promise<PasswordHash | undefined>;
  /** Each user's permissions, compiled once (and its decisions cached) for all its connections. */
  #grants = new WeakMap<UserEntry, Grants>();
  /** Counters for sys.stats. */
  readonly counters = { accepted: 0, refused: 0, throttled: 0 };

  constructor(options: GateOptions) {
    this.#token = options.token === undefined ? undefined : digest(options.token);
    this.#users = options.users;
    this.#delays = { ...DEFAULT_DELAYS, ...options.delays };
    this.#slots = options.slots ?? new HashSlots();
    this.#now = options.now ?? (() => performance.now());
    this.#dummy = this.#users === undefined
      ? Promise.resolve(undefined)
      : hashPassword(crypto.randomUUID(), this.#users.cost).then((h) =>
        parsePasswordHash(h) as PasswordHash
      );
  }

  /** For `sys.stats`: hellos accepted, refused, refused unchecked (throttled), addresses tracked. */
  stats(): Record<string, number> {
    const hosts = new Set<string>();
    for (const r of this.#records.values()) hosts.add(r.host);
    return { ...this.counters, addresses: hosts.size };
  }

  /** The delay before the next check of an address with `failures` failures (ms). */
  delayAfter(failures: number): number {
    if (failures <= 0) return 0;
    return Math.min(this.#delays.baseMs * 2 ** (failures - 1), this.#delays.maxDelayMs);
  }

  async authenticate(hello: HelloClaim): Promise<Identity> {
    const { token, user, password } = hello.credentials;
    if (token === undefined && user === undefined && password === undefined && !hello.certSubject) {
      // Nothing guessed, nothing to slow down: refused at once, counted in no record. A binder's
      // report_down check dials so, and a delay past --verify-timeout read as dead (review45 R1).
      this.counters.refused++;
      warnPeer("Refused a hello from {address} ({role} {name}): {why}", {
        address: hello.address,
        role: cut(hello.role, 40),
        name: cut(hello.name, 60),
        why: "no credentials",
      });
      throw new DistError("UNAUTHORIZED", "Credentials required: a token, or a user and password");
    }
    const key = this.#recordKey(hello);
    const r = this.#record(key, hello.host);
    if (r.failures > 0 && r.busy >= this.#delays.maxBusy) {
      // Flooded: the cheap checks still let a right credential in (shared
      // hosts: every local process is 127.0.0.1), the rest go unchecked.
      const known = this.#quick(hello);
      if (known !== undefined) {
        this.counters.accepted++;
        return known;
      }
      this.counters.throttled++;
      warnPeer("Refused a hello from {address} unchecked: {busy} of its hellos failing already", {
        address: hello.address,
        busy: r.busy,
      });
      throw new DistError(
        "OVERLOADED",
        `Too many failing hellos from ${hello.host}; retry later`,
      );
    }
    r.busy++;
    try {
      const identity = await this.#identify(hello, key);
      this.counters.accepted++;
      return identity;
    } catch (err) {
      if (!(err instanceof Refused)) throw err;
      this.counters.refused++;
      r.failures++;
      r.last = this.#now();
      warnPeer("Refused a hello from {address} ({role} {name}): {why}", {
        address: hello.address,
        role: cut(hello.role, 40),
        name: cut(hello.name, 60),
        why: err.why,
      });
      await untilOrClosed(this.delayAfter(r.failures), hello.closed);
      throw new DistError("UNAUTHORIZED", err.answer);
    } finally {
      r.busy--;
      if (r.busy === 0 && r.failures === 0) this.#records.delete(key);
    }
  }

  /**
   * Which record a hello's failures count in: its address and claimed user
   * when that user is in the users file, else the address's other record
   * (so a flood of made-up names holds one record, not one per name).
   */
  #recordKey(hello: HelloClaim): string {
    const user = hello.credentials.user;
    const known = user !== undefined && this.#users?.entries.has(user) === true;
    const from = hostSource(hello.host);
    return known ? `${from}\u0000${user}` : from;
  }

  /**
   * Who the hello proves the dialer to be, if that takes no hashing: a
   * token, a certificate subject, or a password that succeeded lately.
   * Undefined otherwise (wrong, or would need scrypt).
   */
  #quick(hello: HelloClaim): Identity | undefined {
    const { token, user, password } = hello.credentials;
    try {
      if (token !== undefined) return this.#byToken(token, hello.role);
      if (user !== undefined && password !== undefined) {
        const entry = this.#users?.entries.get(user);
        if (entry?.passwordText === undefined) return undefined;
        return this.#succeededLately(successKey(user, password, entry.passwordText))
          ? this.#as(entry, hello.role)
          : undefined;
      }
      if (hello.certSubject !== undefined) {
        return this.#byCertificate(hello.certSubject, hello.role);
      }
    } catch (err) {
      if (!(err instanceof Refused)) throw err;
    }
    return undefined;
  }

  /** Whether a password check by this key succeeded lately; if so its memory is renewed. */
  #succeededLately(key: string): boolean {
    const now = this.#now();
    if ((this.#successes.get(key) ?? 0) <= now) return false;
    this.#successes.set(key, now + SUCCESS_TTL_MS);
    return true;
  }

  async #identify(hello: HelloClaim, lane: string): Promise<Identity> {
    const { token, user, password } = hello.credentials;
    if (token !== undefined) return this.#byToken(token, hello.role);
    if (user !== undefined || password !== undefined) {
      if (user === undefined || password === undefined) {
        throw new Refused("A user needs a password", "a user without a password or the reverse");
      }
      return await this.#byPassword(user, password, { role: hello.role, lane });
    }
    if (hello.certSubject !== undefined) return this.#byCertificate(hello.certSubject, hello.role);
    throw new Refused(
      "Credentials required: a token, or a user and password",
      "no credentials",
    );
  }

  #byToken(token: string, role: string): Identity {
    const d = digest(token);
    // Every digest is compared, whichever matches: the time says nothing of which one did.
    let found: UserEntry | undefined;
    const shared = this.#token !== undefined && sameDigest(d, this.#token);
    for (const entry of this.#users?.entries.values() ?? []) {
      if (entry.token !== undefined && sameDigest(d, entry.token)) found = entry;
    }
    if (shared) return { user: TOKEN_USER };
    if (found !== undefined) return this.#as(found, role);
    throw new Refused("Invalid credentials", "wrong token");
  }

  async #byPassword(
    user: string,
    password: string,
    { role, lane }: { role: string; lane: string },
  ): Promise<Identity> {
    const entry = this.#users?.entries.get(user);
    if (this.#users === undefined) {
      throw new Refused("This listener takes a token, not a user and password", "no users file");
    }
    const stored = entry?.password;
    const key = stored === undefined ? undefined : successKey(user, password, entry!.passwordText!);
    if (key !== undefined && this.#succeededLately(key)) return this.#as(entry!, role);
    const hash = stored ?? await this.#dummy;
    // Asked again once in a slot: a burst of one client's reconnects pays one hash, not one each.
    const ok = hash !== undefined && await this.#slots.run(
      () =>
        key !== undefined && this.#succeededLately(key)
          ? Promise.resolve(true)
          : verifyPassword(password, hash),
      lane,
    );
    if (!ok || stored === undefined) {
      throw new Refused(
        "Invalid credentials",
        `unknown user or wrong password for ${JSON.stringify(cut(user, 60))}`,
      );
    }
    if (this.#successes.size >= MAX_SUCCESSES) this.#successes.clear();
    this.#successes.set(key!, this.#now() + SUCCESS_TTL_MS);
    return this.#as(entry!, role);
  }

  #byCertificate(subject: string, role: string): Identity {
    if (this.#users === undefined) {
      // With a token set, a certificate is not one: the CA signs every listener's certificate too,
      // and a CA-signed one alone had every right, binder.sync included (hostile45c K-C10).
      if (this.#token !== undefined) {
        throw new Refused("This listener takes a token", "a certificate without the token");
      }
      return { user: subject };
    }
    const entry = this.#users.entries.get(subject);
    if (entry === undefined) {
      throw new Refused(
        "Certificate subject not in the users file",
        `certificate subject ${JSON.stringify(cut(subject, 60))} is not in the users file`,
      );
    }
    return this.#as(entry, role);
  }

  /** The identity of a users file entry, if it may claim `role`. */
  #as(entry: UserEntry, role: string): Identity {
    let grants = this.#grants.get(entry);
    if (grants === undefined) {
      this.#grants.set(entry, grants = new Grants(entry.name, entry.permissions));
    }
    if (!grants.mayActAs(role)) {
      throw new Refused(
        `User ${JSON.stringify(entry.name)} may not act as ${role} (permission roles: ${role})`,
        `user ${JSON.stringify(entry.name)} may not act as ${role}`,
      );
    }
    return { user: entry.name, access: userAccess(grants) };
  }

  /** The record of an address and user (made if missing), its failures forgotten once stale. */
  #record(key: string, host: string): AddressRecord {
    let r = this.#records.get(key);
    if (r !== undefined && r.failures > 0 && this.#now() - r.last > this.#delays.forgetMs) {
      r.failures = 0;
    }
    if (r === undefined) {
      r = { host, failures: 0, last: 0, busy: 0 };
      this.#records.set(key, r);
      if (this.#records.size > this.#delays.maxAddresses) this.#evict();
    }
    return r;
  }

  /** Forgets the address idle longest (its record is dropped; it keeps what it holds). */
  #evict(): void {
    let oldest: string | undefined;
    let at = Infinity;
    for (const [key, r] of this.#records) {
      if (r.busy === 0 && r.last < at) [oldest, at] = [key, r.last];
    }
    if (oldest !== undefined) this.#records.delete(oldest);
  }
}

/** The key a successful password check is remembered by (never the password itself). */
function successKey(user: string, password: string, stored: string): string {
  const d = digest(`${user}\u0000${password}\u0000${stored}`);
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Waits `ms`, or less when `closed` resolves first (the dialer has gone: nobody to answer). */
function untilOrClosed(ms: number, closed: Promise<unknown>): Promise<void> {
  if (ms <= 0) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    closed.then(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
