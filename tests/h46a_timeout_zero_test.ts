/**
 * hostile46a G3: `dist balancer --timeout 0` is bad input, not a balancer
 * that fails what it forwards. It was taken as a 0 ms wait for each answer:
 * 18 of 20 `sleep 5` calls through it failed `TIMEOUT` ("did not answer
 * within 0 ms"), and with `--timeout 1ms` 20 of 20, from healthy servers.
 * `--check-interval` has a floor for the same reason (hostile44c H-C7).
 * Either answer is right: refused (exit 2, `dist: --timeout …`), or 0
 * taken as "no timeout" (HAProxy's `timeout server 0`) and every call
 * answered.
 */
import assert from "node:assert/strict";
import type { Peer } from "../wire/mod.ts";
import { runDist } from "./helpers/dist.ts";
import { connectTo, startBalancer, startServers, stopAll } from "./helpers/balancer.ts";

for (const value of ["0"]) {
  Deno.test(`balancer --timeout ${value}: refused, or every call through it answered (hostile46a G3)`, async () => {
    const servers = await startServers(2);
    try {
      const args = ["--port", "0", "--worker-port", "0", "--backends", servers[0].address];
      const run = await runDist(["balancer", ...args, "--timeout", value], { timeoutMs: 4000 });
      if (!run.timedOut) {
        assert.equal(run.code, 2, run.stderr);
        assert.match(run.stderr, /^dist: .*--timeout/m);
        return;
      }
      const lb = await startBalancer(servers, ["--timeout", value]);
      let client: Peer | undefined;
      try {
        client = await connectTo(lb.address);
        const failed: string[] = [];
        for (let i = 0; i < 20; i++) {
          try {
            await client.call("sleep", { ms: 5 });
          } catch (err) {
            failed.push((err as { code?: string }).code ?? String(err));
          }
        }
        assert.deepEqual(failed, [], `calls failed through --timeout ${value}`);
      } finally {
        client?.close();
        await stopAll([lb]);
      }
    } finally {
      await stopAll(servers);
    }
  });
}
