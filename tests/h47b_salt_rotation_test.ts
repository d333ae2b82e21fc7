/**
 * Hostile review h47b N4 (D4's made-up salts): a name that is no user got a salt (and cost) made
 * by an HMAC under a key derived from every stored password of the users file
 * (auth/unknown_names.ts). So when any one password changed, every made-up salt changed at once,
 * while every other user's real salt stayed: an attacker who asked for the challenge of a list of
 * names before and after an edit of the file learnt which names are users (those whose salt
 * stayed). Now each such name stands in for one user of the file (picked by a secret hash) and
 * changes only with that user's password: whether a salt stayed tells a user from no one.
 */
import assert from "node:assert/strict";
import { Gate, hashPassword, parseUsers } from "../auth/mod.ts";

const COST = { ln: 10, r: 8, p: 1 };

async function lines(name: string, pw: string): Promise<string> {
  return `[users.${name}]\npassword = "${await hashPassword(pw, COST)}"\n`;
}

const b64 = (s: Uint8Array) => btoa(String.fromCharCode(...s));
const ghosts = Array.from({ length: 40 }, (_, i) => `ghost-${i}`);

Deno.test("h47b N4: after one user's password is rotated, non-users' salts stay as the other users' do", async () => {
  const ann = await lines("ann", "pw-ann");
  const g1 = new Gate({ users: parseUsers(ann + await lines("ben", "pw-ben"), "users.toml") });
  const g2 = new Gate({ users: parseUsers(ann + await lines("ben", "pw-ben-2"), "users.toml") });
  assert.equal(b64(g2.saltFor("ann").salt), b64(g1.saltFor("ann").salt));
  assert.notEqual(b64(g2.saltFor("ben").salt), b64(g1.saltFor("ben").salt));
  const stayed = ghosts.filter((n) => b64(g1.saltFor(n).salt) === b64(g2.saltFor(n).salt));
  // About half stand in for ann and stay, half for ben and move: neither tells a user.
  assert.ok(
    stayed.length >= 10 && stayed.length <= 30,
    `${stayed.length} of 40 non-users' salts stayed when ben's password changed (ann's stayed)`,
  );
  // The same name gets the same salt at every hello.
  assert.equal(b64(g2.saltFor("ghost-1").salt), b64(g2.saltFor("ghost-1").salt));
});

Deno.test("h47b N4: a user added takes over only its share of the non-users' salts", async () => {
  const two = await lines("ann", "pw-ann") + await lines("ben", "pw-ben");
  const g1 = new Gate({ users: parseUsers(two, "users.toml") });
  const g2 = new Gate({
    users: parseUsers(two + await lines("carl", "pw-carl"), "users.toml"),
  });
  const moved = ghosts.filter((n) => b64(g1.saltFor(n).salt) !== b64(g2.saltFor(n).salt));
  assert.ok(moved.length >= 4 && moved.length <= 24, `${moved.length} of 40 moved (about a third)`);
  for (const user of ["ann", "ben"]) {
    assert.equal(b64(g2.saltFor(user).salt), b64(g1.saltFor(user).salt));
  }
});
