/**
 * One unauthenticated client against a binder's watchers (hostile34 Z5):
 * `--max-per-source` bounds the live instances one source registers, and a
 * burst of registrations reaches a watcher as a few whole lists, not one
 * per registration.
 */
import assert from "node:assert/strict";
import { connectTo, ids, reg, startBinder, waitUntil } from "./helpers/binder.ts";
import { isCode } from "./helpers/rpc.ts";

Deno.test("--max-per-source: one client's registrations past its share are OVERLOADED; a renewal is not", async () => {
  const b = await startBinder({ maxPerSource: 5 });
  try {
    const mallory = await b.rpc();
    for (let p = 1; p <= 5; p++) await mallory.call("binder.register", reg(p));
    await assert.rejects(mallory.call("binder.register", reg(6)), (err: unknown) => {
      isCode("OVERLOADED")(err);
      assert.match((err as Error).message, /at most 5 live instances from one source/);
      return true;
    });
    // Registering a live instance again renews it, at the bound too.
    await mallory.call("binder.register", reg(3));
    // A deregistered instance frees its place.
    await mallory.call("binder.deregister", { id: "compute@127.0.0.1:1" });
    await mallory.call("binder.register", reg(7));
    assert.equal((await ids(b, "compute")).length, 5);
    const stats = await b.call("sys.stats", {}) as { registrations_refused: number };
    assert.equal(stats.registrations_refused, 1);
  } finally {
    await b.stop();
  }
});

Deno.test("--max-per-source defaults to a hundredth of --max-instances; an expired lease frees its place", async () => {
  const b = await startBinder({ maxInstances: 20_000 });
  try {
    const peer = await b.rpc();
    await peer.call("binder.register", reg(1, { ttl_ms: 300 }));
    await Promise.all(
      Array.from({ length: 199 }, (_, i) => peer.call("binder.register", reg(2 + i))),
    );
    await assert.rejects(peer.call("binder.register", reg(201)), isCode("OVERLOADED"));
    await waitUntil(async () => (await ids(b, "compute")).length === 199, "the short lease to end");
    await peer.call("binder.register", reg(201));
  } finally {
    await b.stop();
  }
});

Deno.test("a burst of 300 registrations reaches a watcher as a few whole lists, the last one complete", async () => {
  const b = await startBinder();
  const lists: number[] = [];
  const watcher = await connectTo(b.address, "client", (method, params) => {
    if (method === "binder.changed") {
      lists.push((params as { instances: unknown[] }).instances.length);
    }
  });
  try {
    await watcher.call("binder.watch", { service: "compute" });
    const peer = await b.rpc();
    const t0 = performance.now();
    for (let p = 1; p <= 300; p++) await peer.call("binder.register", reg(p));
    const ms = performance.now() - t0;
    await waitUntil(() => lists.at(-1) === 300, "the whole list");
    // One list every 100 ms at most while changes keep coming (each register was its own turn).
    assert.ok(lists.length <= ms / 100 + 3, `${lists.length} lists in ${Math.round(ms)} ms`);
    assert.ok(lists.length < 100, `${lists.length} lists for 300 registrations`);
    // A change after a quiet spell goes out at once.
    await new Promise((r) => setTimeout(r, 150));
    const before = lists.length;
    const t1 = performance.now();
    await peer.call("binder.deregister", { id: "compute@127.0.0.1:1" });
    await waitUntil(() => lists.length > before, "the next list");
    assert.ok(performance.now() - t1 < 80, "sent without waiting out the interval");
    assert.equal(lists.at(-1), 299);
  } finally {
    watcher.close();
    await b.stop();
  }
});
