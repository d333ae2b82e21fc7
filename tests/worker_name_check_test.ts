/**
 * hostile46a G4, G6: a worker name no balancer takes is refused where it is
 * given (`dist worker --name`: `dist: …`, exit 2; it retried for ever), and
 * names with invisible format characters (zero-width space and joiners, word
 * joiner, BOM) are refused at the worker port: `w1` + U+200B registered beside
 * the live `w1` and printed as `w1` in balancer.backends and the log.
 */
import assert from "node:assert/strict";
import { dial, DistError } from "../wire/mod.ts";
import { runDist } from "./helpers/dist.ts";
import { startBalancer, startServers, stopAll } from "./helpers/balancer.ts";

Deno.test("dist worker --name that no balancer takes: dist: …, exit 2", async () => {
  for (const name of ["", "a\tb", "w1\u200b", "x".repeat(201)]) {
    const run = await runDist(["worker", "--balancer", "127.0.0.1:9", "--name", name], {
      timeoutMs: 10_000,
    });
    assert.equal(run.code, 2, `${JSON.stringify(name)}: ${run.stderr}`);
    assert.match(run.stderr, /^dist: --name .*: worker\.register: name must be/m);
  }
});

Deno.test("worker.register refuses names with invisible format characters", async () => {
  const servers = await startServers(1);
  const lb = await startBalancer(servers, []);
  try {
    const [host, port] = lb.workerAddress.split(":");
    for (const name of ["w1\u200b", "w\u200d1", "w\u20601", "w1\ufeff", "w\u00ad1"]) {
      const peer = await dial({ host, port: Number(port) }, { role: "worker", name: "w" });
      try {
        await assert.rejects(
          peer.call("worker.register", { name, capacity: 1 }),
          (err: unknown) => err instanceof DistError && err.code === "BAD_REQUEST",
          JSON.stringify(name),
        );
      } finally {
        peer.close();
      }
    }
  } finally {
    await stopAll([lb, ...servers]);
  }
});
