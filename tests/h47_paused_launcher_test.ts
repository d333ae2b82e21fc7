/**
 * Hostile review h47 Q16 (high): a paused `dist up` (Ctrl-Z in its terminal:
 * SIGTSTP reaches only the launcher, since the children run in their own
 * process group; or SIGSTOP, a debugger) stops reading its children's
 * stdout and stderr pipes. Once a child has written a pipe's worth of lines
 * (64 KiB) its next log write blocks the whole process (`wchan`
 * `anon_pipe_write`): a server stops answering, a broker stops routing, a
 * consumer stops reading, though nothing is wrong with them. A server at
 * `log_level = "debug"` answered 847 requests and then nothing (timeouts,
 * then "No connection … within 2000 ms"). The launcher's own output does not
 * wait for its reader (README, dist up, Output); its children's output waits
 * for the launcher. docker compose's containers log to the daemon's log
 * driver, never through the `compose up` process; systemd's to journald.
 *
 * Expected: a paused launcher does not stop its instances from serving
 * (their lines are dropped and counted past a bound, or the launcher stops
 * and continues its children with itself, as a shell does a job).
 */
import assert from "node:assert/strict";
import { connect, ops } from "../clients/mod.ts";
import { freeRange, startUp, topologyFile } from "./helpers/up.ts";

Deno.test("h47 Q16: a paused dist up does not stop its chatty instances from serving", async () => {
  const port = freeRange(1);
  const file = await topologyFile(
    `[[server]]\nname = "chatty"\nport = ${port}\nlog_level = "debug"\n`,
  );
  const up = startUp([file, "--no-dashboard"]);
  let paused = false;
  try {
    await up.waitFor(/All 1 ready/);
    Deno.kill(up.child.pid, "SIGSTOP");
    paused = true;
    const conn = await connect(`127.0.0.1:${port}`);
    let ok = 0;
    let failed = 0;
    let last = "";
    const end = Date.now() + 12_000;
    // Each request logs a debug line of ~100 bytes: 64 KiB of pipe is some 650 of them.
    while (Date.now() < end && ok < 3000) {
      try {
        await conn.request(ops.methods.add, { a: 1, b: 2 }, { timeout: 1000 });
        ok++;
      } catch (err) {
        failed++;
        last = (err as Error).message;
        if (failed >= 3) break;
      }
    }
    conn.close();
    assert.equal(
      failed,
      0,
      `with its launcher paused the instance stopped answering after ${ok} requests (${last})`,
    );
  } finally {
    if (paused) Deno.kill(up.child.pid, "SIGCONT");
    await up.stop();
    await Deno.remove(file);
  }
});
