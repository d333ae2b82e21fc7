/**
 * The contracts hold both sides at compile time: every `@ts-expect-error`
 * below must be an error, or `deno check tests/` (part of `deno task
 * test`) fails. The test at the end runs what compiled.
 */
import assert from "node:assert/strict";
import { call, dispatch, emit, type Peer, type Requester } from "../wire/mod.ts";
import { binder, broker, type Instance, sys } from "../clients/contracts/mod.ts";

const lookup = (p: { service: string }): Instance => ({
  id: `${p.service}@h:1`,
  service: p.service,
  host: "h",
  port: 1,
});

/** A binder's handlers, as the binder role writes them. */
const served = () =>
  dispatch([sys, binder], {
    "sys.ping": () => ({ pong: true, role: "binder", name: "b" }),
    "sys.stats": () => ({ role: "binder", name: "b", uptime_ms: 1, rss_bytes: 1 }),
    "binder.lookup": lookup,
    "binder.register": (p) => ({ id: `${p.service}@${p.host}:${p.port}`, ttl_ms: p.ttl_ms ?? 1 }),
    "binder.renew": (p) => ({ id: p.id, ttl_ms: 3000 }),
    "binder.deregister": (p) => ({ id: p.id, removed: true }),
    "binder.list": (p) => ({ instances: [], ...(p.after ? { next: p.after } : {}) }),
    "binder.report_down": (p) => Promise.resolve({ id: p.id, alive: false, removed: true }),
    "binder.watch": (p) => ({ service: p.service, instances: [] }),
    "binder.unwatch": (p) => ({ service: p.service, watching: false }),
  });

export function wrongHandlers(): void {
  dispatch([binder], {
    // @ts-expect-error a handler returns the contract's result (this one has no port)
    "binder.lookup": (p) => ({ id: "x", service: p.service, host: "h" }),
    "binder.register": (p) => ({ id: p.service, ttl_ms: 1 }),
    "binder.renew": (p) => ({ id: p.id, ttl_ms: 1 }),
    // @ts-expect-error removed is the literal true
    "binder.deregister": (p) => ({ id: p.id, removed: false }),
    "binder.list": () => ({ instances: [] }),
    "binder.report_down": (p) => ({ id: p.id, alive: true, removed: false }),
    "binder.watch": (p) => ({ service: p.service, instances: [] }),
    "binder.unwatch": (p) => ({ service: p.service, watching: false }),
  });
  // @ts-expect-error every method of the contract has a handler (binder.unwatch is missing)
  dispatch([binder], {
    "binder.lookup": lookup,
    "binder.register": (p) => ({ id: p.service, ttl_ms: 1 }),
    "binder.renew": (p) => ({ id: p.id, ttl_ms: 1 }),
    "binder.deregister": (p) => ({ id: p.id, removed: true }),
    "binder.list": () => ({ instances: [] }),
    "binder.report_down": (p) => ({ id: p.id, alive: true, removed: false }),
    "binder.watch": (p) => ({ service: p.service, instances: [] }),
  });
  dispatch([sys], {
    "sys.ping": () => ({ pong: true, role: "r", name: "n" }),
    "sys.stats": () => ({ role: "r", name: "n", uptime_ms: 1, rss_bytes: 1 }),
    // @ts-expect-error a handler for a method no contract defines
    "sys.nope": () => 1,
  });
}

export async function wrongCalls(to: Requester, peer: Peer): Promise<void> {
  const at = await call(to, binder.methods.lookup, { service: "compute" });
  at.port satisfies number; // an Instance, no cast
  // @ts-expect-error params are checked where the call is written
  await call(to, binder.methods.lookup, { servce: "compute" });
  // @ts-expect-error so is the result's type
  const alive: string = (await call(to, binder.methods.report_down, { id: "x" })).alive;
  // @ts-expect-error a publish needs a topic
  await call(to, broker.methods.publish, { value: 1 });
  emit(peer, binder.events.changed, { service: "s", instances: [at] });
  // @ts-expect-error events are typed too
  emit(peer, binder.events.changed, { service: "s" });
  void alive;
}

// A method keeps its literal wire name: permissions and metrics key on it.
binder.methods.lookup.name satisfies "binder.lookup";

Deno.test("the typed binder handlers of this file serve and check as they compiled", async () => {
  const d = served();
  const peer = { remote: { role: "client", name: "c" } } as unknown as Peer;
  const meta = { idempotent: true };
  assert.deepEqual(
    d.onRequest("binder.lookup", { service: "s" }, peer, meta),
    lookup({
      service: "s",
    }),
  );
  assert.deepEqual(await d.onRequest("binder.report_down", { id: "s@h:1" }, peer, meta), {
    id: "s@h:1",
    alive: false,
    removed: true,
  });
  assert.throws(
    () => d.onRequest("binder.register", { service: "s", host: "h", port: 0 }, peer, meta),
    /"port" must be an integer 1-65535, got 0/,
  );
});
