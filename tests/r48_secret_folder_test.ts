/**
 * Review r48 R1 (o48's N9): a secrets file is checked, not the folder it is in. N9's case was "a
 * topology in a folder others may write let them plant the passwords"; in such a folder (0777, no
 * sticky bit) another user may rename the user's own 0600 users.toml away and put theirs in its
 * place between dist's check (a stat of the path) and its read (an open of the path again), or
 * before a restart (the supervisor starts an instance again). data_dir and the state directory
 * already refuse a folder others may write (launch/state.ts dirProblem); ssh's StrictModes checks
 * the folders above a key too.
 *
 * Outcome asserted: a 0600 users file of ours in a folder others may write is refused (exit 2,
 * `dist: …` naming the folder), as the same file in a 0700 folder is taken. Bounded: each run is
 * killed after 8 s (a server that starts does not end by itself).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { runDist, startDist } from "./helpers/dist.ts";

const USERS = '[users.app]\nmethods = ["add"]\n';

Deno.test("r48: a users file in a folder others may write is refused", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dist_r48_folder_" });
  try {
    const users = join(dir, "users.toml");
    await Deno.writeTextFile(users, USERS, { mode: 0o600 });
    await Deno.chmod(users, 0o600);
    // The control: in a folder of ours only, it is taken.
    await Deno.chmod(dir, 0o700);
    const server = await startDist(["server", "--port", "0", "--users", users]);
    await server.stop();
    await Deno.chmod(dir, 0o777);
    const r = await runDist(["server", "--port", "0", "--users", users], { timeoutMs: 8000 });
    assert.equal(r.timedOut, false, "it started: a users file in a folder others may write taken");
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^dist: .*may be written by others/m, r.stderr);
    assert.ok(r.stderr.includes(dir), r.stderr);
  } finally {
    await Deno.chmod(dir, 0o700).catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
});
