/**
 * hostile43a A13: a timeout is judged by replaying the request on another
 * backend with room (verify.ts); failed there too, "it is the request's
 * fault and counts against neither". With two or more fakes that answered
 * once (proven) and then hold every task, the replay of one fake's timeout
 * lands on another fake, times out too, and clears both: at a low request
 * rate (too few outcomes for the success-rate rules) no fake is ever out,
 * and every call that reaches one fails TIMEOUT after twice `--timeout`.
 * Four such fakes beside one server, one call every 0.5 s, `--timeout 1s`:
 * 6-7 of the last 10 calls failed "TIMEOUT" in ~2,000 ms, all four fakes
 * still up after 30 s (main, and c43 with A4's fix).
 *
 * A user checks that once the fakes have had time to be found out, a
 * client calling now and then stops failing: the server answers in 1 ms.
 */
import assert from "node:assert/strict";
import type net from "node:net";
import { backendsOf, connectTo, startBalancer, startServers, stopAll } from "./helpers/balancer.ts";
import { sleep } from "./helpers/raw.ts";
import { provenThenHolding } from "./helpers/hostile43.ts";

Deno.test("a client calling now and then stops failing once fakes that answered once and hold every task were tried", async () => {
  const servers = await startServers(1);
  const lb = await startBalancer(servers, ["--timeout", "500ms"]);
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
  } finally {
    client.close();
    for (const f of fakes) f.destroy();
    await sleep(10);
    await stopAll([lb, ...servers]);
  }
});
