/**
 * `balancer --service` against a flood of dead instances in the binders
 * (hostile34 Z5): at most `--max-backends` are dialed, the servers already
 * dialed keep their places, the cap is said once (not per change), and a real
 * server registered after the flood gets the place of one that never
 * answered, which is reported to the binders (and removed there).
 */
import assert from "node:assert/strict";
import { startDist } from "./helpers/dist.ts";
import {
  backendsOf,
  type BackendView,
  connectTo,
  eventually,
  startBalancer,
  stopAll,
} from "./helpers/balancer.ts";
import { connectTo as binderConn, ids, startService } from "./helpers/binder.ts";

type View = BackendView & { source: string };

/** `binder.register`s of `n` instances of compute at addresses nothing answers on. */
async function flood(binder: string, n: number): Promise<void> {
  const mallory = await binderConn(binder);
  try {
    for (let i = 0; i < n; i++) {
      await mallory.call("binder.register", {
        service: "compute",
        host: "127.255.255.254",
        port: 1024 + i,
        ttl_ms: 600_000,
      });
    }
  } finally {
    mallory.close();
  }
}

Deno.test("balancer --service dials at most --max-backends instances; those up keep their places through a flood", async () => {
  const binder = await startDist(["binder", "--port", "0"]);
  const servers = await Promise.all(
    ["c1", "c2"].map((name) => startService("compute", binder.address, ["--name", name])),
  );
  const lb = await startBalancer([], [
    "--service",
    "compute",
    "--binders",
    binder.address,
    "--max-backends",
    "4",
  ]);
  const peer = await connectTo(lb.address);
  const up = async () =>
    (await backendsOf(peer)).filter((b) => b.state === "up").map((b) => b.peer).toSorted().join();
  try {
    await eventually(async () => (await up()) === "c1,c2", 10_000, "c1 and c2 up");
    await flood(binder.address, 60);
    await eventually(
      () => Promise.resolve(/instance\(s\) left out: 4 dialed at most/.test(lb.stderr())),
      10_000,
      "the cap said",
    );
    // Let the last lists arrive and be applied.
    await new Promise((r) => setTimeout(r, 600));
    const views = await backendsOf(peer) as View[];
    assert.ok(views.length <= 4, `${views.length} backends`);
    assert.equal(await up(), "c1,c2");
    const by = new Set<string>();
    for (let i = 0; i < 8; i++) by.add((await peer.request("echo", { text: "x" })).by!);
    assert.deepEqual([...by].toSorted(), ["c1", "c2"]);
    // Said once, not per change; and no line per instance.
    const said = lb.stderr().split("\n").filter((l) => /left out/.test(l));
    assert.equal(said.length, 1, said.join("\n"));
    assert.match(said[0], /--max-backends/);
    const counted = lb.stderr().split("\n").filter((l) => /instance\(s\) from the binders/.test(l));
    assert.ok(counted.length <= 2, counted.join("\n"));
  } finally {
    peer.close();
    await stopAll([lb, ...servers, binder]);
  }
});

Deno.test("balancer --service: a server registered after a flood of dead instances takes the place of one that never answered", async () => {
  const binder = await startDist(["binder", "--port", "0"]);
  await flood(binder.address, 6);
  const lb = await startBalancer([], [
    "--service",
    "compute",
    "--binders",
    binder.address,
    "--max-backends",
    "3",
  ]);
  const peer = await connectTo(lb.address);
  let server;
  try {
    await eventually(async () => (await backendsOf(peer)).length === 3, 5_000, "3 dialed");
    server = await startService("compute", binder.address, ["--name", "late"]);
    const t0 = performance.now();
    await eventually(
      async () => (await backendsOf(peer)).some((b) => b.peer === "late" && b.state === "up"),
      15_000,
      "the late server up",
    );
    assert.ok(performance.now() - t0 < 9_000, `${Math.round(performance.now() - t0)} ms`);
    assert.ok((await backendsOf(peer)).length <= 3);
    assert.equal((await peer.request("echo", { text: "x" })).by, "late");
    // Those that gave up their places were reported: the binder checked them and forgot them.
    await eventually(
      async () => (await ids(binder.address, "compute")).length < 7,
      5_000,
      "dead instances reported and removed",
    );
  } finally {
    peer.close();
    await stopAll([lb, server, binder]);
  }
});
