/**
 * Hostile review h47 Q1 (high): a binder that was frozen (SIGSTOP, a VM
 * pause, an event loop blocked) for longer than a lease expires, when it
 * resumes, every instance it held, stamping each expiry with its clock *now*
 * (registry.ts `remove`: `stamp: this.clock.now()`). That stamp is newer than
 * every renewal the live binders took meanwhile, so the tombstones it pushes
 * win everywhere: a live, renewing instance vanishes from every binder
 * (watchers get an empty list, lookups NOT_FOUND) until its server's next
 * renewal is refused and it registers again.
 *
 * Expected: an instance renewed on time on a live binder stays listed there
 * whatever a binder that slept does when it wakes (the expiry it decides is
 * as of the lease's end, older than the renewals, as after a partition).
 */
import assert from "node:assert/strict";
import { binders, register, watchService } from "../clients/mod.ts";
import { startBinderProcs } from "./helpers/binder.ts";
import { lookedUp, resume } from "./helpers/stuck_binders.ts";

Deno.test("h47 Q1: a binder resuming from a freeze does not remove live instances from its peers", async () => {
  const cluster = await startBinderProcs(2);
  const frozen = cluster.procs[0].child.pid;
  const reg = binders([cluster.addresses[1]]);
  const other = binders([cluster.addresses[0]]);
  const watcher = binders([cluster.addresses[1]]);
  const registrar = register(reg, { service: "frozen", host: "127.0.0.1", port: 9, ttl_ms: 1000 });
  const seen: number[] = [];
  let watch: ReturnType<typeof watchService> | undefined;
  try {
    assert(await registrar.registered(10_000), "registered");
    // Replicated to the binder that will be frozen.
    await lookedUp(other, "frozen");
    watch = watchService(watcher, "frozen", (list) => seen.push(list.length));
    assert(await watch.ready(5000), "watch answered");
    Deno.kill(frozen, "SIGSTOP");
    await new Promise((r) => setTimeout(r, 3500)); // 3.5 leases; renewals go on at the live binder
    Deno.kill(frozen, "SIGCONT");
    await new Promise((r) => setTimeout(r, 3000));
    assert(
      !seen.includes(0),
      `the live binder's watch of a renewing instance saw an empty list after its frozen peer ` +
        `resumed (lists seen: ${JSON.stringify(seen)})`,
    );
  } finally {
    resume([frozen]);
    await watch?.stop();
    await registrar.stop(false);
    watcher.close();
    other.close();
    await cluster.stop();
  }
});
