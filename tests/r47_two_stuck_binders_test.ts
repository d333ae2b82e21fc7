/**
 * Review r47 R2: the Q3 fix bounds each binder's try of a renewal (a third of the lease, at
 * least 500 ms), not the renewal: the binder client tries the binders one after another, so with
 * two binders that hang before a live one (a host with two binders paused, one zone's packets
 * dropped) a renewal reaches the live binder at TTL/3 + 2 × TTL/3 = the lease's end, refused
 * there, and the instance registers again (lookups NOT_FOUND meanwhile, watchers an empty list
 * when the sweep falls in the gap) — Q3 again. The same with one hung binder and a lease of at
 * most 750 ms (TTL/3 + the 500 ms floor ≥ TTL).
 *
 * Expected: a renewal's tries together end while the lease still runs on the next binder (bound
 * the whole call by what is left of the lease, not each try).
 */
import assert from "node:assert/strict";
import { binder, BinderClient, binders, register, sys } from "../clients/mod.ts";
import { startBinderProcs } from "./helpers/binder.ts";

Deno.test("r47 R2: a server whose two binders hang moves to the third before its lease runs out", async () => {
  const cluster = await startBinderProcs(3);
  const stuck = [cluster.procs[0].child.pid, cluster.procs[1].child.pid];
  const through = new BinderClient({
    binders: cluster.addresses,
    role: "server",
    name: "r47-r2",
    random: () => 0,
  });
  const live = binders([cluster.addresses[2]]);
  const registrar = register(through, { service: "stuck2", host: "127.0.0.1", port: 9 });
  try {
    assert(await registrar.registered(10_000), "registered");
    assert.equal(through.current, cluster.addresses[0]);
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        await live.call(binder.methods.lookup, { service: "stuck2" });
        break;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    for (const pid of stuck) Deno.kill(pid, "SIGSTOP");
    await new Promise((r) => setTimeout(r, 7000));
    assert.equal(through.current, cluster.addresses[2], "moved to the live binder");
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
    for (const pid of stuck) {
      try {
        Deno.kill(pid, "SIGCONT");
      } catch { /* gone */ }
    }
    await registrar.stop(false);
    live.close();
    await cluster.stop();
  }
});
