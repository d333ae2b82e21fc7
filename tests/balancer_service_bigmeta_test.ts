/**
 * `balancer --service` for a service whose list is too large for one frame
 * (hostile36 J6): 300 registrations with 4 KB of meta each make
 * `binder.watch` answer FRAME_TOO_LARGE; the discovery pages the list with
 * `binder.list` instead, so a balancer started after them still finds the
 * real server among them and serves through it, and one watching from before
 * is told (`binder.too_large`) and pages too, so a server registered later
 * reaches both.
 */
import assert from "node:assert/strict";
import { startDist } from "./helpers/dist.ts";
import { backendsOf, connectTo, eventually, startBalancer, stopAll } from "./helpers/balancer.ts";
import { connectTo as binderConn, startService } from "./helpers/binder.ts";
import type { Peer } from "../wire/mod.ts";

const isUp = async (peer: Peer, name: string) =>
  (await backendsOf(peer)).some((b) => b.peer === name && b.state === "up");

Deno.test("balancer --service: a list too large to watch is paged; balancers started before and after serve", async () => {
  // 40,000 instances at most: 400 a source, so one connection may register 300.
  const binder = await startDist(["binder", "--port", "0", "--max-instances", "40000"]);
  const server = await startService("compute", binder.address, ["--name", "real"]);
  const flags = ["--service", "compute", "--binders", binder.address, "--max-backends", "1000"];
  const old = await startBalancer([], flags);
  const oldPeer = await connectTo(old.address);
  const mallory = await binderConn(binder.address);
  let lb, peer, late;
  try {
    await eventually(() => isUp(oldPeer, "real"), 10_000, "real up on the old balancer");
    for (let i = 0; i < 300; i++) {
      await mallory.call("binder.register", {
        service: "compute",
        host: "127.255.255.254",
        port: 1024 + i,
        ttl_ms: 600_000,
        meta: { note: "m".repeat(4000) },
      });
    }
    await assert.rejects(
      mallory.call("binder.watch", { service: "compute" }),
      (err: unknown) => (err as { code?: string }).code === "FRAME_TOO_LARGE",
    );
    lb = await startBalancer([], flags);
    peer = await connectTo(lb.address);
    const p = peer;
    await eventually(() => isUp(p, "real"), 20_000, "real up on the new balancer");
    for (let i = 0; i < 4; i++) {
      assert.equal((await peer.request("echo", { text: "x" })).by, "real");
    }
    assert.match(lb.stderr(), /too large for one frame/);
    // A server registered now reaches both: the old balancer's watch was ended and it pages too.
    late = await startService("compute", binder.address, ["--name", "late"]);
    await eventually(() => isUp(p, "late"), 20_000, "late up on the new balancer");
    await eventually(() => isUp(oldPeer, "late"), 20_000, "late up on the old balancer");
    assert.match(old.stderr(), /too large for one frame/);
  } finally {
    mallory.close();
    peer?.close();
    oldPeer.close();
    await stopAll([lb, old, late, server, binder]);
  }
});
