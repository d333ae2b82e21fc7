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
import { withHungInstance } from "./helpers/hung_instance.ts";

Deno.test("h47 Q2: dist status does not call a hung instance's own port taken by another process", () =>
  withHungInstance("dist-h47-q2-", async ({ pid, status }) => {
    const { row, stdout } = await status();
    assert.equal(row.pid, pid, stdout);
    assert.notEqual(
      row.state,
      "taken",
      `dist status calls the instance's own hung process another process on its port: ${stdout}`,
    );
  }));
