/**
 * The listener's authenticator: who a hello proves the dialer to be, and
 * how guessing is made expensive.
 *
 * - A dist dialer answers a challenge (wire/challenge.ts): its proof is
 *   checked against the shared `--token`'s keys and each user's token keys
 *   (mech token), or against the named user's password keys (mech
 *   password), HMACs only: the listener never hashes a password for it.
 * - A secret sent in clear (MQTT's CONNECT, a dialer older than the
 *   challenge) is checked as before: a token by its SHA-256's keys, a
 *   password with scrypt, at most two at a time (HashSlots); an unknown
 *   user costs a hash too, so timing does not tell which users exist. A
 *   success is remembered for a while, so a reconnect storm does not pay
 *   scrypt again.
 * - With neither, the subject of a verified TLS client certificate names
 *   the user.
 *
 * Failures are counted per host (hostSource) and claimed name (a user of
 * the users file or not; a token and a certificate share the host's other
 * record): one warning line with the address (rate-limited with the wire's
 * other warnings about peers), then, after a delay that grows with that
 * record's recent failures (`base·2^(n-1)`, up to `maxDelayMs`: a user and
 * a name that is none are answered alike, h46d D5, and an attacker's
 * failures under other names do not slow a user's typo, h47b N5),
 * UNAUTHORIZED and the connection closed. A
 * record with recent failures may have at most `maxBusy` hellos being
 * checked or held at once, and a host at most `maxHostHeld` held before
 * their refusal whatever users they name (review45 R5); past either, and
 * for a delay after, a hello of a record with failures gets only the checks
 * a guess cannot pass (a token, a certificate subject, the password of a
 * user who succeeded lately), else is refused at once (OVERLOADED). A
 * record with no recent failure (a user the flood does not name) is always
 * checked. A guesser
 * gets at most `maxBusy` guesses at one user per delay whatever its
 * parallelism, and its flood holds a bounded number of connections.
 * Password hashing waits its turn by lane (HashSlots): a record with no failure has its own lane
 * (a made-up name only while its host has none), every record of a host with failures shares the
 * host's one lane, so a flood naming many users from one host is one lane once its first guesses
 * failed, and never delays the check of a user it does not name by more than one turn of each
 * lane. A record's failures are forgotten after `forgetMs` without one (at most `maxAddresses`).
 */
import { DistError } from "../wire/mod.ts";
import type { Authenticator, HelloClaim, Identity, Proof } from "../wire/mod.ts";
import { cut, warnPeer } from "../wire/_log.ts";
import {
  digest,
  hashPassword,
  HashSlots,
  parsePasswordHash,
  type PasswordHash,
  tokenKeys,
  verifyPassword,
} from "./passwords.ts";
import { hostSource, TOKEN_USER } from "./sources.ts";
import type { SaltAndCost } from "../wire/challenge.ts";
import { sameBytes, type ScramKeys, tokenId } from "../wire/scram.ts";
import { UnknownNames } from "./unknown_names.ts";
import { Grants } from "./permissions.ts";
import type { UserEntry, Users } from "./users.ts";
import { userAccess } from "./access.ts";
import {
  type AddressRecord,
  DEFAULT_DELAYS,
  type DelayOptions,
  FailureRecords,
} from "./records.ts";

export { DEFAULT_DELAYS, type DelayOptions };

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
  #token: ScramKeys | undefined;
  #users: Users | undefined;
  #slots: HashSlots;
  #now: () => number;
  #records: FailureRecords;
  /** The shared token's keys and each user's token keys, by token id (wire/scram.ts tokenId). */
  #tokenIds = new Map<string, ScramKeys[]>();
  /** The salts and costs of names that are no user (unknown_names.ts). */
  #unknown: UnknownNames;
  /** Password checks that succeeded: sha256(user, password, stored hash) → expiry. */
  #successes = new Map<string, number>();
  /** A hash checked for unknown users, so they cost what known ones do. */
  #dummy: Promise<PasswordHash | undefined>;
  /** Each user's permissions, compiled once (and its decisions cached) for all its connections. */
  #grants = new WeakMap<UserEntry, Grants>();
  /** Counters for sys.stats. */
  readonly counters = { accepted: 0, refused: 0, throttled: 0 };

  constructor(options: GateOptions) {
    this.#token = options.token === undefined ? undefined : tokenKeys(options.token);
    for (
      const keys of [
        this.#token,
        ...[...options.users?.entries.values() ?? []].map((e) => e.token?.keys),
      ]
    ) {
      if (keys === undefined) continue;
      const id = tokenId(keys);
      this.#tokenIds.set(id, [...this.#tokenIds.get(id) ?? [], keys]);
    }
    this.#users = options.users;
    this.#slots = options.slots ?? new HashSlots();
    this.#now = options.now ?? (() => performance.now());
    this.#records = new FailureRecords(options.delays, this.#now);
    this.#dummy = this.#users === undefined
      ? Promise.resolve(undefined)
      : hashPassword(crypto.randomUUID(), this.#users.cost).then((h) =>
        parsePasswordHash(h) as PasswordHash
      );
    this.#unknown = new UnknownNames(this.#users);
  }

  /** The salt and cost of `user`'s password for a challenge; made up (and stable) for any other name. */
  saltFor(user: string): SaltAndCost {
    const stored = this.#users?.entries.get(user)?.password;
    return stored === undefined ? this.#unknown.saltFor(user) : stored;
  }

  /** For `sys.stats`: hellos accepted, refused, refused unchecked (throttled), addresses tracked. */
  stats(): Record<string, number> {
    return { ...this.counters, addresses: this.#records.hosts() };
  }

  /** The delay before the next check of an address with `failures` failures (ms). */
  delayAfter(failures: number): number {
    return this.#records.delayAfter(failures);
  }

  async authenticate(hello: HelloClaim): Promise<Identity> {
    const { token, user, password } = hello.credentials;
    if (
      token === undefined && user === undefined && password === undefined &&
      hello.proof === undefined && !hello.certSubject
    ) {
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
    // The name claimed, read once. Failures count by host and claimed name, user or not (h47b
    // N5), by host alone where no name is claimed.
    const claimed = hello.proof?.user ?? hello.credentials.user;
    const host = hostSource(hello.host);
    const key = claimed !== undefined ? `${host}\u0000${claimed}` : host;
    const r = this.#records.get(key, hello.host);
    const aUser = this.#users?.entries.has(claimed ?? "") === true;
    // A made-up name is a record of its own, fresh at each new name: past the host's cap it is
    // refused unchecked as a flooded record is (a flood of new names is no way around the cap).
    if (this.#records.flooded(r, host) || (!aUser && this.#records.hostFlooded(host))) {
      // Flooded: the checks a guess cannot pass still let a right credential in (shared
      // hosts: every local process is 127.0.0.1), the rest go unchecked.
      const known = this.#quick(hello, r);
      if (known !== undefined) {
        this.counters.accepted++;
        return known;
      }
      this.counters.throttled++;
      warnPeer("Refused a hello from {address} unchecked: {busy} of its hellos failing already", {
        address: hello.address,
        busy: Math.max(r.busy, this.#records.held(host)),
      });
      throw new DistError(
        "OVERLOADED",
        `Too many failing hellos from ${hello.host}; retry later`,
      );
    }
    // A record with no failure hashes in a lane of its own; one with failures in its host's one
    // lane, whatever users it names (review45 R5). Asked again when a check's turn comes.
    const lane = () => r.failures === 0 && (aUser || !this.#records.hostFailing(host)) ? key : host;
    r.busy++;
    try {
      const identity = await this.#identify(hello, lane);
      this.counters.accepted++;
      return identity;
    } catch (err) {
      if (!(err instanceof Refused)) throw err;
      this.counters.refused++;
      this.#records.failed(r, host);
      warnPeer("Refused a hello from {address} ({role} {name}): {why}", {
        address: hello.address,
        role: cut(hello.role, 40),
        name: cut(hello.name, 60),
        why: err.why,
      });
      await this.#records.hold(host, this.#records.delayAfter(r.failures), hello.closed);
      throw new DistError("UNAUTHORIZED", err.answer);
    } finally {
      r.busy--;
      this.#records.release(key, r);
    }
  }

  /**
   * Who the hello proves the dialer to be, if a guess cannot pass the
   * check: a token, a certificate subject, or the password of a user who
   * succeeded lately. Undefined otherwise (wrong, or would need scrypt).
   */
  #quick(hello: HelloClaim, r: AddressRecord): Identity | undefined {
    const { token, user, password } = hello.credentials;
    const proof = hello.proof;
    // A password is guessable: checked at most as often as held hellos would be, a wrong one a
    // failure (the delay grows), and what succeeded lately renewed only by a right one (h46d D1).
    const guess = (ok: boolean) => {
      if (!ok) this.#records.failed(r, hostSource(hello.host));
      return ok;
    };
    try {
      if (proof !== undefined) {
        if (proof.mech === "token") return this.#byTokenProof(proof, hello.role);
        const entry = this.#users?.entries.get(proof.user!);
        const key = proofKey(proof.user!);
        if (entry?.password === undefined || !this.#lately(key) || !this.#records.mayGuess(r)) {
          return undefined;
        }
        if (!guess(proof.matches(entry.password.keys))) return undefined;
        this.#succeeded(key);
        return this.#as(entry, hello.role);
      }
      if (token !== undefined) return this.#byToken(token, hello.role);
      if (user !== undefined && password !== undefined) {
        const entry = this.#users?.entries.get(user);
        if (entry?.passwordText === undefined || !this.#records.mayGuess(r)) return undefined;
        return guess(this.#succeededLately(successKey(user, password, entry.passwordText)))
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
    if (!this.#lately(key)) return false;
    this.#successes.set(key, this.#now() + SUCCESS_TTL_MS);
    return true;
  }

  /** Whether a password check by this key succeeded lately (its memory left as it is). */
  #lately(key: string): boolean {
    return (this.#successes.get(key) ?? 0) > this.#now();
  }

  /** Remembers a password check that succeeded. */
  #succeeded(key: string): void {
    if (this.#successes.size >= MAX_SUCCESSES) this.#successes.clear();
    this.#successes.set(key, this.#now() + SUCCESS_TTL_MS);
  }

  async #identify(hello: HelloClaim, lane: () => string): Promise<Identity> {
    const { token, user, password } = hello.credentials;
    if (hello.proof !== undefined) {
      return hello.proof.mech === "token"
        ? this.#byTokenProof(hello.proof, hello.role)
        : this.#byPasswordProof(hello.proof, hello.role);
    }
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

  /** A token in clear: its keys compared with the shared token's and each user's. */
  #byToken(token: string, role: string): Identity {
    const { storedKey } = tokenKeys(token);
    return this.#byTokenKeys((keys) => sameBytes(storedKey, keys.storedKey), role);
  }

  /** A proof made from a token: checked against the keys of the token its id names. */
  #byTokenProof(proof: Proof, role: string): Identity {
    const named = this.#tokenIds.get(proof.tokenId ?? "");
    if (named === undefined) throw new Refused("Invalid credentials", "wrong token");
    return this.#byTokenKeys((keys) => named.includes(keys) && proof.matches(keys), role);
  }

  #byTokenKeys(matches: (keys: ScramKeys) => boolean, role: string): Identity {
    // Every entry is compared, whichever matches: the time says nothing of which one did.
    let found: UserEntry | undefined;
    const shared = this.#token !== undefined && matches(this.#token);
    for (const entry of this.#users?.entries.values() ?? []) {
      if (entry.token !== undefined && matches(entry.token.keys)) found = entry;
    }
    if (shared) return { user: TOKEN_USER };
    if (found !== undefined) return this.#as(found, role);
    throw new Refused("Invalid credentials", "wrong token");
  }

  /** A proof made from a password: checked against the user's keys (no hashing). */
  #byPasswordProof(proof: Proof, role: string): Identity {
    const user = proof.user!;
    if (this.#users === undefined) {
      throw new Refused("This listener takes a token, not a user and password", "no users file");
    }
    const entry = this.#users.entries.get(user);
    const keys = entry?.password?.keys;
    // An unknown user's proof is checked too (against made-up keys): the same time as a known one.
    const ok = proof.matches(keys ?? UNKNOWN_KEYS) && keys !== undefined;
    if (!ok) {
      throw new Refused(
        "Invalid credentials",
        `unknown user or wrong password for ${JSON.stringify(cut(user, 60))}`,
      );
    }
    this.#succeeded(proofKey(user));
    return this.#as(entry!, role);
  }

  async #byPassword(
    user: string,
    password: string,
    { role, lane }: { role: string; lane: () => string },
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
    const check = () =>
      key !== undefined && this.#succeededLately(key)
        ? Promise.resolve(true)
        : verifyPassword(password, hash!);
    let ok = false;
    if (hash !== undefined) {
      // The record failed while this check waited in its own lane: it waits again in its host's
      // (a flood's 16 first guesses at a user are one hash in that lane, not 16).
      const first = lane();
      const got = await this.#slots.run<boolean | "moved">(
        () => lane() === first ? check() : Promise.resolve("moved"),
        first,
      );
      ok = got === "moved" ? await this.#slots.run(check, lane()) : got;
    }
    if (!ok || stored === undefined) {
      throw new Refused(
        "Invalid credentials",
        `unknown user or wrong password for ${JSON.stringify(cut(user, 60))}`,
      );
    }
    this.#succeeded(key!);
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
}

/** The key a successful password check is remembered by (never the password itself). */
function successKey(user: string, password: string, stored: string): string {
  const d = digest(`${user}\u0000${password}\u0000${stored}`);
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The key a successful proof of `user`'s password is remembered by. */
function proofKey(user: string): string {
  return `proof\u0000${user}`;
}

/** Keys no secret makes (an unknown user's proof is checked against them). */
const UNKNOWN_KEYS: ScramKeys = {
  storedKey: crypto.getRandomValues(new Uint8Array(32)),
  serverKey: new Uint8Array(32),
};
