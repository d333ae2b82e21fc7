/**
 * hostile45c K-C9: a launcher killed outright (SIGKILL, the OOM killer, a
 * power cut with a persistent $TMPDIR) leaves its state file, and the next
 * `dist up` of that file believes a launcher still runs whenever any live
 * process now holds the dead launcher's pid (launch/state.ts `isAlive`
 * checks only that the pid exists, not that it is the launcher that wrote
 * the file: its start time is in the file). It refuses to start (`dist up
 * of FILE already runs here (pid N): stop it first`), and `dist status`
 * reports that process's restarts and footer.
 */
import assert from "node:assert/strict";
import { resolve } from "node:path";
import { runDist } from "./helpers/dist.ts";
import { freeRange, topologyFile } from "./helpers/up.ts";

Deno.test("hostile45c K-C9: a dead launcher's state file whose pid another process now has does not stop dist up", async () => {
  const state = await Deno.makeTempDir({ prefix: "dist-k-c9-" });
  await Deno.chmod(state, 0o700);
  const port = freeRange(1);
  const file = await topologyFile(`[[server]]\nname = "server"\nport = ${port}\n`);
  // Any long-lived process of the machine that now holds the dead launcher's pid.
  const other = new Deno.Command("sleep", { args: ["30"] }).spawn();
  try {
    await Deno.writeTextFile(
      `${state}/up-0123abcd.json`,
      JSON.stringify({
        version: 1,
        pid: other.pid,
        // The dead launcher started an hour ago; `other` started just now.
        started_ms: Date.now() - 3_600_000,
        file: resolve(file), // as launch/state.ts topologyKey names it
        instances: {},
      }),
    );
    const r = await runDist(["up", file, "--no-dashboard", "--duration", "2s"], {
      env: { DIST_STATE_DIR: state },
      timeoutMs: 30_000,
    });
    assert.doesNotMatch(r.stderr, /already runs here/);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /server ready at/);
  } finally {
    other.kill("SIGKILL");
    await other.status;
    await Deno.remove(file);
    await Deno.remove(state, { recursive: true });
  }
});
