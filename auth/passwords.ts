/**
 * Passwords and tokens as a users file stores them, and how a hello's
 * secret is checked against them: scrypt for passwords (the parameters
 * travel with the hash, so they can be raised later), SHA-256 for tokens
 * (random and long: a slow hash adds nothing), and every comparison in
 * constant time.
 */
import { createHash, randomBytes, scrypt, timingSafeEqual } from "node:crypto";
import { DistError } from "../wire/mod.ts";

/** scrypt's cost parameters: N = 2^ln (memory 128·N·r bytes), r, p. */
export interface ScryptCost {
  ln: number;
  r: number;
  p: number;
}

/**
 * The default cost: N = 2^14, r = 8 (16 MiB, 100 to 300 ms on this project's
 * machines), the figure OWASP and the scrypt paper give for interactive logins.
 */
export const DEFAULT_COST: ScryptCost = Object.freeze({ ln: 14, r: 8, p: 1 });

/** Bounds of a cost read from a file: a hash must neither be free nor take minutes or GiBs. */
const MIN_LN = 10;
const MAX_LN = 20;
const MAX_R = 32;
const MAX_P = 16;
const KEY_BYTES = 32;
const SALT_BYTES = 16;

/** A parsed `$scrypt$ln=14,r=8,p=1$SALT$HASH`. */
export interface PasswordHash {
  cost: ScryptCost;
  salt: Uint8Array;
  hash: Uint8Array;
}

const HASH_RE =
  /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/;
const TOKEN_RE = /^\$sha256\$([A-Za-z0-9+/]{43})$/;

const b64 = (b: Uint8Array) => btoa(String.fromCharCode(...b)).replace(/=+$/, "");
const unb64 = (s: string) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));

/**
 * Reads a stored password hash.
 * @returns the hash, or a sentence saying what is wrong with it
 */
export function parsePasswordHash(text: string): PasswordHash | string {
  const m = HASH_RE.exec(text);
  if (m === null) return 'must be "$scrypt$ln=N,r=N,p=N$SALT$HASH" as dist passwd writes it';
  const cost = { ln: Number(m[1]), r: Number(m[2]), p: Number(m[3]) };
  if (cost.ln < MIN_LN || cost.ln > MAX_LN) return `ln must be ${MIN_LN} to ${MAX_LN}`;
  if (cost.r < 1 || cost.r > MAX_R || cost.p < 1 || cost.p > MAX_P) {
    return `r must be 1 to ${MAX_R} and p 1 to ${MAX_P}`;
  }
  try {
    const salt = unb64(m[4]);
    const hash = unb64(m[5]);
    if (salt.length < 8 || hash.length < 16) return "salt or hash too short";
    return { cost, salt, hash };
  } catch {
    return "salt and hash must be base64";
  }
}

/** scrypt off the event loop (node:crypto runs it on the thread pool). */
function derive(password: string, salt: Uint8Array, cost: ScryptCost, bytes: number) {
  const N = 2 ** cost.ln;
  return new Promise<Uint8Array>((resolve, reject) => {
    // maxmem: the default 32 MiB refuses N = 2^15 and above.
    scrypt(
      password,
      salt,
      bytes,
      { N, r: cost.r, p: cost.p, maxmem: 256 * N * cost.r + (1 << 20) },
      (
        err,
        key,
      ) => err ? reject(err) : resolve(new Uint8Array(key)),
    );
  });
}

/** Hashes a password for a users file (`$scrypt$ln=14,r=8,p=1$SALT$HASH`). */
export async function hashPassword(password: string, cost = DEFAULT_COST): Promise<string> {
  const salt = new Uint8Array(randomBytes(SALT_BYTES));
  const hash = await derive(password, salt, cost, KEY_BYTES);
  return `$scrypt$ln=${cost.ln},r=${cost.r},p=${cost.p}$${b64(salt)}$${b64(hash)}`;
}

/** Whether `password` is the one `stored` was made from (constant-time comparison). */
export async function verifyPassword(password: string, stored: PasswordHash): Promise<boolean> {
  const got = await derive(password, stored.salt, stored.cost, stored.hash.length);
  return timingSafeEqual(got, stored.hash);
}

/** SHA-256 of a secret: equal lengths whatever the inputs, for timingSafeEqual. */
export function digest(secret: string): Uint8Array {
  return new Uint8Array(createHash("sha256").update(secret, "utf8").digest());
}

/** Whether two digests are equal, in constant time. */
export function sameDigest(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** A token as a users file stores it: `$sha256$BASE64` of its SHA-256. */
export function hashToken(token: string): string {
  return `$sha256$${b64(digest(token))}`;
}

/**
 * Reads a stored token digest.
 * @returns the digest, or a sentence saying what is wrong with it
 */
export function parseTokenHash(text: string): Uint8Array | string {
  const m = TOKEN_RE.exec(text);
  if (m === null) return 'must be "$sha256$DIGEST" as dist passwd --token writes it';
  return unb64(m[1]);
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
