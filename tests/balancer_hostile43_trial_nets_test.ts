/**
 * hostile43a A14: A6 over networks. c43's A6 fix (ecb54e9) ranks an IPv4
 * /24's untried workers behind other networks' once it has failed more
 * than two trials; fakes that each come from a fresh /24 (a botnet or a
 * large cloud tenant in IPv4; any /48 in IPv6, which networkOf does not
 * group at all) are again always the newest untried of rank 0, and take
 * every trial. A6's test (fresh addresses of one /24) passes on c43 with
 * first tasks in 1-3 s; this one, on c43: "realw1 none, realw2 none,
 * realw3 none; 211 fakes", then "realw1 none, realw2 2023 ms, realw3
 * 1020 ms".
 *
 * A user checks that each of three real workers registering among them
 * gets its first task within a few seconds.
 */
import assert from "node:assert/strict";
import type net from "node:net";
import type { Peer } from "../wire/mod.ts";
import { backendsOf, connectTo, startBalancer, startServers, stopAll } from "./helpers/balancer.ts";
import { sleep } from "./helpers/raw.ts";
import { fakeWorker, realWorker } from "./helpers/source_workers.ts";

Deno.test("real workers get their first task while fakes from fresh /24 networks keep registering after them", async () => {
  const servers = await startServers(1);
  const lb = await startBalancer(servers);
  const client = await connectTo(lb.address, 10_000);
  const fakes: net.Socket[] = [];
  const reals: Peer[] = [];
  let stop = false;
  let traffic: Promise<unknown> | undefined;
  let flood: Promise<unknown> | undefined;
  try {
    assert.equal(await client.call("add", { a: 1, b: 1 }), 2);
    traffic = Promise.all(Array.from({ length: 8 }, async (_, k) => {
      for (let i = 0; !stop; i++) assert.equal(await client.call("add", { a: i, b: k }), i + k);
    }));
    // A fresh fake every 50 ms, each of its own /24, answering health checks only.
    flood = (async () => {
      for (let i = 1; !stop && i <= 400; i++) {
        const from = `127.${10 + (i >> 8)}.${i & 255}.1`;
        await fakeWorker(lb.workerAddress, from, `fake${i}`, fakes, true);
        await sleep(50);
      }
    })();
    await sleep(3_000);
    const joined = new Map<string, number>();
    const first = new Map<string, number>();
    for (let r = 1; r <= 3; r++) {
      reals.push(await realWorker(lb.workerAddress, `realw${r}`));
      joined.set(`realw${r}`, performance.now());
      await sleep(1_000);
    }
    const end = performance.now() + 6_000;
    while (performance.now() < end && first.size < 3) {
      for (const b of await backendsOf(client)) {
        if (joined.has(b.name) && !first.has(b.name) && b.served > 0) {
          first.set(b.name, performance.now() - joined.get(b.name)!);
        }
      }
      await sleep(100);
    }
    const waits = [...joined.keys()].map((n) =>
      `${n} ${first.has(n) ? `${Math.round(first.get(n)!)} ms` : "none"}`
    );
    const summary = `first tasks: ${waits.join(", ")}; ${fakes.length} fakes; load ${
      Deno.loadavg()[0]
    }`;
    console.log(summary);
    assert.ok(
      [...joined.keys()].every((n) => (first.get(n) ?? Infinity) < 4_000),
      `every real worker served within 4 s of joining (${summary})`,
    );
  } finally {
    stop = true;
    await flood;
    await traffic;
    client.close();
    for (const r of reals) r.close();
    for (const f of fakes) f.destroy();
    await sleep(10);
    await stopAll([lb, ...servers]);
  }
});
