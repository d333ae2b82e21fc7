/**
 * Credentials in the handshake: what a dialer proves who it is with, and
 * the seam through which a listener decides who the dialer is. A dist
 * dialer never sends its secret: it answers a challenge (challenge.ts,
 * scram.ts) and the listener's {@link Authenticator} checks the proof. A
 * hello may still carry a token or a user and password in clear (a dialer
 * older than the challenge, a hand-written client; MQTT's CONNECT): those
 * are checked as before. The deciding (tokens, users file, delays) is
 * auth/'s; the wire only carries the fields and never logs them.
 */
import { describe, DistError } from "./errors.ts";
import type { SaltAndCost } from "./challenge.ts";
import type { ScramKeys } from "./scram.ts";

/**
 * A dialer's answer to the challenge, as the authenticator checks it: it
 * was made from a token (mech "token") or from `user`'s password.
 */
export interface Proof {
  /** What the proof was made from: a token, or a user's password. */
  readonly mech: "token" | "password";
  /** The user claimed (mech "password"). */
  readonly user: string | undefined;
  /** Which token it claims to be made from (mech "token"): see wire/scram.ts tokenId. */
  readonly tokenId: string | undefined;
  /** Whether the proof was made from the secret these keys were made from (constant time). */
  matches(keys: ScramKeys): boolean;
}

/** What a dialer proves who it is with: a token, or a user and password. Never logged. */
export interface Credentials {
  /** A shared token (`--token`, `DIST_TOKEN`) or a user's own. */
  token?: string;
  /** A user of the listener's users file. */
  user?: string;
  /** That user's password. */
  password?: string;
}

/** A hello as the listener's authenticator sees it. */
export interface HelloClaim {
  /** The role the dialer says it plays. */
  role: string;
  /** The name the dialer gives. */
  name: string;
  /** What it sent in clear (possibly nothing): an older dialer's hello, MQTT's CONNECT. */
  credentials: Credentials;
  /** Its answer to the challenge, when it asked for one (then `credentials` is empty). */
  proof?: Proof;
  /** The dialer's host (the key of per-address limits). */
  host: string;
  /** The dialer's `host:port`, for log lines. */
  address: string;
  /** The subject of the TLS client certificate the transport verified, if any. */
  certSubject?: string;
  /** Resolves when the connection closes (a waiting check may give up then). */
  closed: Promise<unknown>;
}

/** Who is at the other end of a connection, once its hello is accepted. */
export interface Identity {
  /** The user (a users file entry, a certificate subject, or the shared token's name). */
  readonly user: string;
  /** What it may do, checked where requests are dispatched; absent: anything. */
  readonly access?: Access;
}

/** A connection's rights, asked by the dispatch point before a handler runs. */
export interface Access {
  /**
   * Refuses a request this identity may not make.
   * @param method the method's wire name
   * @param resource what the method acts on, when its contract says (a topic, a service)
   * @throws {DistError} UNAUTHORIZED naming the permission missing
   */
  check(method: string, resource?: Resource): void;
}

/**
 * What a request acts on, as its contract extracts it from the params: a
 * topic, a service, or the role the caller acts as (`worker.register` makes
 * it a worker; `binder.sync` needs it to be a binder).
 */
export interface Resource {
  /** Which permission governs it. */
  readonly action: "publish" | "subscribe" | "register" | "resolve" | "role";
  /** The topic, service or role. */
  readonly name: string;
}

/** Decides whether a hello may in: a listener's half of authentication. */
export interface Authenticator {
  /**
   * Resolves with who the dialer is, or rejects (after any delay the
   * authenticator imposes) with the DistError to answer: UNAUTHORIZED, or
   * OVERLOADED when too many hellos wait.
   */
  authenticate(hello: HelloClaim): Promise<Identity>;
  /**
   * The salt and cost `user`'s password is derived with, for the challenge
   * (an unknown user gets a made-up salt that stays the same, so the
   * challenge does not tell which users exist); undefined when this
   * listener takes no passwords.
   */
  saltFor?(user: string): SaltAndCost | undefined;
  /** Its figures for `sys.stats` (hellos accepted, refused, …), if it keeps any. */
  stats?(): Record<string, number>;
}

/** Longest credential field accepted in a hello (a token, a password). */
export const MAX_SECRET_LENGTH = 4096;

/** The credential fields of a hello, checked (types and lengths) but not judged. */
export function helloCredentials(m: Record<string, unknown>): Credentials {
  const credentials: Credentials = {};
  for (const key of ["token", "user", "password"] as const) {
    const value = m[key];
    if (value === undefined) continue;
    // Never echo the value: it may be a secret sent in the wrong field.
    if (typeof value !== "string" || value === "" || value.length > MAX_SECRET_LENGTH) {
      throw new DistError(
        "BAD_REQUEST",
        `Hello field "${key}" must be a non-empty string of at most ${MAX_SECRET_LENGTH} characters, not ${
          typeof value === "string" ? `${value.length} characters` : describe(typeof value)
        }`,
      );
    }
    credentials[key] = value;
  }
  return credentials;
}

/** The hello fields that carry `credentials` (only those given). */
export function credentialFields(credentials: Credentials | undefined): Credentials {
  if (credentials === undefined) return {};
  const out: Credentials = {};
  if (credentials.token !== undefined) out.token = credentials.token;
  if (credentials.user !== undefined) out.user = credentials.user;
  if (credentials.password !== undefined) out.password = credentials.password;
  return out;
}
