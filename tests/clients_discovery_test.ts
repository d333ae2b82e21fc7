/**
 * The client library's discovery (clients/discovery/): register, resolve
 * and watch through a real `dist binder` process that is SIGKILLed and
 * restarted on its port, and failover between two binders.
 */
import assert from "node:assert/strict";
import {
  binders,
  DistError,
  type Instance,
  register,
  resolve,
  watchService,
} from "../clients/mod.ts";
import { startDist } from "./helpers/dist.ts";
import { startBinder } from "./helpers/binder.ts";
import { waitFor, within } from "./helpers/raw.ts";

const instance = (port: number) => ({
  service: "lib",
  host: "127.0.0.1",
  port,
  ttl_ms: 600,
  meta: { zone: "a" },
});

Deno.test("register() and resolve() survive a binder SIGKILLed and restarted on its port", async () => {
  let binder = await startDist(["binder", "--port", "0", "--catch-up", "0"]);
  const port = binder.address.split(":")[1];
  const through = binders([binder.address], { timeout: 1000 });
  const lookups = binders([binder.address], { timeout: 1000 });
  const reg = register(through, instance(4001));
  try {
    assert.equal(await reg.registered(5000), true);
    assert.equal(reg.id, "lib@127.0.0.1:4001");
    const found: Instance = await resolve(lookups, "lib");
    assert.deepEqual(found, {
      id: "lib@127.0.0.1:4001",
      service: "lib",
      host: "127.0.0.1",
      port: 4001,
      meta: { zone: "a" },
    });

    await binder.stop("SIGKILL");
    await assert.rejects(resolve(lookups, "lib"), (err) => {
      assert.ok(err instanceof DistError);
      assert.equal(err.code, "NOT_FOUND");
      assert.match(err.message, /no binder answered/);
      return true;
    });
    binder = await startDist(["binder", "--port", port, "--catch-up", "0"]);
    // The restarted binder knows nothing: the next renewal is NOT_FOUND, and the
    // registration is made again; a resolve that waits sees it come back.
    const back = await within(resolve(lookups, "lib", { wait: 8000 }), 10_000, "the instance");
    assert.equal(back.port, 4001);
  } finally {
    await reg.stop();
    lookups.close();
    await binder.stop();
  }
});

Deno.test("resolve() fails over to the next binder; watchService() follows the instances", async () => {
  const [a, b] = [await startBinder({ catchUp: 0 }), await startBinder({ catchUp: 0 })];
  await a.stop(); // the first one listed is down
  const through = binders([a.address, b.address], { timeout: 1000 });
  const seen: number[][] = [];
  const watch = watchService(through, "lib", (list) => seen.push(list.map((i) => i.port)));
  const regs = [register(binders([b.address]), instance(5001))];
  try {
    assert.equal(await regs[0].registered(5000), true);
    assert.equal((await resolve(through, "lib", { wait: 2000 })).port, 5001);
    assert.equal(await watch.ready(5000), true);
    regs.push(register(binders([b.address]), instance(5002)));
    await waitFor(() => watch.instances.length === 2, 5000, "both instances watched");
    await regs[0].stop(); // deregistered at once
    await waitFor(() => watch.instances.length === 1, 5000, "the deregistration watched");
    assert.deepEqual(watch.instances.map((i) => i.port), [5002]);
    assert.deepEqual(seen.at(-1), [5002]);
  } finally {
    await watch.stop();
    for (const r of regs) await r.stop();
    through.close();
    await b.stop();
  }
});
