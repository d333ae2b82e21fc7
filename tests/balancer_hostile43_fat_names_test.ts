/**
 * hostile43a A10: `balancer.backends` is one frame, and a worker's name may
 * be any 200 characters (clients/contracts/balancer.ts), control
 * characters included, each written as a 6-byte escape in JSON (its hello
 * name, in `peer`, too). 600 workers so named — no credential needed by
 * default, `--max-workers` is 1,000 — push the listing past `--max-frame`
 * (1 MiB): every `balancer.backends`, the operator's view of the pool,
 * then fails "Answer too large to send" (1,000 such: 2.2 MB).
 *
 * A user checks that `balancer.backends` still answers.
 */
import assert from "node:assert/strict";
import type net from "node:net";
import { connectTo, startBalancer, startServers, stopAll } from "./helpers/balancer.ts";
import { sleep } from "./helpers/raw.ts";
import { fakeWorker } from "./helpers/source_workers.ts";

Deno.test("balancer.backends still answers beside 600 workers with 200-character names of control characters", async () => {
  const servers = await startServers(1);
  const lb = await startBalancer(servers, ["--check-interval", "1s"]);
  const client = await connectTo(lb.address, 10_000);
  const fakes: net.Socket[] = [];
  let registered = 0;
  try {
    for (let i = 0; i < 600; i += 50) {
      const answers = await Promise.all(Array.from({ length: 50 }, (_, k) => {
        const id = String(i + k);
        const name = "\u0001".repeat(200 - id.length) + id;
        return fakeWorker(lb.workerAddress, `127.0.8.${1 + (i + k) % 200}`, name, fakes, true);
      }));
      // Refused (such a name is no name) or registered: either way the listing must answer.
      assert.ok(answers.every((a) => a === "registered" || a === "BAD_REQUEST"), answers.join(","));
      registered += answers.filter((a) => a === "registered").length;
    }
    await sleep(500);
    const list = await client.call("balancer.backends").then(
      (l) => `${(l as unknown[]).length} backends`,
      (e) => `${e.code}: ${e.message}`,
    );
    console.log(`balancer.backends: ${list}`);
    assert.equal(list, `${1 + registered} backends`);
  } finally {
    client.close();
    for (const f of fakes) f.destroy();
    await sleep(10);
    await stopAll([lb, ...servers]);
  }
});
