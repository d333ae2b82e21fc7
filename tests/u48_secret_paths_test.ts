/**
 * Review r48 R1, R5, R6 (config/owner.ts, N9's check of a secrets file):
 * - R1: the folders that lead to a secrets file are checked as ssh's StrictModes checks them: a
 *   sticky folder others may write (/tmp's kind) is fine, a link from a folder of ours to a file
 *   in a folder others may write is not (the real path's folders are checked too), nor a folder
 *   of another user's.
 * - R5: the fix said fits the file: `chmod 600` for a token, `chmod go-w` for a users file (a
 *   `chmod 600` would hide it from the other readers it may have), and a read-only mount's way out.
 * - R6: DIST_SECRETS_DIR relative or `/` is refused; a link inside it to a file elsewhere is judged
 *   where it points; that it is in force is said once.
 * Each case's control (the same file taken) is in the same test. Processes are bounded by the
 * helpers' timeouts (a server that starts is stopped).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { runDist, startDist } from "./helpers/dist.ts";
import { assertUserError } from "./helpers/cli.ts";

const USERS = '[users.app]\nmethods = ["add"]\n';

async function starts(args: string[], env?: Record<string, string>): Promise<string> {
  const server = await startDist(["server", "--port", "0", ...args], { env });
  return (await server.stop()).stderr;
}

async function inTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "dist_u48_" });
  try {
    await fn(dir);
  } finally {
    await Deno.chmod(dir, 0o700).catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("R1: a sticky shared folder is taken; a link into a folder others may write is not", async () => {
  await inTemp(async (dir) => {
    const shared = join(dir, "shared");
    await Deno.mkdir(shared);
    const users = join(shared, "users.toml");
    await Deno.writeTextFile(users, USERS, { mode: 0o600 });
    await Deno.chmod(users, 0o600);
    await Deno.chmod(shared, 0o1777); // As /tmp: others may not rename our file away.
    await starts(["--users", users]);
    await Deno.chmod(shared, 0o777);
    const mine = join(dir, "mine");
    await Deno.mkdir(mine, { mode: 0o700 });
    const link = join(mine, "users.toml");
    await Deno.symlink(users, link);
    const r = await runDist(["server", "--port", "0", "--users", link]);
    const line = assertUserError(r, 2, "a link into a folder others may write");
    assert.ok(line.includes(`its folder ${shared} may be written by others (mode 777)`), line);
    assert.ok(line.includes(`chmod go-w ${shared}`), line);
  });
});

Deno.test({
  name: "R1: a users file in a folder of another user's is refused; in root's it is taken",
  ignore: Deno.uid() !== 0, // Only root can give a folder away.
  fn: async () => {
    await inTemp(async (dir) => {
      const theirs = join(dir, "theirs");
      await Deno.mkdir(theirs, { mode: 0o755 });
      const users = join(theirs, "users.toml");
      await Deno.writeTextFile(users, USERS, { mode: 0o600 });
      await Deno.chmod(users, 0o600);
      await starts(["--users", users]);
      await Deno.chown(theirs, 54321, 54321);
      const r = await runDist(["server", "--port", "0", "--users", users]);
      const line = assertUserError(r, 2, "another user's folder");
      assert.match(line, /its folder .*theirs belongs to another user \(uid 54321\)/, line);
    });
  },
});

Deno.test("R5: a token others may read: chmod 600; a users file others may write: chmod go-w", async () => {
  await inTemp(async (dir) => {
    const token = join(dir, "token");
    await Deno.writeTextFile(token, "s3cret\n", { mode: 0o600 });
    await Deno.chmod(token, 0o644);
    const t = assertUserError(
      await runDist(["server", "--port", "0", "--token-file", token]),
      2,
      "token 644",
    );
    assert.ok(t.includes(`others could read it; chmod 600 ${token}`), t);
    assert.doesNotMatch(t, /replace/, t); // Reading is the problem, not writing.
    assert.match(t, /read-only mount: .*defaultMode: 0440.*DIST_SECRETS_DIR/, t);
    const users = join(dir, "users.toml");
    await Deno.writeTextFile(users, USERS, { mode: 0o600 });
    await Deno.chmod(users, 0o664);
    const u = assertUserError(
      await runDist(["server", "--port", "0", "--users", users]),
      2,
      "users 664",
    );
    assert.ok(u.includes(`others could replace it; chmod go-w ${users}`), u);
    assert.doesNotMatch(u, /chmod 600/, u);
  });
});

Deno.test("R6: DIST_SECRETS_DIR relative or / is refused; a link in it is judged where it points; said once", async () => {
  await inTemp(async (dir) => {
    const mounted = join(dir, "run");
    await Deno.mkdir(mounted);
    const token = join(mounted, "token");
    await Deno.writeTextFile(token, "s3cret\n", { mode: 0o600 });
    await Deno.chmod(token, 0o644);
    const args = ["--token-file", token];
    // The control: taken as mounted, and said once (the token is read by two settings).
    const said = await starts(args, { DIST_SECRETS_DIR: mounted });
    assert.equal(said.split("DIST_SECRETS_DIR").length - 1, 1, said);
    assert.match(said, /^dist: DIST_SECRETS_DIR .*run is in force/m, said);
    for (const value of ["run", "/"]) {
      const r = await runDist(["server", "--port", "0", ...args], {
        cwd: dir,
        env: { DIST_SECRETS_DIR: value },
      });
      assert.match(assertUserError(r, 2, `DIST_SECRETS_DIR=${value}`), /^dist: DIST_SECRETS_DIR /);
    }
    const outside = join(dir, "token");
    await Deno.writeTextFile(outside, "s3cret\n", { mode: 0o600 });
    await Deno.chmod(outside, 0o644);
    const link = join(mounted, "elsewhere");
    await Deno.symlink(outside, link);
    const r = await runDist(["server", "--port", "0", "--token-file", link], {
      env: { DIST_SECRETS_DIR: mounted },
    });
    assert.match(assertUserError(r, 2, "a link out of DIST_SECRETS_DIR", 2), /in force/);
    assert.match(r.stderr, /--token-file .*elsewhere may be read by others/, r.stderr);
  });
});
