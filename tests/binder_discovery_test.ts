/**
 * The shared discovery module against binders in this process: binder choice
 * and failover (lab row 1), registration kept alive across a binder's death,
 * resolving with a wait (row 4), a caller that reports a dead instance and
 * moves on (rows 6, 7), and watches (the balancer's `--service`).
 */
import assert from "node:assert/strict";
import {
  BinderClient,
  Registrar,
  Resolver,
  ServiceCaller,
  watchService,
} from "../clients/discovery/mod.ts";
import { binder, type Instance } from "../clients/contracts/mod.ts";
import { listen, type Listener } from "../wire/mod.ts";
import { connect, type Connection } from "../clients/connection.ts";
import { ids, type LocalBinder, startBinder, waitUntil } from "./helpers/binder.ts";
import { freePort } from "./helpers/dist.ts";
import { isCode } from "./helpers/rpc.ts";

const client = (binders: string[], random?: () => number) =>
  new BinderClient({ binders, role: "client", name: "test", timeoutMs: 1000, random });

/** A server in this process that answers `echo` with its name in `by`. */
function echoServer(name: string, port = 0): Listener {
  return listen({
    port,
    role: "server",
    name,
    by: name,
    onRequest: (method, params) => method === "echo" ? (params as { text: string }).text : true,
  });
}

const dialServer = (address: { host: string; port: number }) =>
  connect(address, { name: "test", connectTimeout: 1000, redial: false });

Deno.test("BinderClient starts at a random binder and moves to the next when one is down (lab row 1)", async () => {
  const a = await startBinder();
  const down = `127.0.0.1:${freePort()}`;
  try {
    // Whichever comes first in the list, a down binder is skipped.
    for (const list of [[down, a.address], [a.address, down]]) {
      for (const r of [0, 0.99]) {
        const c = client(list, () => r);
        try {
          await assert.rejects(
            c.call(binder.methods.lookup, { service: "x" }),
            isCode("NOT_FOUND"),
          );
          assert.equal(c.current, a.address);
        } finally {
          c.close();
        }
      }
    }
    const none = client([down]);
    await assert.rejects(none.call(binder.methods.lookup, { service: "x" }), (err) => {
      isCode("UNAVAILABLE")(err);
      assert.match((err as Error).message, /No binder answered \(asked 127\.0\.0\.1:\d+\)/);
      return true;
    });
    none.close();
  } finally {
    await a.stop();
  }
});

Deno.test("BinderClient picks its first binder at random", async () => {
  const [a, b] = await Promise.all([startBinder(), startBinder()]);
  try {
    const first = new Set<string>();
    for (let i = 0; i < 40; i++) {
      const c = client([a.address, b.address]);
      first.add(c.current);
      c.close();
    }
    // 40 fair draws all on one side: probability 2^-39.
    assert.equal(first.size, 2);
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
});

Deno.test("Registrar keeps an instance registered past its TTL, through the death of its binder", async () => {
  const ports = [freePort(), freePort()];
  const peers = ports.map((p) => `127.0.0.1:${p}`);
  const [a, b] = await Promise.all(ports.map((port) => startBinder({ port, peers })));
  // Starts on a (random() = 0), which the test then stops.
  const registrar = new Registrar(client(peers, () => 0), {
    service: "compute",
    host: "127.0.0.1",
    port: 5001,
    ttl_ms: 1000,
  }).start();
  try {
    assert.equal(await registrar.registered(5000), true);
    assert.equal(registrar.id, "compute@127.0.0.1:5001");
    await waitUntil(async () => (await ids(b)).length === 1, "b to learn of it");
    await a.stop();
    await new Promise((r) => setTimeout(r, 2500)); // 2.5 TTLs: renewals went to b
    assert.deepEqual(await ids(b), ["compute@127.0.0.1:5001"]);
    await registrar.stop();
    assert.deepEqual(await ids(b), []);
  } finally {
    await registrar.stop();
    await b.stop();
  }
});

Deno.test("Registrar registers again when its binder no longer knows the instance", async () => {
  const port = freePort();
  let b = await startBinder({ port });
  const registrar = new Registrar(client([b.address]), {
    service: "compute",
    host: "127.0.0.1",
    port: 5001,
    ttl_ms: 600,
  }).start();
  try {
    await registrar.registered(5000);
    // Every binder restarted: the registry is empty, the next renewal is NOT_FOUND.
    await b.stop();
    b = await startBinder({ port });
    await waitUntil(async () => (await ids(b)).length === 1, "the instance to be registered again");
  } finally {
    await registrar.stop();
    await b.stop();
  }
});

Deno.test("Resolver waits for a service to appear, and names the binders when none does (lab row 4)", async () => {
  const b = await startBinder();
  const c = client([b.address]);
  try {
    const t0 = performance.now();
    await assert.rejects(new Resolver(c, "nope", { waitMs: 600 }).resolve(), (err) => {
      isCode("NOT_FOUND")(err);
      assert.equal(
        (err as Error).message,
        `No instance of service "nope" (asked ${b.address}); no service is registered with the binders`,
      );
      return true;
    });
    assert.ok(performance.now() - t0 >= 550);
    setTimeout(() => {
      b.call("binder.register", { service: "late", host: "127.0.0.1", port: 5001 });
    }, 300);
    const found = await new Resolver(c, "late", { waitMs: 5000 }).resolve();
    assert.equal(found.port, 5001);
  } finally {
    c.close();
    await b.stop();
  }
});

Deno.test("connect({ binders, service }) reports a dead instance, resolves again and carries on (lab rows 6, 7)", async () => {
  const ports = [freePort(), freePort()];
  const peers = ports.map((p) => `127.0.0.1:${p}`);
  const [a, b] = await Promise.all(ports.map((port) => startBinder({ port, peers })));
  const s1 = echoServer("s1");
  const s2 = echoServer("s2");
  const goneListener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const gone = (goneListener.addr as Deno.NetAddr).port;
  goneListener.close();
  const register = (port: number) =>
    a.call("binder.register", { service: "compute", host: "127.0.0.1", port, ttl_ms: 60_000 });
  // A server that died without deregistering (its lease has a minute to run), first in id order.
  for (const port of [gone, s1.addr.port, s2.addr.port].sort()) await register(port);
  const callers: Connection[] = [];
  try {
    const by = new Set<string>();
    for (let i = 0; i < 3; i++) {
      const caller = await connect({ binders: client([a.address]), service: "compute" }, {
        name: "test",
        connectTimeout: 1000,
      });
      callers.push(caller);
      const res = await caller.exchange("echo", { text: "hi" });
      assert.equal(res.result, "hi" as unknown);
      by.add(res.by!);
    }
    assert.deepEqual([...by].sort(), ["s1", "s2"]);
    const deadId = `compute@127.0.0.1:${gone}`;
    // The report removed it on a, and the change reached b.
    for (const x of [a, b]) {
      await waitUntil(async () => !(await ids(x)).includes(deadId), `${x.name} to drop it`);
    }
    // A server dying under a caller: its requests move to the other one.
    const caller = callers.find((c) => c.remote?.name === "s1")!;
    await s1.close(0);
    const res = await caller.exchange("echo", { text: "again" });
    assert.equal(res.by, "s2");
    await waitUntil(async () => (await ids(a)).length === 1, "s1 to be reported and removed");
    assert.equal((await a.call("sys.stats") as { verifications: number }).verifications, 2);
  } finally {
    for (const c of callers) c.close();
    await Promise.all([s1.close(0), s2.close(0)]);
    await Promise.all([a.stop(), b.stop()]);
  }
});

Deno.test("watchService hands over every new list, and moves to another binder when its binder dies", async () => {
  const ports = [freePort(), freePort()];
  const peers = ports.map((p) => `127.0.0.1:${p}`);
  const binders: LocalBinder[] = await Promise.all(
    ports.map((port) => startBinder({ port, peers })),
  );
  const c = client(peers, () => 0); // watches on binders[0] first
  const lists: number[][] = [];
  const watch = watchService(c, "compute", (instances: Instance[]) => {
    lists.push(instances.map((i) => i.port));
  });
  const register = (port: number) =>
    binders[1].call("binder.register", {
      service: "compute",
      host: "127.0.0.1",
      port,
      ttl_ms: 60_000,
    });
  try {
    assert.equal(await watch.ready(5000), true);
    await register(5001);
    await waitUntil(() => lists.length === 2, "the first change");
    await binders[0].stop();
    await register(5002);
    await waitUntil(() => lists.at(-1)?.length === 2, "the change, through binder 2");
    assert.deepEqual(lists[0], []);
    assert.deepEqual(lists[1], [5001]);
    assert.deepEqual(lists.at(-1), [5001, 5002]);
    assert.deepEqual(watch.instances.map((i) => i.port), [5001, 5002]);
  } finally {
    await watch.stop();
    c.close();
    await Promise.all(binders.map((b) => b.stop()));
  }
});

Deno.test("ServiceCaller goes round the instances in the binders' turn, one connection each", async () => {
  const binder = await startBinder({ port: 0 });
  const servers = ["s1", "s2", "s3"].map((name) => echoServer(name));
  for (const s of servers) {
    await binder.call("binder.register", {
      service: "compute",
      host: "127.0.0.1",
      port: s.addr.port,
      ttl_ms: 60_000,
    });
  }
  let dials = 0;
  const service = await connect({ binders: client([binder.address]), service: "compute" });
  const caller = new ServiceCaller(
    new Resolver(client([binder.address]), "compute", { waitMs: 0 }),
    { dial: (address) => (dials++, dialServer(address)), service },
  );
  try {
    const by: string[] = [];
    for (let i = 0; i < 6; i++) by.push((await caller.exchange("echo", { text: "hi" })).by!);
    // Each instance in turn, twice: the binder hands them out cyclically.
    assert.deepEqual(by.slice(3), by.slice(0, 3));
    assert.deepEqual(by.slice(0, 3).toSorted(), ["s1", "s2", "s3"]);
    assert.equal(dials, 3, "one connection per instance, kept");
    // One that dies is reported, and the turn goes on over the others.
    await servers[0].close(0);
    const after: string[] = [];
    for (let i = 0; i < 4; i++) after.push((await caller.exchange("echo", { text: "hi" })).by!);
    assert.ok(!after.includes("s1"), after.join(", "));
    assert.deepEqual(new Set(after), new Set(["s2", "s3"]));
  } finally {
    caller.close();
    await Promise.all(servers.map((s) => s.close(0)));
    await binder.stop();
  }
});
