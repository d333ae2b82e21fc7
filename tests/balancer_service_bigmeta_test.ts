/**
 * `balancer --service` for a service whose list is too large for one frame
 * (hostile36 J6): 300 registrations with 4 KB of meta each make
 * `binder.watch` answer FRAME_TOO_LARGE; the discovery pages the list with
 * `binder.list` instead, so a balancer started after them still finds the
 * real server among them and serves through it.
 */
import assert from "node:assert/strict";
import { startDist } from "./helpers/dist.ts";
import { backendsOf, connectTo, eventually, startBalancer, stopAll } from "./helpers/balancer.ts";
import { connectTo as binderConn, startService } from "./helpers/binder.ts";

Deno.test("balancer --service started after a list too large to watch pages it and serves", async () => {
  // 40,000 instances at most: 400 a source, so one connection may register 300.
  const binder = await startDist(["binder", "--port", "0", "--max-instances", "40000"]);
  const server = await startService("compute", binder.address, ["--name", "real"]);
  const mallory = await binderConn(binder.address);
  let lb;
  let peer;
  try {
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
    lb = await startBalancer([], ["--service", "compute", "--binders", binder.address]);
    peer = await connectTo(lb.address);
    const p = peer;
    await eventually(
      async () => (await backendsOf(p)).some((b) => b.peer === "real" && b.state === "up"),
      20_000,
      "the real server up",
    );
    for (let i = 0; i < 4; i++) {
      assert.equal((await peer.request("echo", { text: "x" })).by, "real");
    }
    assert.match(lb.stderr(), /too large for one frame/);
  } finally {
    mallory.close();
    peer?.close();
    await stopAll([lb, server, binder]);
  }
});
