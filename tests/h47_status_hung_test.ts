/**
 * Hostile review h47 Q2 (medium): an instance that hangs (its event loop
 * blocked, SIGSTOP, a deadlock) still has its listening socket, so the
 * kernel accepts connections for it and no handshake comes. `dist status`
 * (launch/status.ts) takes "accepted but no handshake" for another process
 * on the port: the instance is `taken`, with
 * `port N answers, but not as NAME (No handshake within 2000 ms)`, though
 * the launcher's own state file names the pid that holds it, and that pid
 * is the instance. The user is sent looking for a squatter that does not
 * exist; `dist up` meanwhile neither says nor restarts anything (no
 * liveness check: Kubernetes restarts a container whose liveness probe
 * fails `failureThreshold` times, systemd one whose `WatchdogSec` runs out).
 *
 * Expected: the instance dist up started, hung, is not `taken`.
 */
import assert from "node:assert/strict";
import { runDist } from "./helpers/dist.ts";
import { freeRange, startUp, topologyFile } from "./helpers/up.ts";

Deno.test("h47 Q2: dist status does not call a hung instance's own port taken by another process", async () => {
  const state = await Deno.makeTempDir({ prefix: "dist-h47-q2-" });
  await Deno.chmod(state, 0o700);
  const port = freeRange(1);
  const file = await topologyFile(`[[server]]\nname = "srv"\nport = ${port}\nrestart = "always"\n`);
  const env = { DIST_STATE_DIR: state };
  const up = startUp([file, "--no-dashboard"], { env });
  let pid: number | undefined;
  try {
    await up.waitFor(/All 1 ready/);
    pid = up.pids()[0];
    assert.ok(pid !== undefined, up.stdout());
    Deno.kill(pid, "SIGSTOP");
    const r = await runDist(["status", file, "--json", "--timeout", "1s"], {
      env,
      timeoutMs: 30_000,
    });
    const row = JSON.parse(r.stdout.trim().split("\n")[0]);
    assert.equal(row.pid, pid, r.stdout);
    assert.notEqual(
      row.state,
      "taken",
      `dist status calls the instance's own hung process another process on its port: ${r.stdout}`,
    );
  } finally {
    if (pid !== undefined) {
      try {
        Deno.kill(pid, "SIGCONT");
      } catch { /* gone */ }
    }
    await up.stop();
    await Deno.remove(file);
    await Deno.remove(state, { recursive: true });
  }
});
