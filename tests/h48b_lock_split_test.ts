/**
 * h48b V-lock: the one-launcher lock's place depends on whether the state directory is the
 * user's at the moment each launcher starts (launch/launcher_lock.ts lockDir): a launcher that
 * started while `dist-<uid>` was squatted locks in $XDG_RUNTIME_DIR/dist; once the squatter
 * removes the folder (theirs, so they may), the next launcher of the same file makes its own
 * state directory, locks there, finds no state of the first (it kept none) and runs beside it:
 * two launchers of one topology, which the lock exists to refuse (R13's aim). Likewise a launcher
 * whose environment has no $XDG_RUNTIME_DIR (cron, `sudo -u`, ssh without a login session) locks
 * in ~/.cache/dist, and does not meet one that has it ("every launcher of this user falls back
 * alike" does not hold).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { runDist } from "./helpers/dist.ts";
import { homeEnv } from "./helpers/home.ts";
import { startUp, topologyFile } from "./helpers/up.ts";

Deno.test({
  name:
    "h48b: a squatted state directory removed while dist up runs lets a second dist up of the file run",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "dist-h48b-lock-" });
    const runtime = join(root, "run");
    await Deno.mkdir(runtime, { mode: 0o700 });
    const tmp = join(root, "tmp");
    const squat = `${tmp}/dist-${Deno.uid()}`;
    await Deno.mkdir(squat, { recursive: true });
    await Deno.chmod(squat, 0o777); // another user's, writable by all
    const env = { TMPDIR: tmp, XDG_RUNTIME_DIR: runtime };
    const file = await topologyFile(`[[server]]\nname = "srv"\nport = 0\n`);
    const first = startUp([file, "--no-dashboard"], { env });
    try {
      await first.waitFor(/All 1 ready/);
      assert.match(first.stdout(), /Not keeping state/);
      await Deno.remove(squat, { recursive: true }); // the squatter leaves
      const second = await runDist(["up", file, "--no-dashboard", "--duration", "3s"], {
        env,
        timeoutMs: 30_000,
      });
      assert.equal(second.code, 2, `second launcher ran: ${second.stdout}${second.stderr}`);
      assert.match(second.stderr, /already runs here/);
    } finally {
      await first.stop();
      await Deno.remove(file);
      await Deno.remove(root, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "h48b: with a squatted state directory, a launcher without XDG_RUNTIME_DIR (cron, sudo -u, ssh) does not meet one with it",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "dist-h48b-lock2-" });
    const runtime = join(root, "run");
    const home = join(root, "home");
    await Deno.mkdir(runtime, { mode: 0o700 });
    await Deno.mkdir(home, { mode: 0o700 });
    const tmp = join(root, "tmp");
    const squat = `${tmp}/dist-${Deno.uid()}`;
    await Deno.mkdir(squat, { recursive: true });
    await Deno.chmod(squat, 0o777); // another user's, writable by all
    const file = await topologyFile(`[[server]]\nname = "srv"\nport = 0\n`);
    // A login shell's session has $XDG_RUNTIME_DIR; a cron job or `sudo -u` of the same user not.
    const first = startUp([file, "--no-dashboard"], {
      env: { TMPDIR: tmp, XDG_RUNTIME_DIR: runtime, ...await homeEnv(home) },
    });
    try {
      await first.waitFor(/All 1 ready/);
      const second = await runDist(["up", file, "--no-dashboard", "--duration", "3s"], {
        env: { TMPDIR: tmp, XDG_RUNTIME_DIR: "", ...await homeEnv(home) },
        timeoutMs: 30_000,
      });
      assert.equal(second.code, 2, `second launcher ran: ${second.stdout}${second.stderr}`);
      assert.match(second.stderr, /already runs here/);
    } finally {
      await first.stop();
      await Deno.remove(file);
      await Deno.remove(root, { recursive: true });
    }
  },
});
