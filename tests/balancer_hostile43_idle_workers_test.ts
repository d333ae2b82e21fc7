/**
 * hostile43a A9: every request walks every backend while untried workers
 * are registered. policies.ts `Guarded.pick` asks the policy first; when
 * its pick is untried (with 1,000 idle fakes beside one server, almost
 * every pick of the rotation), it loops over the whole list to collect the
 * proven ones, then asks the policy again among those. So 1,000 workers
 * that registered and answer health checks, and were never sent anything
 * (`--max-workers`' default, from 200 addresses, no credential), raised
 * the balancer's CPU per forwarded request from 2.9-3.4 us to 14.7-20.4 us
 * and cut a c=32 client from 77-123k to 16-27k calls a second
 * (hostile43a-scripts/many_untried.ts 0|1000 32 5, alternated under
 * bench.lock, load 15-18).
 *
 * A user checks the client's throughput before and after the idle workers
 * came, in one run.
 */
import assert from "node:assert/strict";
import type net from "node:net";
import { connectTo, startBalancer, startServers, stopAll } from "./helpers/balancer.ts";
import { sleep } from "./helpers/raw.ts";
import { fakeWorker } from "./helpers/source_workers.ts";
import type { Peer } from "../wire/mod.ts";

/** Calls a second of `c` closed-loop `add` callers over `ms`. */
async function rate(client: Peer, c: number, ms: number): Promise<number> {
  let ok = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: c }, async (_, k) => {
    while (performance.now() - t0 < ms) {
      await client.call("add", { a: k, b: 1 });
      ok++;
    }
  }));
  return ok / ((performance.now() - t0) / 1000);
}

Deno.test("1,000 idle registered workers do not cut a client's throughput through the balancer", async () => {
  const servers = await startServers(1);
  const lb = await startBalancer(servers, ["--check-interval", "1s"]);
  const client = await connectTo(lb.address, 10_000);
  const fakes: net.Socket[] = [];
  try {
    await rate(client, 32, 500); // warm-up
    const alone = await rate(client, 32, 3000);
    for (let i = 0; i < 1000; i += 50) {
      const answers = await Promise.all(Array.from(
        { length: 50 },
        (_, k) =>
          fakeWorker(lb.workerAddress, `127.0.7.${1 + (i + k) % 200}`, `idle${i + k}`, fakes, true),
      ));
      assert.ok(answers.every((a) => a === "registered"), answers.join(","));
    }
    await sleep(1500);
    const beside = await rate(client, 32, 3000);
    const summary = `alone ${alone.toFixed(0)} calls/s, beside 1,000 idle workers ${
      beside.toFixed(0)
    } (${(beside / alone).toFixed(2)}x); load ${Deno.loadavg()[0]}`;
    console.log(summary);
    // Before A9's fix 0.21x (0.02x at load 12). Beside them a pick is made per request (a pool
    // past 16 has no runs), so the ratio moves with how fast the client runs alone: at load
    // 1.6-2.0, 0.75-0.91x on stop 43's code (alone 69-87k/s), 0.50-0.94x on stop 44's (alone
    // 51-114k/s, beside 33-84k/s): 0.6 failed 1 CI run in 4 on either; the bound is 0.45.
    assert.ok(beside >= 0.45 * alone, summary);
  } finally {
    client.close();
    for (const f of fakes) f.destroy();
    await sleep(10);
    await stopAll([lb, ...servers]);
  }
});
