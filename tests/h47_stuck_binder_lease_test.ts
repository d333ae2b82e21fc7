/**
 * Hostile review h47 Q3 (medium): with the defaults, a server whose binder
 * stops answering (frozen, a host paused, packets dropped: not refused) loses
 * its lease on every binder before it moves to the next one. It renews every
 * TTL/3 (1 s of the default 3 s) and each call waits the binder client's
 * timeout (2 s) before the next binder is tried: the renewal after the last
 * one answered reaches another binder at 1 s + 2 s = the lease's very end,
 * so it is refused (`Instance … is expired: register again`), and the
 * instance is gone from the registry until it registers again (lookups
 * NOT_FOUND; when the 100 ms sweep falls in that gap, a tombstone and an
 * empty list to every watcher). Every server using the stuck binder does
 * this at once. Eureka renews every 30 s against a 90 s lease (two missed
 * renewals are harmless); Consul's agents keep TTL checks locally.
 *
 * Expected: a server fails over to a live binder while its lease still runs
 * there: the live binder takes a renewal, not a new registration.
 */
import assert from "node:assert/strict";
import { binder, BinderClient, binders, register, sys } from "../clients/mod.ts";
import { startBinderProcs } from "./helpers/binder.ts";

Deno.test("h47 Q3: a server whose binder hangs moves to the next one before its lease runs out", async () => {
  const cluster = await startBinderProcs(2);
  const stuck = cluster.procs[0].child.pid;
  // Starts with binder 0 (the one that will hang), as a server picking it at random would.
  const through = new BinderClient({
    binders: cluster.addresses,
    role: "server",
    name: "h47-q3",
    random: () => 0,
  });
  const live = binders([cluster.addresses[1]]);
  const registrar = register(through, { service: "stuck", host: "127.0.0.1", port: 9 });
  try {
    assert(await registrar.registered(10_000), "registered");
    assert.equal(through.current, cluster.addresses[0]);
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        await live.call(binder.methods.lookup, { service: "stuck" });
        break;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    Deno.kill(stuck, "SIGSTOP");
    await new Promise((r) => setTimeout(r, 6000));
    assert.equal(through.current, cluster.addresses[1], "moved to the live binder");
    await live.call(binder.methods.lookup, { service: "stuck" });
    const stats = await live.call(sys.methods.stats, {}) as unknown as {
      registrations: number;
      renewals: number;
    };
    assert.equal(
      stats.registrations,
      0,
      `the live binder had to take the instance as a new registration (its lease had run out ` +
        `there): ${
          JSON.stringify({ registrations: stats.registrations, renewals: stats.renewals })
        }`,
    );
  } finally {
    try {
      Deno.kill(stuck, "SIGCONT");
    } catch { /* gone */ }
    await registrar.stop(false);
    live.close();
    await cluster.stop();
  }
});
