/**
 * hostile44a H-A5: a worker's answers carry a `by` of its choosing, and the
 * balancer passes it on as it came (wire/passthrough.ts copies its bytes):
 * neither bound to the name it registered under (a fake may answer as
 * `s1`, a server's name) nor kept printable. `dist client --random` prints
 * each outcome's `by` raw (roles/client/random.ts), and `--bench` its `by:`
 * line (_common.ts formatBy), so any worker that registers (no credential
 * by default) writes escape sequences to the terminal of every client user
 * whose requests it gets: roles/_printable.ts's rule ("no value, result or
 * message from another process may drive the user's terminal") holds for
 * results and messages, not for `by`. (A10's fix refused control characters
 * in worker names; `by` is another field.)
 *
 * A user runs `dist client --random` through the balancer and checks that
 * no escape or bell character reaches the terminal.
 */
import assert from "node:assert/strict";
import type net from "node:net";
import { startBalancer, stopAll } from "./helpers/balancer.ts";
import { runDist } from "./helpers/dist.ts";
import { registerLiar } from "./helpers/hostile44.ts";

Deno.test("a worker's `by` does not reach a client's terminal raw (hostile44a H-A5)", async () => {
  const balancer = await startBalancer([]);
  const sockets: net.Socket[] = [];
  try {
    const forged = "s1\u001b]0;PWNED\u0007\u001b[2J";
    assert.equal(
      await registerLiar(balancer.workerAddress, "forger", sockets, forged),
      "registered",
    );
    for (const args of [["--random", "4"], ["--bench", "--requests", "20"]]) {
      const run = await runDist(["client", "--connect", balancer.address, ...args], {
        timeoutMs: 20_000,
      });
      const out = run.stdout + run.stderr;
      console.log(`${args[0]}: ${JSON.stringify(out.slice(0, 300))}`);
      const raw = out.includes("\u001b") || out.includes("\u0007");
      assert.ok(!raw, `no escape from ${args[0]}: ${JSON.stringify(out)}`);
    }
  } finally {
    for (const s of sockets) s.destroy();
    await stopAll([balancer]);
  }
});
