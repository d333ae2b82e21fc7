/**
 * A binder against hostile or careless peers (the attack report's binder
 * findings, each reproduced small and fast): forged versions, replication
 * methods from clients, bad pushes, watchers that do not read, huge lists,
 * and report_down used as a reflector.
 */
import assert from "node:assert/strict";
import { MAX_LOGICAL } from "../roles/binder/clock.ts";
import { type DistError, listen } from "../wire/mod.ts";
import { connectTo, ids, type LocalBinder, reg, startBinder, waitUntil } from "./helpers/binder.ts";
import { freePort, lines, startDist } from "./helpers/dist.ts";
import { isCode } from "./helpers/rpc.ts";

/** A connection to `b` that says it is a binder in its handshake (as a peer's does). */
/**
 * A connection to `b` that says it is a binder in its handshake and holds
 * the cluster's token: a peer, or a process that stole the token (without
 * one, a binder takes no binder.sync from a connection it did not dial).
 */
const asBinder = (b: LocalBinder) => connectTo(b.address, "binder", undefined, TOKEN);
const TOKEN = "cluster-token-for-hostile-peers";

/** A record as a peer binder sends it, of service `service` on 127.0.0.1:`port`. */
function record(service: string, port: number, v: unknown, extra: Record<string, unknown> = {}) {
  return {
    id: `${service}@127.0.0.1:${port}`,
    service,
    host: "127.0.0.1",
    port,
    ttl_ms: 60_000,
    left_ms: 60_000,
    v,
    ...extra,
  };
}

/** Two binders that replicate with each other. */
async function pair(): Promise<[LocalBinder, LocalBinder]> {
  const [pa, pb] = [freePort(), freePort()];
  const peers = [`127.0.0.1:${pa}`, `127.0.0.1:${pb}`];
  return await Promise.all([
    startBinder({ port: pa, peers, token: TOKEN }),
    startBinder({ port: pb, peers, token: TOKEN }),
  ]);
}

Deno.test("a binder that took a version with a huge counter keeps replicating (finding 6)", async () => {
  const [a, b] = await pair();
  const evil = await asBinder(a);
  try {
    const before = await a.call("binder.register", reg(1111)) as { id: string };
    await waitUntil(async () => (await ids(b)).includes(before.id), "the control change on b");
    // The attack's version: inside the skew window, with the largest safe counter. Refused.
    const ahead = Date.now() + 5000;
    const refused = await evil.call("binder.sync", {
      node: "evil",
      records: [record("poison", 1, [ahead, Number.MAX_SAFE_INTEGER, "evil"])],
    });
    assert.deepEqual(refused, { merged: 0 });
    // The largest counter allowed is taken, and the clock carries past it.
    const taken = await evil.call("binder.sync", {
      node: "evil",
      records: [record("poison", 2, [ahead, MAX_LOGICAL, "evil"])],
    });
    assert.deepEqual(taken, { merged: 1 });
    // Changes made on a after it saw those versions reach b.
    const after = await a.call("binder.register", reg(2222)) as { id: string };
    await a.call("binder.deregister", { id: before.id });
    await waitUntil(
      async () => {
        const list = await ids(b);
        return list.includes(after.id) && !list.includes(before.id);
      },
      "a's later changes to reach b",
      5000,
    );
    const stats = await b.call("sys.stats") as { replication: { rejected: number } };
    assert.equal(stats.replication.rejected, 0, "b refused none of a's records");
  } finally {
    evil.close();
    await Promise.all([a.stop(), b.stop()]);
  }
});

Deno.test("replication methods are refused to a connection that is not a binder (finding 5)", async () => {
  const b = await startBinder();
  try {
    const forged = record("forged", 1, [Date.now(), 0, "evil"]);
    await assert.rejects(
      b.call("binder.sync", { node: "evil", records: [forged] }),
      isCode("UNAUTHORIZED"),
    );
    await assert.rejects(
      b.call("binder.diff", { node: "evil", digest: { x: [], n: [] } }),
      isCode("UNAUTHORIZED"),
    );
    assert.deepEqual(await ids(b), []);
  } finally {
    await b.stop();
  }
});

Deno.test("records from peers fill at most nine tenths of --max-instances; servers still register (finding 5)", async () => {
  const b = await startBinder({ maxInstances: 20, token: TOKEN });
  const evil = await asBinder(b);
  try {
    const records = Array.from(
      { length: 50 },
      (_, i) => record("forged", 1 + i, [Date.now(), 0, "evil"]),
    );
    assert.deepEqual(await evil.call("binder.sync", { node: "evil", records }), { merged: 18 });
    const stats = await b.call("sys.stats") as { instances: number; overflow: number };
    assert.equal(stats.instances, 18);
    assert.equal(stats.overflow, 32);
    await b.call("binder.register", reg(5001));
    await b.call("binder.register", reg(5002));
    await assert.rejects(b.call("binder.register", reg(5003)), isCode("OVERLOADED"));
  } finally {
    evil.close();
    await b.stop();
  }
});

Deno.test("bad binder.sync pushes are logged within a budget and close the connection (finding 7)", async () => {
  const binder = await startDist(["binder", "--port", "0"]);
  const evil = await connectTo(binder.address, "binder");
  const client = await connectTo(binder.address);
  try {
    for (let i = 0; i < 2000; i++) evil.notify("binder.sync", { records: "no" });
    await waitUntil(() => evil.isClosed, "the binder to close the connection", 5000);
    // A push from a connection that is not a binder is ignored, whatever it holds.
    client.notify("binder.sync", { node: "x", records: [record("s", 1, [Date.now(), 0, "x"])] });
    const stats = await client.call("sys.stats") as { replication: { bad_pushes: number } };
    assert.ok(stats.replication.bad_pushes >= 11, `bad_pushes ${stats.replication.bad_pushes}`);
    assert.deepEqual(await ids(client), []);
    const warned = lines(binder.stderr()).filter((l) => l.includes("Ignored a bad binder.sync"));
    // Warnings about peers are budgeted per second (20, the rest at debug): a
    // loaded machine may spread the pushes over more than one second.
    const at = warned.map((l) => Date.parse(l.slice(0, 24)));
    const seconds = Math.ceil((Math.max(...at) - Math.min(...at)) / 1000) + 1;
    assert.ok(
      warned.length >= 1 && warned.length <= 20 * seconds + 5,
      `${warned.length} warning lines over ${seconds} s`,
    );
    assert.ok(warned.every((l) => l.length < 600), "every line is short");
  } finally {
    evil.close();
    client.close();
    await binder.stop();
  }
});

Deno.test("report_down starts a bounded number of checks per connection, logged at debug (finding 19)", async () => {
  let pings = 0;
  const victim = listen({
    port: 0,
    role: "server",
    name: "victim",
    onRequest: () => (pings++, { pong: true }),
  });
  const binder = await startDist(["binder", "--port", "0"]);
  const client = await connectTo(binder.address);
  try {
    const port = victim.addr.port;
    const n = 120;
    await Promise.all(
      Array.from(
        { length: n },
        (_, i) => client.call("binder.register", { service: `v${i}`, host: "127.0.0.1", port }),
      ),
    );
    const answers = await Promise.allSettled(
      Array.from(
        { length: n },
        (_, i) => client.call("binder.report_down", { id: `v${i}@127.0.0.1:${port}` }),
      ),
    );
    const alive = answers.filter((a) => a.status === "fulfilled").length;
    const refused = answers.filter((a) =>
      a.status === "rejected" && (a.reason as DistError).code === "OVERLOADED"
    ).length;
    assert.equal(alive + refused, n);
    assert.ok(alive >= 1 && alive <= 60, `${alive} checks made`);
    assert.equal(pings, alive, "one connection to the victim per check made");
    assert.ok(!binder.stderr().includes("Verified"), "checks that find it alive are not info");
  } finally {
    client.close();
    await binder.stop();
    await victim.close();
  }
});

Deno.test("binder.list answers in pages that fit a frame, and every page together is the registry (finding 10)", async () => {
  const b = await startBinder({ maxFrame: 64 * 1024 });
  try {
    // 300 instances of 1 KB meta: about 330 KB as a list, five times the frame limit.
    const meta = { pad: "m".repeat(1000) };
    const peer = await b.rpc();
    await Promise.all(
      Array.from({ length: 300 }, (_, i) => peer.call("binder.register", { ...reg(1 + i), meta })),
    );
    const first = await b.call("binder.list", {}) as { instances: unknown[]; next?: string };
    assert.ok(first.instances.length > 0 && first.instances.length < 300);
    assert.equal(typeof first.next, "string");
    assert.equal((await ids(b)).length, 300);
    const small = await b.call("binder.list", { service: "compute", limit: 5 }) as {
      instances: { port: number }[];
      next: string;
    };
    assert.deepEqual(small.instances.map((i) => i.port), [1, 10, 100, 101, 102]);
    assert.equal(small.next, "compute@127.0.0.1:102");
    await assert.rejects(b.call("binder.list", { limit: 0 }), isCode("BAD_REQUEST"));
    // A watch needs the whole list in one frame: refused, before the list is built.
    await assert.rejects(b.call("binder.watch", { service: "compute" }), (err: unknown) => {
      isCode("FRAME_TOO_LARGE")(err);
      assert.match((err as Error).message, /binder\.list/);
      return true;
    });
  } finally {
    await b.stop();
  }
});
