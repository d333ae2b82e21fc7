/**
 * Passwords and tokens as a users file stores them, and how a secret is
 * checked against them: never the secret nor what makes a proof, only the
 * SCRAM keys (wire/scram.ts) of its SaltedKey: scrypt(password, salt) for
 * a password (the parameters travel with the hash, so they can be raised
 * later), SHA-256 of a token (random and long: a slow hash adds nothing).
 * A stolen users file checks a proof but makes none: it is no password.
 *
 * - `$scrypt$ln=14,r=8,p=1$SALT$KEYS`: KEYS is StoredKey and ServerKey, 64
 *   bytes. Written before the challenge hello, KEYS was the 32-byte
 *   SaltedKey itself: still read (`legacy`), but such a file makes proofs:
 *   `dist passwd` again replaces it.
 * - `$sha256$KEYS`: the token's StoredKey and ServerKey (86 characters); the
 *   token's bare SHA-256 (43, `legacy`) is still read, as above.
 *
 * Every comparison is constant-time.
 */
import { createHash, randomBytes } from "node:crypto";
import { DistError } from "../wire/mod.ts";
import {
  b64,
  costProblem,
  KEY_BYTES,
  keysOf,
  sameBytes,
  type ScramKeys,
  type ScryptCost,
  scryptKey,
  tokenKey,
  unb64,
} from "../wire/scram.ts";

export type { ScryptCost };

/**
 * The default cost: N = 2^14, r = 8 (16 MiB, 100 to 300 ms on this project's
 * machines), the figure OWASP and the scrypt paper give for interactive logins.
 */
export const DEFAULT_COST: ScryptCost = Object.freeze({ ln: 14, r: 8, p: 1 });

const SALT_BYTES = 16;

/** A parsed `$scrypt$ln=14,r=8,p=1$SALT$KEYS`. */
export interface PasswordHash {
  cost: ScryptCost;
  salt: Uint8Array;
  keys: ScramKeys;
  /** Bytes of the SaltedKey (32, or a legacy hash's length). */
  bytes: number;
  /** Stored as the SaltedKey itself (before the challenge hello): it makes proofs. */
  legacy: boolean;
}

/** A parsed `$sha256$KEYS`. */
export interface TokenHash {
  keys: ScramKeys;
  /** Stored as the token's bare SHA-256: it makes proofs. */
  legacy: boolean;
}

const HASH_RE =
  /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/;
const TOKEN_RE = /^\$sha256\$([A-Za-z0-9+/]{43}|[A-Za-z0-9+/]{86})$/;

/** StoredKey and ServerKey as one stored value. */
function keysText(keys: ScramKeys): string {
  const both = new Uint8Array(2 * KEY_BYTES);
  both.set(keys.storedKey);
  both.set(keys.serverKey, KEY_BYTES);
  return b64(both);
}

/** Keys from a stored value: StoredKey and ServerKey (64 bytes), or a legacy SaltedKey. */
function storedKeys(bytes: Uint8Array): { keys: ScramKeys; legacy: boolean } {
  if (bytes.length === 2 * KEY_BYTES) {
    return {
      keys: { storedKey: bytes.slice(0, KEY_BYTES), serverKey: bytes.slice(KEY_BYTES) },
      legacy: false,
    };
  }
  return { keys: keysOf(bytes), legacy: true };
}

/**
 * Reads a stored password hash.
 * @returns the hash, or a sentence saying what is wrong with it
 */
export function parsePasswordHash(text: string): PasswordHash | string {
  const m = HASH_RE.exec(text);
  if (m === null) return 'must be "$scrypt$ln=N,r=N,p=N$SALT$HASH" as dist passwd writes it';
  const cost = { ln: Number(m[1]), r: Number(m[2]), p: Number(m[3]) };
  const problem = costProblem(cost);
  if (problem !== undefined) return problem;
  try {
    const salt = unb64(m[4]);
    const hash = unb64(m[5]);
    if (salt.length < 8 || hash.length < 16) return "salt or hash too short";
    return {
      cost,
      salt,
      bytes: hash.length === 2 * KEY_BYTES ? KEY_BYTES : hash.length,
      ...storedKeys(hash),
    };
  } catch {
    return "salt and hash must be base64";
  }
}

/** Hashes a password for a users file (`$scrypt$ln=14,r=8,p=1$SALT$KEYS`). */
export async function hashPassword(password: string, cost = DEFAULT_COST): Promise<string> {
  const salt = new Uint8Array(randomBytes(SALT_BYTES));
  const salted = await scryptKey(password, salt, cost);
  return `$scrypt$ln=${cost.ln},r=${cost.r},p=${cost.p}$${b64(salt)}$${keysText(keysOf(salted))}`;
}

/** Whether `password` is the one `stored` was made from (constant-time comparison). */
export async function verifyPassword(password: string, stored: PasswordHash): Promise<boolean> {
  const salted = await scryptKey(password, stored.salt, stored.cost, stored.bytes);
  return sameBytes(keysOf(salted).storedKey, stored.keys.storedKey);
}

/** The keys of a token given in clear (what its stored keys are compared with). */
export function tokenKeys(token: string): ScramKeys {
  return keysOf(tokenKey(token));
}

/** SHA-256 of a secret: equal lengths whatever the inputs, for timingSafeEqual. */
export function digest(secret: string): Uint8Array {
  return new Uint8Array(createHash("sha256").update(secret, "utf8").digest());
}

/** Whether two digests are equal, in constant time. */
export function sameDigest(a: Uint8Array, b: Uint8Array): boolean {
  return sameBytes(a, b);
}

/** A token as a users file stores it: `$sha256$KEYS`, its SHA-256's StoredKey and ServerKey. */
export function hashToken(token: string): string {
  return `$sha256$${keysText(tokenKeys(token))}`;
}

/**
 * Reads a stored token.
 * @returns its keys, or a sentence saying what is wrong with it
 */
export function parseTokenHash(text: string): TokenHash | string {
  const m = TOKEN_RE.exec(text);
  if (m === null) return 'must be "$sha256$DIGEST" as dist passwd --token writes it';
  return storedKeys(unb64(m[1]));
}

/** A new random token: 32 bytes, base64url (43 characters), not starting with "-". */
export function newToken(): string {
  while (true) {
    const t = b64(new Uint8Array(randomBytes(32))).replaceAll("+", "-").replaceAll("/", "_");
    // One starting with "-" would read as a flag after --token.
    if (!t.startsWith("-")) return t;
  }
}

/**
 * Runs at most `slots` password checks at once (each takes 16 MiB and a
 * core for a tenth of a second). Checks wait in lanes (the gate gives each
 * address and user its own), served in turn, one from each lane with
 * checks waiting: a flood in one lane holds its own checks back, never
 * another lane's. Up to `maxQueue` wait in a lane and `maxTotal` in all;
 * past that a check is refused at once with OVERLOADED, so a flood of
 * logins holds bounded memory.
 */
export class HashSlots {
  #free: number;
  /** Waiting checks by lane; a lane's place in the map is its turn (moved to the end once served). */
  #lanes = new Map<string, (() => void)[]>();
  #queued = 0;
  #maxQueue: number;
  #maxTotal: number;

  constructor(slots = 2, maxQueue = 64, maxTotal = 16 * maxQueue) {
    this.#free = slots;
    this.#maxQueue = maxQueue;
    this.#maxTotal = maxTotal;
  }

  /** Checks waiting for a slot. */
  get queued(): number {
    return this.#queued;
  }

  /** Runs `f` in a slot, in its turn among the lanes. @throws {DistError} OVERLOADED when its lane or all are full */
  async run<T>(f: () => Promise<T>, lane = ""): Promise<T> {
    if (this.#free === 0) {
      const waiting = this.#lanes.get(lane);
      if ((waiting?.length ?? 0) >= this.#maxQueue || this.#queued >= this.#maxTotal) {
        throw new DistError("OVERLOADED", "Too many password checks in progress; retry later");
      }
      this.#queued++;
      await new Promise<void>((resolve) => {
        if (waiting === undefined) this.#lanes.set(lane, [resolve]);
        else waiting.push(resolve);
      });
    } else {
      this.#free--;
    }
    try {
      return await f();
    } finally {
      this.#next();
    }
  }

  /** Hands the freed slot to the first lane in turn, which then goes to the back. */
  #next(): void {
    const first = this.#lanes.entries().next();
    if (first.done) {
      this.#free++;
      return;
    }
    const [lane, waiting] = first.value;
    this.#lanes.delete(lane);
    const resolve = waiting.shift()!;
    if (waiting.length > 0) this.#lanes.set(lane, waiting);
    this.#queued--;
    resolve();
  }
}
