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
 *
 * A13, the same at a low rate: a timed-out request is replayed on "another
 * backend with room" (verify.ts); failed there too, it was "the request's
 * fault and counts against neither". The replay of one fake's timeout
 * landed on another fake, timed out too, and cleared both: at one call
 * every 0.3-0.5 s (too few outcomes for the success-rate rules) no fake
 * was ever out, and 6-7 of the client's last 10 calls failed TIMEOUT after
 * twice `--timeout` (main, and c43 with A4's fix). A user checks that a
 * client calling now and then stops failing: the server answers in 1 ms.
 */
import assert from "node:assert/strict";
import type net from "node:net";
import type { DistError, Peer } from "../wire/mod.ts";
import { backendsOf, connectTo, startBalancer, startServers, stopAll } from "./helpers/balancer.ts";
import { sleep } from "./helpers/raw.ts";
import { provenThenHolding } from "./helpers/hostile43.ts";

/** One server, four such fakes from 127.0.0.2, `--timeout timeout`: `body` calls with `client`. */
async function besideFakes(timeout: string, body: (client: Peer) => Promise<void>) {
  const servers = await startServers(1);
  const lb = await startBalancer(servers, ["--timeout", timeout]);
  const client = await connectTo(lb.address, 10_000);
  const fakes: net.Socket[] = [];
  try {
    assert.equal(await client.call("add", { a: 1, b: 1 }), 2);
    for (let i = 1; i <= 4; i++) {
      assert.equal(
        await provenThenHolding(lb.workerAddress, "127.0.0.2", `fake${i}`, fakes),
        "registered",
      );
    }
    await body(client);
  } finally {
    client.close();
    for (const f of fakes) f.destroy();
    await sleep(10);
    await stopAll([lb, ...servers]);
  }
}

Deno.test("fakes that answered once and now hold every task stop failing a client's calls: the server answers them", () =>
  besideFakes("1s", async (client) => {
    let stop = false;
    const failedAt: number[] = [];
    let ok = 0;
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
  }));

Deno.test("a client calling now and then stops failing once fakes that answered once and hold every task were tried (hostile43a A13)", () =>
  besideFakes("500ms", async (client) => {
    const t0 = performance.now();
    const late: string[] = [];
    while (performance.now() - t0 < 20_000) {
      const t = performance.now();
      const r = await client.request("add", { a: 1, b: 2 }, { timeout: 30_000 }).then(
        (x) => `ok ${x.by}`,
        (e) => String(e.code),
      );
      if (performance.now() - t0 > 10_000) late.push(`${r} ${Math.round(performance.now() - t)}ms`);
      await sleep(300);
    }
    const failed = late.filter((r) => !r.startsWith("ok")).length;
    const view = (await backendsOf(client)).map((b) => `${b.name}:${b.state}`).join(" ");
    const summary =
      `last 10 s: ${failed} of ${late.length} failed (${late.join(", ")}); ${view}; ` +
      `load ${Deno.loadavg()[0]}`;
    console.log(summary);
    assert.ok(failed <= 2, summary);
  }));
