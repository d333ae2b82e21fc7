/**
 * What a listener's challenge says of a name that is no user of its file
 * (K-C2, h46d D4): a salt and a cost that do not tell it from a user's.
 *
 * - The salt is an HMAC of the name under a key made from the file's
 *   stored keys (the listener's own material, kept from dialers): the same
 *   at every hello and across restarts, as a user's is, and as long as a
 *   user's (16 bytes, what `dist passwd` writes).
 * - The cost is drawn, by that HMAC too (so again the same each time),
 *   from the costs of the file's passwords in their proportions: a file
 *   whose passwords share one cost gives every name that cost, and a user
 *   whose cost differs from the others' is no longer the only name that
 *   gets it (h46d D4: every unknown name got the first password's cost, so
 *   a user with another cost was told apart by it).
 */
import type { SaltAndCost } from "../wire/challenge.ts";
import { hmacSha256, type ScryptCost } from "../wire/scram.ts";
import { DEFAULT_COST, digest } from "./passwords.ts";
import type { Users } from "./users.ts";

/** Bytes of a made-up salt (passwords.ts SALT_BYTES: what dist passwd writes). */
const SALT_BYTES = 16;

/** See the module comment. */
export class UnknownNames {
  #key: Uint8Array;
  /** The cost of each password of the file, in file order. */
  #costs: ScryptCost[];

  constructor(users: Users | undefined) {
    const entries = [...users?.entries.values() ?? []];
    const stored = entries.map((e) => e.passwordText ?? "");
    this.#key = stored.some((t) => t !== "")
      ? digest(`dist-salt\u0000${stored.join("\u0000")}`)
      : crypto.getRandomValues(new Uint8Array(32));
    this.#costs = entries.flatMap((e) => e.password === undefined ? [] : [e.password.cost]);
    if (this.#costs.length === 0) this.#costs = [users?.cost ?? DEFAULT_COST];
  }

  /** The made-up salt and cost of `name`, the same at every call. */
  saltFor(name: string): SaltAndCost {
    const mac = hmacSha256(this.#key, name);
    const pick = new DataView(mac.buffer, mac.byteOffset).getUint32(SALT_BYTES);
    return { salt: mac.slice(0, SALT_BYTES), cost: this.#costs[pick % this.#costs.length] };
  }
}
