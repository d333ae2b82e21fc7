/**
 * One topology over two machines: two launchers of one file, `--on
 * 127.0.0.1` and `--on 127.0.0.2` (both loopback on Linux), each starting
 * the instances placed on its host and waiting for the other's servers,
 * form one working cluster.
 */
import assert from "node:assert/strict";
import { freePortOn } from "./helpers/dist.ts";
import { assertGone, linesOf, startUp, topologyFile } from "./helpers/up.ts";

const SECOND = freePortOn("127.0.0.2");

Deno.test({
  name: SECOND === undefined
    ? "two launchers --on two hosts form one cluster (skipped: 127.0.0.2 cannot be bound here)"
    : "two launchers --on two hosts form one cluster",
  ignore: SECOND === undefined,
  async fn() {
    const file = await topologyFile([
      "[[server]]",
      'name = "alpha"',
      'host = "127.0.0.1"',
      `port = ${freePortOn("127.0.0.1")}`,
      "[[server]]",
      'name = "beta"',
      'host = "127.0.0.2"',
      `port = ${SECOND}`,
      "[[client]]",
      'name = "to-beta"',
      'host = "127.0.0.1"',
      'connect = "beta"',
      "random = 5",
      "json = true",
      "[[client]]",
      'name = "to-alpha"',
      'host = "127.0.0.2"',
      'connect = "alpha"',
      "random = 5",
      "json = true",
    ].join("\n"));
    // The second launcher starts first: its client waits for alpha.
    const b = startUp([file, "--on", "127.0.0.2", "--duration", "8s"]);
    const a = startUp([file, "--on", "127.0.0.1", "--duration", "8s"]);
    try {
      const [ra, rb] = await Promise.all([a.exited(30_000), b.exited(30_000)]);
      assert.equal(ra.code, 0, ra.stdout + ra.stderr);
      assert.equal(rb.code, 0, rb.stdout + rb.stderr);
      assert.match(rb.stdout, /Waiting for alpha at 127\.0\.0\.1:\d+ \(another host\)/);
      assert.match(ra.stdout, /Starting 2 instances of .* on 127\.0\.0\.1/);
      assert.doesNotMatch(ra.stdout, /^(dist up: beta started|beta +\|)/m);
      assert.doesNotMatch(rb.stdout, /^(dist up: alpha started|alpha +\|)/m);
      for (
        const [out, client, server] of [[ra.stdout, "to-beta", "beta"], [
          rb.stdout,
          "to-alpha",
          "alpha",
        ]]
      ) {
        const summary = JSON.parse(linesOf(out, client).at(-1)!);
        assert.deepEqual(summary, { summary: { ok: 5, errors: 0, by: { [server]: 5 } } }, out);
      }
      await assertGone([...a.pids(), ...b.pids()]);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
      await Deno.remove(file);
    }
  },
});
