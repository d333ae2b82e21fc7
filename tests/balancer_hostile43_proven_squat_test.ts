/**
 * hostile43a A3: `--max-workers` displacement (worker_sources.ts
 * `displaced`) only ever takes the place of a worker that has served
 * nothing. Fakes that answer one task each (their trial, a real result in
 * 1 ms), then hold every task they are sent and answer only health checks,
 * are "proven": timed out again and again they are out of rotation with a
 * growing backoff, but keep their slots for as long as they stay
 * connected, and a real worker is refused OVERLOADED for good.
 *
 * hostile43a A12: the same over several sources. Displacement took a place
 * only from a source holding more than a quarter of the slots, so such fakes
 * from four addresses, one slot each, kept every slot (A3's first fix passed
 * the one-source case in 8.6 s and left this one refused after 13.2 s).
 *
 * A user checks that a real worker gets a slot while every registered one
 * has done nothing but time out for many seconds.
 */
import assert from "node:assert/strict";
import type net from "node:net";
import type { DistError, Peer } from "../wire/mod.ts";
import { backendsOf, connectTo, startBalancer, startServers, stopAll } from "./helpers/balancer.ts";
import { sleep } from "./helpers/raw.ts";
import { provenThenHolding } from "./helpers/hostile43.ts";
import { realWorker } from "./helpers/source_workers.ts";

for (const spread of [false, true]) {
  Deno.test(`fakes${spread ? " of four addresses" : ""} that served one task each, then hold every task, do not keep every --max-workers slot from a real worker for good`, async () => {
    const servers = await startServers(1);
    const lb = await startBalancer(servers, ["--max-workers", "4", "--timeout", "500ms"]);
    const client = await connectTo(lb.address, 10_000);
    const fakes: net.Socket[] = [];
    let real: Peer | undefined;
    let calls = 0;
    let stopTraffic = false;
    try {
      assert.equal(await client.call("add", { a: 1, b: 1 }), 2);
      for (let i = 1; i <= 4; i++) {
        assert.equal(
          await provenThenHolding(
            lb.workerAddress,
            spread ? `127.0.0.${1 + i}` : "127.0.0.2",
            `fake${i}`,
            fakes,
          ),
          "registered",
        );
      }
      // Client traffic (any client's, or the attacker's own): each fake's trial proves it.
      const traffic = (async () => {
        while (!stopTraffic) {
          await Promise.all(
            Array.from({ length: 8 }, (_, i) => client.call("add", { a: i, b: 1 }).catch(() => 0)),
          );
          calls += 8;
        }
      })();
      const deadline = performance.now() + 8000;
      let served: number[] = [];
      while (performance.now() < deadline) {
        served = (await backendsOf(client)).filter((b) => b.name.startsWith("fake")).map((b) =>
          (b as unknown as { served: number }).served
        );
        if (served.length === 4 && served.every((n) => n > 0)) break;
        await sleep(200);
      }
      assert.ok(served.every((n) => n > 0), `every fake served once (${served})`);
      // From now on the fakes only hold what they get. A real worker tries, as `dist worker`
      // does (it retries), for 12 s.
      const t0 = performance.now();
      let last = "";
      while (performance.now() - t0 < 12_000 && real === undefined) {
        try {
          real = await realWorker(lb.workerAddress, "real");
        } catch (err) {
          last = `${(err as DistError).code}: ${(err as Error).message}`;
          await sleep(500);
        }
      }
      const view = (await backendsOf(client)).map((b) => `${b.name}:${b.state}`).join(", ");
      stopTraffic = true;
      await traffic;
      const summary = `after ${((performance.now() - t0) / 1000).toFixed(1)} s: ${
        real === undefined ? `refused (${last})` : "registered"
      }; backends ${view}; ${calls} client calls; load ${Deno.loadavg()[0]}`;
      console.log(summary);
      assert.ok(real !== undefined, `the real worker registered within 12 s (${summary})`);
    } finally {
      stopTraffic = true;
      client.close();
      real?.close();
      for (const f of fakes) f.destroy();
      await sleep(10);
      await stopAll([lb, ...servers]);
    }
  });
}
