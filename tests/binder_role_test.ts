/**
 * The binder role over the wire, binders in this process: the methods, leases,
 * watches and failure reports of one binder (lab rows 5, 8, 9, 10).
 */
import assert from "node:assert/strict";
import { listen, type Peer } from "../wire/mod.ts";
import { otherBinders } from "../roles/binder/mod.ts";
import { connectTo, ids, reg, startBinder, waitUntil } from "./helpers/binder.ts";
import { isCode } from "./helpers/rpc.ts";
import { freePort } from "./helpers/dist.ts";

Deno.test("binder: register, lookup, renew, deregister over the wire", async () => {
  const b = await startBinder();
  try {
    const { id, ttl_ms } = await b.call("binder.register", reg(5001)) as Record<string, unknown>;
    assert.equal(id, "compute@127.0.0.1:5001");
    assert.equal(ttl_ms, 60_000);
    assert.deepEqual(await b.call("binder.lookup", { service: "compute" }), {
      id,
      service: "compute",
      host: "127.0.0.1",
      port: 5001,
    });
    assert.deepEqual(await b.call("binder.renew", { id }), { id, ttl_ms: 60_000 });
    assert.deepEqual(await b.call("binder.deregister", { id }), { id, removed: true });
    await assert.rejects(b.call("binder.renew", { id }), isCode("NOT_FOUND"));
    await assert.rejects(b.call("binder.deregister", { id: "x@h:1" }), isCode("NOT_FOUND"));
  } finally {
    await b.stop();
  }
});

Deno.test("binder answers only for services that exist (lab row 5)", async () => {
  const b = await startBinder();
  try {
    await assert.rejects(b.call("binder.lookup", { service: "nope" }), (err) => {
      isCode("NOT_FOUND")(err);
      assert.equal((err as Error).message, 'No instance of service "nope"');
      return true;
    });
    const { id } = await b.call("binder.register", reg(5001)) as { id: string };
    await b.call("binder.lookup", { service: "compute" });
    await b.call("binder.deregister", { id });
    await assert.rejects(b.call("binder.lookup", { service: "compute" }), isCode("NOT_FOUND"));
    assert.deepEqual(await b.call("binder.list", { service: "compute" }), { instances: [] });
  } finally {
    await b.stop();
  }
});

Deno.test("binder refuses bad requests with BAD_REQUEST and keeps serving", async () => {
  // A token: replication from a connection it did not dial needs one (or to be a --peer).
  const b = await startBinder({ token: "binder-role-test-token" });
  let peer: Peer | undefined;
  try {
    const bad: [string, unknown][] = [
      ["binder.register", { service: "compute", host: "127.0.0.1", port: 70000 }],
      ["binder.register", [1, 2]],
      ["binder.lookup", { service: 7 }],
      ["binder.lookup", {}],
      ["binder.renew", { id: "" }],
      ["binder.report_down", {}],
      ["binder.watch", { service: "a/b" }],
    ];
    for (const [method, params] of bad) {
      await assert.rejects(b.call(method, params), isCode("BAD_REQUEST"), method);
    }
    await assert.rejects(b.call("binder.nope", {}), isCode("UNKNOWN_METHOD"));
    // Replication methods, from a connection that says it is a binder and holds the token.
    peer = await connectTo(b.address, "binder", undefined, "binder-role-test-token");
    await assert.rejects(
      peer.call("binder.diff", { node: "x", digest: { x: [1], n: [] } }),
      isCode("BAD_REQUEST"),
    );
    await assert.rejects(peer.call("binder.sync", { records: "nope" }), isCode("BAD_REQUEST"));
    // Malformed records from a "peer" are skipped, the good ones merged.
    const sync = await peer.call("binder.sync", {
      records: [{ id: "forged" }, {
        id: "compute@127.0.0.1:1",
        service: "compute",
        host: "127.0.0.1",
        port: 1,
        ttl_ms: 5000,
        left_ms: 5000,
        v: [Date.now(), 0, "peer"],
      }],
    });
    assert.deepEqual(sync, { merged: 1 });
    assert.deepEqual(await ids(b), ["compute@127.0.0.1:1"]);
    assert.deepEqual(await b.call("sys.ping"), { pong: true, role: "binder", name: b.name });
  } finally {
    peer?.close();
    await b.stop();
  }
});

Deno.test("binder hands out same-service instances cyclically (lab row 8)", async () => {
  const b = await startBinder();
  try {
    for (const port of [5003, 5001, 5002]) await b.call("binder.register", reg(port));
    await b.call("binder.register", { ...reg(6001), service: "other" });
    const ports: number[] = [];
    for (let i = 0; i < 6; i++) {
      ports.push((await b.call("binder.lookup", { service: "compute" }) as { port: number }).port);
    }
    assert.deepEqual(ports, [5001, 5002, 5003, 5001, 5002, 5003]);
  } finally {
    await b.stop();
  }
});

Deno.test("binder expires an instance that is not renewed within its TTL", async () => {
  const b = await startBinder();
  try {
    // A lease 15 renewal periods long: a loaded machine may delay a few renewals.
    const kept = await b.call("binder.register", reg(5001, { ttl_ms: 1500 })) as { id: string };
    await b.call("binder.register", reg(5002, { ttl_ms: 300 }));
    const renewing = setInterval(() => {
      b.call("binder.renew", { id: kept.id }).catch(() => {}); // a late one may find it gone
    }, 100);
    try {
      await waitUntil(async () => (await ids(b)).length === 1, "the lease of 5002 to run out");
      assert.deepEqual(await ids(b), [kept.id]);
    } finally {
      clearInterval(renewing);
    }
    await waitUntil(async () => (await ids(b)).length === 0, "the lease of 5001 to run out");
    // Out of lookups at once; turned into tombstones (and pushed) by the next sweep.
    const expirations = async () =>
      (await b.call("sys.stats") as { expirations: number }).expirations;
    await waitUntil(async () => await expirations() === 2, "both expiries to be recorded");
  } finally {
    await b.stop();
  }
});

Deno.test("binder.watch sends the new list on every change but not on renewals", async () => {
  const b = await startBinder();
  const seen: { service: string; instances: { port: number }[] }[] = [];
  const watcher = await connectTo(b.address, "client", (method, params) => {
    if (method === "binder.changed") seen.push(params as (typeof seen)[number]);
  });
  try {
    await b.call("binder.register", reg(5001));
    const first = await watcher.call("binder.watch", { service: "compute" }) as typeof seen[0];
    assert.deepEqual(first.instances.map((i) => i.port), [5001]);
    const { id } = await b.call("binder.register", reg(5002)) as { id: string };
    await b.call("binder.renew", { id });
    await b.call("binder.register", { ...reg(6001), service: "other" });
    await b.call("binder.deregister", { id });
    await waitUntil(() => seen.length >= 2, "two notifications");
    await b.call("sys.ping"); // one more round trip: nothing else is on its way
    assert.deepEqual(seen.map((s) => s.instances.map((i) => i.port)), [[5001, 5002], [5001]]);
    assert.ok(seen.every((s) => s.service === "compute"));
    await watcher.call("binder.unwatch", { service: "compute" });
    await b.call("binder.register", reg(5003));
    await b.call("sys.ping");
    assert.equal(seen.length, 2);
  } finally {
    watcher.close();
    await b.stop();
  }
});

/** A TCP listener that accepts and never answers: an instance that hangs. */
function hangingListener() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  const done = (async () => {
    for await (const c of listener) conns.push(c);
  })();
  let closed: Promise<void> | undefined;
  return {
    port: (listener.addr as Deno.NetAddr).port,
    close: () =>
      closed ??= (async () => {
        listener.close();
        await done;
        for (const c of conns) c.close();
      })(),
  };
}

Deno.test("binder.report_down removes a dead instance and keeps a live one", async () => {
  const b = await startBinder();
  const live = listen({ port: 0, role: "server", name: "live", onRequest: () => ({ pong: true }) });
  const gone = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const deadPort = (gone.addr as Deno.NetAddr).port;
  gone.close();
  try {
    const alive = await b.call("binder.register", reg(live.addr.port)) as { id: string };
    const dead = await b.call("binder.register", reg(deadPort)) as { id: string };
    assert.deepEqual(await b.call("binder.report_down", { id: dead.id }), {
      id: dead.id,
      alive: false,
      removed: true,
    });
    assert.deepEqual(await b.call("binder.report_down", { id: alive.id }), {
      id: alive.id,
      alive: true,
      removed: false,
    });
    assert.deepEqual(await ids(b), [alive.id]);
    // Reported again: already removed, no new verification.
    assert.deepEqual(await b.call("binder.report_down", { id: dead.id }), {
      id: dead.id,
      alive: false,
      removed: true,
    });
    await assert.rejects(b.call("binder.report_down", { id: "x@h:1" }), isCode("NOT_FOUND"));
    const stats = await b.call("sys.stats") as Record<string, number>;
    assert.equal(stats.verifications, 2);
  } finally {
    await live.close();
    await b.stop();
  }
});

Deno.test("two reports one second apart share one verification; the port is free again (lab row 9)", async () => {
  const b = await startBinder({ verifyTimeout: 2000 });
  const hang = hangingListener();
  const [c1, c2] = await Promise.all([connectTo(b.address), connectTo(b.address)]);
  let server;
  try {
    const { id } = await b.call("binder.register", reg(hang.port)) as { id: string };
    const first = c1.call("binder.report_down", { id });
    await new Promise((r) => setTimeout(r, 1000));
    const second = c2.call("binder.report_down", { id });
    const answers = await Promise.all([first, second]);
    for (const a of answers) assert.deepEqual(a, { id, alive: false, removed: true });
    const stats = await b.call("sys.stats") as Record<string, number>;
    assert.equal(stats.verifications, 1);
    // The instance's port is free for a new server, which registers and is handed out.
    await hang.close();
    server = listen({ port: hang.port, role: "server", name: "new", onRequest: () => true });
    await b.call("binder.register", reg(hang.port));
    assert.equal((await b.call("binder.lookup", { service: "compute" }) as { id: string }).id, id);
  } finally {
    c1.close();
    c2.close();
    await hang.close();
    await server?.close();
    await b.stop();
  }
});

Deno.test("a lookup made while a verification runs is answered at once (lab row 10)", async () => {
  const b = await startBinder({ verifyTimeout: 3000 });
  const hang = hangingListener();
  let reporter: Peer | undefined;
  try {
    const { id } = await b.call("binder.register", reg(hang.port)) as { id: string };
    await b.call("binder.register", reg(5999));
    await b.call("binder.register", { ...reg(6001), service: "other" });
    reporter = await connectTo(b.address);
    const report = reporter.call("binder.report_down", { id }, { timeout: 10_000 });
    await waitUntil(
      async () => (await b.call("sys.stats") as { verifying: number }).verifying === 1,
      "the verification to start",
    );
    const t0 = performance.now();
    const lookups = [];
    for (let i = 0; i < 4; i++) lookups.push(await b.call("binder.lookup", { service: "compute" }));
    lookups.push(await b.call("binder.lookup", { service: "other" }));
    const ms = performance.now() - t0;
    assert.ok(ms < 1000, `5 lookups took ${ms} ms during a 3 s verification`);
    // The instance under verification is not handed out while another is live.
    assert.deepEqual(lookups.slice(0, 4).map((l) => (l as { port: number }).port), [
      5999,
      5999,
      5999,
      5999,
    ]);
    assert.equal((await b.call("sys.stats") as { verifying: number }).verifying, 1);
    assert.deepEqual(await report, { id, alive: false, removed: true });
  } finally {
    reporter?.close();
    await hang.close();
    await b.stop();
  }
});

Deno.test("a binder that finds itself among its peers under another address ignores that peer", async () => {
  // Listening on every interface, it cannot tell from the address that 127.0.0.2 is itself.
  const port = freePort();
  const b = await startBinder({ host: "0.0.0.0", port, peers: [`127.0.0.2:${port}`] });
  try {
    await waitUntil(async () => {
      const stats = await b.call("sys.stats") as {
        ready: boolean;
        replication: { peers: { self?: boolean }[] };
      };
      return stats.ready && stats.replication.peers[0].self === true;
    }, "the binder to recognise itself");
    await b.call("binder.register", reg(5001));
    assert.deepEqual(await ids(b), ["compute@127.0.0.1:5001"]);
  } finally {
    await b.stop();
  }
});

Deno.test("otherBinders() skips this binder's own address and duplicates", () => {
  const self = { hostname: "127.0.0.1", port: 7000 };
  const peers = ["127.0.0.1:7000", "localhost:7000", "127.0.0.1:7001", "127.0.0.1:7001", "h:7000"];
  assert.deepEqual(otherBinders(peers, self), [
    { host: "127.0.0.1", port: 7001 },
    { host: "h", port: 7000 },
  ]);
});
