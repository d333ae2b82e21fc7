/**
 * review45 R3 (f2b9a42, hostile45a K-A2's fix): only a server of
 * `--backends` may now be the sound witness that lifts the half-of-the-pool
 * ejection cap. A `--service` balancer has no such server: every backend is
 * a binder's instance. So hostile43a A4 is back there: four instances that
 * answer one request each, then hold every request, beside one real server
 * (all registered at the service's binder: anyone may). Two of them are
 * out, the cap keeps the other two in for good, and every client call
 * placed on them is a TIMEOUT, while the real server answers in a
 * millisecond. Before f2b9a42 the real server (an instance) was the
 * witness, and the client's calls stopped failing.
 */
import assert from "node:assert/strict";
import type { DistError } from "../wire/mod.ts";
import { listen, type Listener } from "../wire/mod.ts";
import { connectTo, startBalancer, stopAll } from "./helpers/balancer.ts";
import { connectTo as binderConn, startService } from "./helpers/binder.ts";
import { startDist } from "./helpers/dist.ts";
import { sleep } from "./helpers/raw.ts";

/** An instance that answers its first `add` and then holds every request but pings. */
function provenThenHolding(name: string): Listener {
  let answered = 0;
  return listen({
    port: 0,
    role: "server",
    name,
    by: name,
    onRequest: (method, params) => {
      if (method === "sys.ping") return { pong: true };
      if (answered++ === 0) {
        const p = params as { a: number; b: number };
        return p.a + p.b;
      }
      return new Promise(() => {});
    },
  });
}

Deno.test("review45 R3: in a --service pool, instances that answered once and now hold every request stop failing a client's calls (hostile43a A4)", async () => {
  const binder = await startDist(["binder", "--port", "0"]);
  const server = await startService("compute", binder.address);
  const balancer = await startBalancer([], [
    "--service",
    "compute",
    "--binders",
    binder.address,
    "--timeout",
    "1s",
  ]);
  const fakes: Listener[] = [];
  const client = await connectTo(balancer.address, 10_000);
  let stop = false;
  try {
    // The real server first serves, as in a running cluster.
    for (let i = 0; i < 20; i++) {
      assert.equal(await client.call("add", { a: i, b: 1 }, { timeout: 10_000 }), i + 1);
    }
    const mallory = await binderConn(binder.address);
    for (let i = 1; i <= 4; i++) {
      const fake = provenThenHolding(`fake${i}`);
      fakes.push(fake);
      await mallory.call("binder.register", {
        service: "compute",
        host: "127.0.0.1",
        port: fake.addr.port,
        ttl_ms: 600_000,
      });
    }
    mallory.close();
    const failedAt: number[] = [];
    const codes = new Map<string, number>();
    let ok = 0;
    const t0 = performance.now();
    const loops = Array.from({ length: 8 }, async (_, i) => {
      while (!stop) {
        try {
          await client.call("add", { a: i, b: 1 }, { timeout: 10_000 });
          ok++;
        } catch (err) {
          failedAt.push(performance.now() - t0);
          const code = String((err as DistError).code);
          codes.set(code, (codes.get(code) ?? 0) + 1);
        }
      }
    });
    // 10 s for every fake to be dialed and found out, then 6 s.
    await sleep(16_000);
    stop = true;
    await Promise.all(loops);
    const late = failedAt.filter((t) => t >= 10_000).length;
    const summary = `${ok} ok, ${failedAt.length} failed (${
      JSON.stringify([...codes])
    }), ${late} of them in the last 6 s; load ${Deno.loadavg()[0]}`;
    console.log(summary);
    assert.ok(late <= 8, `the client's calls stop failing (${summary})`);
  } finally {
    stop = true;
    client.close();
    for (const f of fakes) await f.close(0);
    await stopAll([balancer, server, binder]);
  }
});
