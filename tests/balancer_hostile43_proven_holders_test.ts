/**
 * hostile43a A4: four fakes that answer one task each (a real result, so
 * they are proven), then hold every task, beside one real server. At most
 * half the pool may be out for its answers at once (outlier.ts), so two of
 * the fakes stay in rotation for as long as they stay connected, each
 * taking requests that time out; their timeouts are replayed only one at
 * a time per backend, and the rest reach the client as TIMEOUT, for good,
 * while the server answers every request it gets in a millisecond.
 *
 * A user checks that once the fakes have held requests for a while, the
 * client's calls stop failing: the server alone could answer them all (one
 * such fake: 1 failure in the last 6 s; four: 18 on main).
 */
import assert from "node:assert/strict";
import type net from "node:net";
import type { DistError } from "../wire/mod.ts";
import { connectTo, startBalancer, startServers, stopAll } from "./helpers/balancer.ts";
import { sleep } from "./helpers/raw.ts";
import { provenThenHolding } from "./helpers/hostile43.ts";

Deno.test("fakes that answered once and now hold every task stop failing a client's calls: the server answers them", async () => {
  const servers = await startServers(1);
  const lb = await startBalancer(servers, ["--timeout", "1s"]);
  const client = await connectTo(lb.address, 10_000);
  const fakes: net.Socket[] = [];
  let stop = false;
  const failedAt: number[] = [];
  let ok = 0;
  try {
    assert.equal(await client.call("add", { a: 1, b: 1 }), 2);
    for (let i = 1; i <= 4; i++) {
      assert.equal(
        await provenThenHolding(lb.workerAddress, "127.0.0.2", `fake${i}`, fakes),
        "registered",
      );
    }
    const t0 = performance.now();
    const codes = new Map<string, number>();
    const loops = Array.from({ length: 8 }, async (_, i) => {
      while (!stop) {
        try {
          await client.call("add", { a: i, b: 1 });
          ok++;
        } catch (err) {
          failedAt.push(performance.now() - t0);
          const code = String((err as DistError).code);
          codes.set(code, (codes.get(code) ?? 0) + 1);
        }
      }
    });
    // 8 s for every fake to be found out (each held requests for 1 s several times), then 6 s.
    await sleep(14_000);
    stop = true;
    await Promise.all(loops);
    const late = failedAt.filter((t) => t >= 8_000).length;
    const summary = `${ok} ok, ${failedAt.length} failed (${
      JSON.stringify([...codes])
    }), ${late} of them in the last 6 s; load ${Deno.loadavg()[0]}`;
    console.log(summary);
    // A fake whose backoff (10 s) ends in that window gets one request again and holds it: one
    // failure each, two at most (main: 18).
    assert.ok(late <= 8, `the client's calls stop failing (${summary})`);
  } finally {
    stop = true;
    client.close();
    for (const f of fakes) f.destroy();
    await sleep(10);
    await stopAll([lb, ...servers]);
  }
});
