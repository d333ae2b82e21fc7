/**
 * review45's rest of the two-task name rule (workers.ts, hostile45a K-A4's
 * fix): with no users, a live worker's name, once it has served two tasks,
 * is not another address's to take while its health checks pass, so that
 * a client's slow requests (which take a real worker out) do not hand its
 * name to a stranger. A fake from another address that registers the name
 * first, serves two tasks and then holds every task it is sent is kept the
 * same way: out of rotation, it serves nobody, and `dist worker --name w1`
 * from the real address is refused "taken by a live worker" for as long
 * as the fake stays connected. A holder now keeps its name against another
 * address only while it shows it serves: answers in time within 10 s, late
 * answers to at least half of what failed on it, or a request of a method
 * it never answered in time that may still be running (slow_methods.ts).
 *
 * A user starts the real worker after the fake took its name and checks
 * that it gets the name within about 10 s of the fake's last answer.
 */
import assert from "node:assert/strict";
import type net from "node:net";
import type { DistError, Peer } from "../wire/mod.ts";
import { backendsOf, connectTo, startBalancer, startServers, stopAll } from "./helpers/balancer.ts";
import { sleep } from "./helpers/raw.ts";
import { provenThenHolding } from "./helpers/hostile43.ts";
import { realWorker } from "./helpers/source_workers.ts";

Deno.test("a fake from another address that served two tasks and then holds every task does not keep a real worker's name (review45, the two-task name rule)", async () => {
  const servers = await startServers(1);
  const lb = await startBalancer(servers, ["--timeout", "1s"]);
  const client = await connectTo(lb.address, 10_000);
  const sockets: net.Socket[] = [];
  let real: Peer | undefined;
  let stop = false;
  try {
    assert.equal(
      await provenThenHolding(lb.workerAddress, "127.0.0.9", "w1", sockets, 2),
      "registered",
    );
    // Client traffic: the fake serves its two tasks, then holds what it gets.
    const traffic = (async () => {
      while (!stop) {
        await Promise.all(
          Array.from({ length: 4 }, (_, i) => client.call("add", { a: i, b: 1 }).catch(() => 0)),
        );
      }
    })();
    const deadline = performance.now() + 8000;
    let served = 0;
    while (performance.now() < deadline && served < 2) {
      served = (await backendsOf(client)).find((b) => b.name === "w1")?.served ?? 0;
      await sleep(100);
    }
    assert.equal(served, 2, "the fake served two tasks");
    // The real w1, from 127.0.0.1, tries every 500 ms for 20 s, as `dist worker` retries.
    const t0 = performance.now();
    let last = "";
    while (performance.now() - t0 < 20_000 && real === undefined) {
      try {
        real = await realWorker(lb.workerAddress, "w1");
      } catch (err) {
        last = `${(err as DistError).code}: ${(err as Error).message}`;
        await sleep(500);
      }
    }
    const took = (performance.now() - t0) / 1000;
    const view = (await backendsOf(client)).map((b) => `${b.name}:${b.state}`).join(", ");
    stop = true;
    await traffic;
    const summary = `the real w1 ${
      real === undefined ? `refused for 20 s (${last})` : `registered after ${took.toFixed(1)} s`
    }; backends ${view}; load ${Deno.loadavg()[0]}`;
    console.log(summary);
    assert.ok(real !== undefined, `the real worker takes its name (${summary})`);
  } finally {
    stop = true;
    client.close();
    real?.close();
    for (const s of sockets) s.destroy();
    await stopAll([lb, ...servers]);
  }
});
