/**
 * What a listener's challenge says of a name that is no user of its file
 * (K-C2, h46d D4): a salt and a cost that do not tell it from a user's.
 *
 * - Each such name stands in for one user of the file, picked by a hash of
 *   the name seeded from each user's key (highest score: rendezvous
 *   hashing; the seeds are secret, so the pick cannot be worked out from a
 *   guessed list of users), and takes that
 *   user's cost and a salt made by an HMAC of the name under a key from
 *   that user's stored password (the listener's own material, kept from
 *   dialers). So it is the same at every hello and across restarts, as a
 *   user's is; and when one user's password changes, only the names that
 *   stand in for that user change with it (hostile47b N4: a key made of
 *   every password changed every made-up salt at once while the other
 *   users' stayed, so the names whose salt stayed were the users). A user
 *   added takes over only its share of names.
 * - The costs are the file's own, in their proportions (h46d D4: every
 *   unknown name got the first password's cost, so a user with another
 *   cost was told apart by it).
 */
import type { SaltAndCost } from "../wire/challenge.ts";
import { hmacSha256, type ScryptCost } from "../wire/scram.ts";
import { DEFAULT_COST, digest } from "./passwords.ts";
import type { Users } from "./users.ts";

/** Bytes of a made-up salt (passwords.ts SALT_BYTES: what dist passwd writes). */
const SALT_BYTES = 16;

interface StandIn {
  seed: number;
  key: Uint8Array;
  cost: ScryptCost;
}

/** See the module comment. */
export class UnknownNames {
  #standIns: StandIn[];

  constructor(users: Users | undefined) {
    this.#standIns = [...users?.entries.values() ?? []].flatMap((e) => {
      if (e.password === undefined || e.passwordText === undefined) return [];
      const key = digest(`dist-salt\u0000${e.passwordText}`);
      return [{
        seed: new DataView(key.buffer, key.byteOffset).getUint32(0),
        key,
        cost: e.password.cost,
      }];
    });
    if (this.#standIns.length === 0) {
      // No password in the file: a key of this process's (no user's salt to look like).
      const cost = users?.cost ?? DEFAULT_COST;
      this.#standIns = [{ seed: 0, key: crypto.getRandomValues(new Uint8Array(32)), cost }];
    }
  }

  /** The made-up salt and cost of `name`, the same at every call. */
  saltFor(name: string): SaltAndCost {
    let best = this.#standIns[0], top = -1;
    for (const s of this.#standIns) {
      const score = fnv1a(s.seed, name);
      if (score > top) [best, top] = [s, score];
    }
    return { salt: hmacSha256(best.key, name).slice(0, SALT_BYTES), cost: best.cost };
  }
}

/** FNV-1a, 32 bits, of a string's UTF-16 units from `seed`: a cheap, even spread for the pick. */
function fnv1a(seed: number, text: string): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  // MurmurHash3's finalizer: seeds that differ little still order names independently.
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}
