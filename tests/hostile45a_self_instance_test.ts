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
 * The same between two balancers of one service (an HA pair on one
 * binder): each port registered under 8 spellings, a request bounces
 * A → B → A … (31,064 → 2,470 calls in 2 s); a balancer that only knew
 * itself would still bounce its requests off the other.
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

/** Registers each of `ports` at `binder` as instances of compute, under `n` spellings of 127.0.0.1. */
async function registerSpellings(binder: string, ports: number[], n: number): Promise<void> {
  const mallory = await binderConn(binder);
  try {
    for (const port of ports) {
      for (let i = 0; i < n; i++) {
        const host = i === 0 ? "127.0.0.1" : `0x${"0".repeat(i - 1)}7f000001`;
        await mallory.call("binder.register", { service: "compute", host, port, ttl_ms: 600_000 });
      }
    }
  } finally {
    mallory.close();
  }
}

const portOf = (address: string) => Number(address.split(":")[1]);

Deno.test("instances a stranger registers at the balancer's own port do not loop its requests (hostile45a K-A5)", async () => {
  const binder = await startDist(["binder", "--port", "0"]);
  const real = await startService("compute", binder.address, ["--name", "real"]);
  const lb = await startBalancer([], ["--service", "compute", "--binders", binder.address]);
  const client = await connectTo(lb.address, 10_000);
  try {
    await rate(client, 1000); // warm
    const before = await rate(client, 2000);
    await registerSpellings(binder.address, [portOf(lb.address)], 16);
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

Deno.test("two balancers of one service named as each other's instances do not bounce requests (hostile45a K-A5)", async () => {
  const binder = await startDist(["binder", "--port", "0"]);
  const real = await startService("compute", binder.address, ["--name", "real"]);
  const a = await startBalancer([], ["--service", "compute", "--binders", binder.address]);
  const b = await startBalancer([], ["--service", "compute", "--binders", binder.address]);
  const client = await connectTo(a.address, 10_000);
  try {
    await rate(client, 1000); // warm
    const before = await rate(client, 2000);
    await registerSpellings(binder.address, [portOf(a.address), portOf(b.address)], 8);
    await sleep(3000);
    await rate(client, 1000);
    const after = await rate(client, 2000);
    const view = await backendsOf(client);
    const balancers = view.filter((x) => x.peer.startsWith("balancer"));
    const summary =
      `calls in 2 s through A: ${before} before, ${after} after; ${balancers.length} of ` +
      `A's ${view.length} backends are balancers, serving ${
        balancers.reduce((s, x) => s + x.served, 0)
      }; load ${Deno.loadavg()[0]}`;
    console.log(summary);
    assert.ok(after >= 0.3 * before, `the rate stays (${summary})`);
  } finally {
    client.close();
    await stopAll([a, b, real, binder]);
  }
});
