/**
 * hostile46a G2: under `dist balancer --threads N` a dial-in worker served
 * only the thread that accepted its connection: with `--threads 2`, no
 * `--backends` and one `dist worker`, every call of the clients the kernel
 * gave to the other thread failed `UNAVAILABLE` (16 of 24 connections in one
 * run) while the worker sat idle. Now thread 0 alone takes workers and
 * `--threads` needs servers (`--backends` or `--service`) for the others'
 * clients: without them it is refused (exit 2); with them, beside a dial-in
 * worker, every client of both threads is served.
 */
import assert from "node:assert/strict";
import type { Peer } from "../wire/mod.ts";
import { runDist } from "./helpers/dist.ts";
import {
  connectTo,
  eventually,
  startBalancer,
  startServers,
  startWorker,
  stopAll,
} from "./helpers/balancer.ts";

Deno.test("balancer --threads 2 with no servers is refused: dial-in workers serve thread 0 only (hostile46a G2)", async () => {
  const run = await runDist(["balancer", "--port", "0", "--worker-port", "0", "--threads", "2"], {
    timeoutMs: 10_000,
  });
  assert.equal(run.code, 2, run.stderr);
  assert.match(run.stderr, /^dist: --threads applies with --backends or --service/m);
});

Deno.test("balancer --threads 2 with a server and a dial-in worker: clients of both threads are served (hostile46a G2)", async () => {
  const servers = await startServers(1);
  const lb = await startBalancer(servers, ["--threads", "2", "--queue-timeout", "1s"]);
  await eventually(
    () => Promise.resolve(lb.stderr().includes("Accepting on 2 threads")),
    10_000,
    "both threads accepting",
  );
  const worker = await startWorker(lb.workerAddress, ["--name", "w1"]);
  const peers: Peer[] = [];
  try {
    // 24 connections: all on one thread is a 2^-23 chance.
    for (let i = 0; i < 24; i++) peers.push(await connectTo(lb.address));
    const outcomes = await Promise.all(peers.map(async (p, i) => {
      const { thread } = await p.call("sys.stats") as { thread: number };
      try {
        assert.equal(await p.call("add", { a: i, b: 1 }), i + 1);
        return `thread ${thread}: ok`;
      } catch (err) {
        return `thread ${thread}: ${(err as { code?: string }).code ?? err}`;
      }
    }));
    const failed = outcomes.filter((o) => !o.endsWith(": ok"));
    const threads = new Set(outcomes.map((o) => o.split(":")[0]));
    assert.equal(threads.size, 2, `both threads took clients: ${[...threads]}`);
    assert.equal(failed.length, 0, `calls failed beside a live worker: ${JSON.stringify(failed)}`);
  } finally {
    for (const p of peers) p.close();
    await worker.stop();
    await stopAll([lb, ...servers]);
  }
});
