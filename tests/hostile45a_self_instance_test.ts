/**
 * hostile45a K-A5: a `--service` balancer dials any address a binder names
 * (roles/balancer/sources.ts), and a binder takes `binder.register` from
 * anyone by default. Registered at the balancer's own client port, an
 * "instance" is the balancer itself (its peer says `balancer-PID`): a
 * request sent there comes back in and is placed again, maybe on itself
 * again. One host name per instance, and there are as many spellings of
 * 127.0.0.1 as one likes (`0x7f000001`, `0x07f000001`, …): 32 of them cut an
 * honest client from 21,550 to 665–982 calls a second, each answer costing
 * the balancer a dozen forwards of itself (every instance "up", served
 * thousands). No credential, no traffic of the attacker's.
 *
 * A user checks that their client's rate through the balancer stays
 * about the same after a stranger registers addresses at the binder.
 */
import assert from "node:assert/strict";
import { backendsOf, connectTo, startBalancer, stopAll } from "./helpers/balancer.ts";
import { startDist } from "./helpers/dist.ts";
import { connectTo as binderConn, startService } from "./helpers/binder.ts";
import { sleep } from "./helpers/raw.ts";
import type { Peer } from "../wire/mod.ts";

/** Calls of `add` answered in `ms` by 8 loops on `peer`. */
async function rate(peer: Peer, ms: number): Promise<number> {
  let n = 0;
  const end = performance.now() + ms;
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (performance.now() < end) {
      await peer.call("add", { a: 1, b: 2 }, { timeout: 5000 }).then(() => n++, () => {});
    }
  }));
  return n;
}

Deno.test("instances a stranger registers at the balancer's own port do not loop its requests (hostile45a K-A5)", async () => {
  const binder = await startDist(["binder", "--port", "0"]);
  const real = await startService("compute", binder.address, ["--name", "real"]);
  const lb = await startBalancer([], ["--service", "compute", "--binders", binder.address]);
  const client = await connectTo(lb.address, 10_000);
  try {
    await rate(client, 1000); // warm
    const before = await rate(client, 2000);
    const port = Number(lb.address.split(":")[1]);
    const mallory = await binderConn(binder.address);
    for (let i = 0; i < 16; i++) {
      const host = i === 0 ? "127.0.0.1" : `0x${"0".repeat(i - 1)}7f000001`;
      await mallory.call("binder.register", { service: "compute", host, port, ttl_ms: 600_000 });
    }
    mallory.close();
    await sleep(3000);
    await rate(client, 1000);
    const after = await rate(client, 2000);
    const view = await backendsOf(client);
    const self = view.filter((b) => b.peer.startsWith("balancer"));
    const summary =
      `calls in 2 s: ${before} before, ${after} after; ${self.length} of ${view.length} ` +
      `backends are the balancer itself, ${
        self.filter((b) => b.state === "up").length
      } up, serving ${self.reduce((s, b) => s + b.served, 0)}; load ${Deno.loadavg()[0]}`;
    console.log(summary);
    assert.ok(after >= 0.3 * before, `the rate stays (${summary})`);
  } finally {
    client.close();
    await stopAll([lb, real, binder]);
  }
});
