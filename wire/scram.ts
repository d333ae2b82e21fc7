/**
 * The challenge-response hello's cryptography (SCRAM, RFC 5802/7677, with
 * scrypt in place of PBKDF2): a dialer proves it holds a token or a
 * password without sending it, over both sides' nonces, so what crosses
 * the wire is no secret and cannot be replayed to another connection.
 *
 * - SaltedKey: scrypt(password, salt, cost) for a password, SHA-256(token)
 *   for a token (random and long: a slow hash adds nothing).
 * - ClientKey = HMAC(SaltedKey, "Client Key"), StoredKey = SHA-256(ClientKey),
 *   ServerKey = HMAC(SaltedKey, "Server Key"): a listener keeps StoredKey and
 *   ServerKey only, which check a proof but cannot make one.
 * - proof = ClientKey XOR HMAC(StoredKey, AuthMessage): the listener
 *   recovers ClientKey and checks its SHA-256 is StoredKey.
 * - verifier = HMAC(ServerKey, AuthMessage), in the welcome: the dialer
 *   checks that the listener holds the user's keys.
 *
 * AuthMessage names the mechanism, the user, both roles and names, both
 * nonces, and the salt and cost the listener gave (see {@link authMessage}).
 */
import { createHash, scrypt, timingSafeEqual } from "node:crypto";
import { concatBytes } from "./byte_words.ts";

/** scrypt's cost parameters: N = 2^ln (memory 128·N·r bytes), r, p. */
export interface ScryptCost {
  /** log2 of N, scrypt's CPU and memory cost. */
  ln: number;
  /** The block size. */
  r: number;
  /** The parallelism. */
  p: number;
}

/** Bounds of a cost read from a users file or a challenge: neither free nor minutes or GiBs. */
export const COST_BOUNDS = Object.freeze({ minLn: 10, maxLn: 20, maxR: 32, maxP: 16 });

/** What is wrong with `cost`, or undefined when it is within {@link COST_BOUNDS}. */
export function costProblem(cost: ScryptCost): string | undefined {
  const { minLn, maxLn, maxR, maxP } = COST_BOUNDS;
  if (!Number.isInteger(cost.ln) || cost.ln < minLn || cost.ln > maxLn) {
    return `ln must be ${minLn} to ${maxLn}`;
  }
  if (
    !Number.isInteger(cost.r) || !Number.isInteger(cost.p) || cost.r < 1 || cost.r > maxR ||
    cost.p < 1 || cost.p > maxP
  ) {
    return `r must be 1 to ${maxR} and p 1 to ${maxP}`;
  }
  return undefined;
}

/** The keys a listener keeps for one secret (never the secret, nor what makes a proof). */
export interface ScramKeys {
  /** SHA-256 of the client key: checks a proof, cannot make one. */
  storedKey: Uint8Array;
  /** What the listener proves itself with in its welcome. */
  serverKey: Uint8Array;
}

/** Bytes of every key (SHA-256). */
export const KEY_BYTES = 32;

export const b64 = (b: Uint8Array): string => btoa(String.fromCharCode(...b)).replace(/=+$/, "");
export const unb64 = (s: string): Uint8Array => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));

const sha256 = (data: Uint8Array | string) =>
  new Uint8Array(createHash("sha256").update(data).digest());

/**
 * HMAC-SHA-256 (RFC 2104) from two hashes: node:crypto's createHmac costs
 * ~70 µs a call in Deno, two createHash ~14 µs, and a hello makes six.
 */
function hmac(key: Uint8Array, data: Uint8Array | string): Uint8Array {
  const k = key.length > 64 ? sha256(key) : key;
  const inner = new Uint8Array(64).fill(0x36);
  const outer = new Uint8Array(64).fill(0x5c);
  for (let i = 0; i < k.length; i++) {
    inner[i] ^= k[i];
    outer[i] ^= k[i];
  }
  const h = createHash("sha256").update(inner).update(data).digest();
  return new Uint8Array(createHash("sha256").update(outer).update(h).digest());
}

/** scrypt off the event loop (node:crypto runs it on the thread pool). */
export function scryptKey(
  password: string,
  salt: Uint8Array,
  cost: ScryptCost,
  bytes = KEY_BYTES,
): Promise<Uint8Array> {
  const N = 2 ** cost.ln;
  return new Promise<Uint8Array>((resolve, reject) => {
    // maxmem: the default 32 MiB refuses N = 2^15 and above.
    scrypt(
      password,
      salt,
      bytes,
      { N, r: cost.r, p: cost.p, maxmem: 256 * N * cost.r + (1 << 20) },
      (err, key) => err ? reject(err) : resolve(new Uint8Array(key)),
    );
  });
}

/** A token's SaltedKey: its SHA-256. */
export function tokenKey(token: string): Uint8Array {
  return sha256(token);
}

/** ClientKey of a SaltedKey (what a dialer proves it holds). */
function clientKeyOf(salted: Uint8Array): Uint8Array {
  return hmac(salted, "Client Key");
}

/** The keys a listener keeps for a SaltedKey. */
export function keysOf(salted: Uint8Array): ScramKeys {
  return { storedKey: sha256(clientKeyOf(salted)), serverKey: hmac(salted, "Server Key") };
}

/**
 * A token's id: which of a listener's tokens a proof is to be checked
 * against, so that it checks one, not every user's (three hashes each).
 * A hash of StoredKey: it tells a watcher that two hellos hold the same
 * token, nothing of the token.
 */
export function tokenId(keys: ScramKeys): string {
  return b64(sha256(concatBytes([new TextEncoder().encode("dist-token-id"), keys.storedKey])))
    .slice(0, 16);
}

/** A fresh nonce: 18 random bytes, base64. */
export function newNonce(): string {
  return b64(crypto.getRandomValues(new Uint8Array(18)));
}

/** What a proof and a verifier sign: every field of the exchange, each side's as sent. */
export interface Exchange {
  mech: "token" | "password";
  user: string;
  dialerRole: string;
  dialerName: string;
  clientNonce: string;
  serverNonce: string;
  listenerRole: string;
  listenerName: string;
  salt: string;
  cost: string;
}

/** The AuthMessage of an exchange (a JSON array: no field can run into the next). */
export function authMessage(x: Exchange): Uint8Array {
  return new TextEncoder().encode(JSON.stringify([
    "dist-hello-1",
    x.mech,
    x.user,
    x.dialerRole,
    x.dialerName,
    x.clientNonce,
    x.serverNonce,
    x.listenerRole,
    x.listenerName,
    x.salt,
    x.cost,
  ]));
}

/** The dialer's proof for `message`, from its SaltedKey. */
export function clientProof(salted: Uint8Array, message: Uint8Array): Uint8Array {
  const clientKey = clientKeyOf(salted);
  const signature = hmac(sha256(clientKey), message);
  return clientKey.map((b, i) => b ^ signature[i]);
}

/** The listener's verifier for `message`: proves it holds the user's ServerKey. */
export function serverSignature(serverKey: Uint8Array, message: Uint8Array): Uint8Array {
  return hmac(serverKey, message);
}

/** Equal byte strings, in constant time for equal lengths. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * A dialer's proof as a listener checks it: against each candidate's keys
 * (the shared token, each user's token, or the named user's password),
 * remembering the ServerKey of the one it matched for the welcome's
 * verifier.
 */
export class ProofCheck {
  readonly mech: "token" | "password";
  readonly user: string | undefined;
  /** The token's id (see {@link tokenId}), for mech token. */
  readonly tokenId: string | undefined;
  #message: Uint8Array;
  #proof: Uint8Array;
  #serverKey: Uint8Array | undefined;

  constructor(exchange: Exchange, proof: Uint8Array, id?: string) {
    this.mech = exchange.mech;
    this.user = exchange.mech === "password" ? exchange.user : undefined;
    this.tokenId = exchange.mech === "token" ? id : undefined;
    this.#message = authMessage(exchange);
    this.#proof = proof;
  }

  /** Whether the proof was made from the secret these keys were made from (constant time). */
  matches(keys: ScramKeys): boolean {
    const signature = hmac(keys.storedKey, this.#message);
    const clientKey = this.#proof.length === KEY_BYTES
      ? this.#proof.map((b, i) => b ^ signature[i])
      : new Uint8Array(KEY_BYTES);
    const ok = sameBytes(sha256(clientKey), keys.storedKey) && this.#proof.length === KEY_BYTES;
    if (ok) this.#serverKey = keys.serverKey;
    return ok;
  }

  /** The welcome's verifier (base64), once a match was found. */
  verifier(): string | undefined {
    return this.#serverKey === undefined
      ? undefined
      : b64(serverSignature(this.#serverKey, this.#message));
  }
}

/** SaltedKeys a dialer derived lately, by secret, salt and cost: a reconnect pays no scrypt. */
const derived = new Map<string, Promise<Uint8Array>>();
const MAX_DERIVED = 64;

/**
 * A password's SaltedKey for a salt and cost, remembered for the next
 * dials (keyed by a digest, never the password itself).
 */
export function passwordKey(password: string, salt: Uint8Array, cost: ScryptCost) {
  const key = b64(sha256(`${password}\u0000${b64(salt)}\u0000${cost.ln},${cost.r},${cost.p}`));
  let found = derived.get(key);
  if (found === undefined) {
    if (derived.size >= MAX_DERIVED) derived.clear();
    // One derivation at a time in the process: each may take up to 128 MiB (h46d D3).
    found = deriving.then(() => scryptKey(password, salt, cost));
    deriving = found.catch(() => {});
    derived.set(key, found);
    found.catch(() => derived.delete(key));
  }
  return found;
}

/** The last derivation started by passwordKey: the next waits for it. */
let deriving: Promise<unknown> = Promise.resolve();

export { hmac as hmacSha256 };
