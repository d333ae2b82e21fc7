/**
 * Which untried worker the trial slot goes to (policies.ts `nextTrial`):
 * hostile41a W4, the slot went to whichever the policy's cursor was on, so
 * a real worker joining beside fakes that answer health checks and hold
 * every task was one ticket among them, at about one trial a second (each
 * holds its trial for its bound), and waited 11.8 s beside 50 and over 57 s
 * beside 200. Fakes of one source wait together after its second failure
 * (balancer_trial_sources_test.ts); here each fake is of its own source.
 */
import assert from "node:assert/strict";
import type net from "node:net";
import type { Peer } from "../wire/mod.ts";
import { backendsOf, connectTo, startBalancer, startServers, stopAll } from "./helpers/balancer.ts";
import { sleep } from "./helpers/raw.ts";
import { fakeWorker, realWorker } from "./helpers/source_workers.ts";

Deno.test("a real worker joining beside 60 fakes of 60 sources has the next trial, not a ticket among them (hostile41a W4)", async () => {
  const servers = await startServers(1);
  const lb = await startBalancer(servers);
  const client = await connectTo(lb.address, 10_000);
  const fakes: net.Socket[] = [];
  let real: Peer | undefined;
  let stop = false;
  let traffic: Promise<unknown> | undefined;
  try {
    assert.equal(await client.call("add", { a: 1, b: 1 }), 2);
    for (let i = 1; i <= 60; i++) {
      assert.equal(
        await fakeWorker(lb.workerAddress, `127.0.4.${i}`, `fake${i}`, fakes, true),
        "registered",
      );
    }
    traffic = Promise.all(Array.from({ length: 8 }, async (_, k) => {
      for (let i = 0; !stop; i++) assert.equal(await client.call("add", { a: i, b: k }), i + k);
    }));
    // Two fakes have had their trial by now; 58 have not.
    await sleep(2_000);
    real = await realWorker(lb.workerAddress, "realw");
    const t0 = performance.now();
    let ms = -1;
    while (performance.now() - t0 < 8_000) {
      const b = (await backendsOf(client)).find((x) => x.name === "realw");
      if ((b?.served ?? 0) > 0) {
        ms = performance.now() - t0;
        break;
      }
      await sleep(100);
    }
    console.log(`realw's first task after ${ms < 0 ? "more than 8,000" : Math.round(ms)} ms`);
    // Before: one ticket among ~58 at a trial a second (11.8 s beside 50 in the reviewer's run).
    assert.ok(ms >= 0 && ms < 3_500, `realw's first task after ${Math.round(ms)} ms`);
  } finally {
    stop = true;
    await traffic;
    client.close();
    real?.close();
    for (const f of fakes) f.destroy();
    await sleep(10);
    await stopAll([lb, ...servers]);
  }
});
