/**
 * Instances whose address swallows the connection: a listener that never
 * accepts, so a dial hangs until its timeout (hostile review 38 L8: with 10
 * registered, 5 of 6 one-shot `dist client --service` calls failed after
 * their whole --timeout on the first one they dialed, and never reported it).
 * Each dial of an instance not known to work gets a short part of the
 * search's time (clients/discovery/service.ts `dialBudget`); one that times
 * out is passed over and reported, and the binder's check drops it.
 */
import assert from "node:assert/strict";
import { BinderClient } from "../clients/discovery/mod.ts";
import { connect } from "../clients/connection.ts";
import { dialBudget } from "../clients/discovery/memory.ts";
import { listen, type Listener } from "../wire/mod.ts";
import { ids, type LocalBinder, startBinder, waitUntil } from "./helpers/binder.ts";
import { runDist } from "./helpers/dist.ts";

const SWALLOWERS = 10;

/** A server in this process that answers `echo` with its name in `by`. */
function echoServer(name: string): Listener {
  return listen({
    port: 0,
    role: "server",
    name,
    by: name,
    onRequest: (method, params) => method === "echo" ? (params as { text: string }).text : true,
  });
}

/** Listeners that never accept: a connect lands in the backlog and no hello is ever answered. */
function swallowers(n: number): Deno.Listener[] {
  return Array.from({ length: n }, () => Deno.listen({ hostname: "127.0.0.1", port: 0 }));
}

/** A binder holding `compute`: SWALLOWERS registrations that swallow, then the live one. */
async function swallowingService(
  live: Listener,
  holes: Deno.Listener[],
): Promise<LocalBinder> {
  const binder = await startBinder({ maxPerSource: 1000 });
  const register = (port: number) =>
    binder.call("binder.register", {
      service: "compute",
      host: "127.0.0.1",
      port,
      ttl_ms: 600_000,
    });
  for (const hole of holes) await register((hole.addr as Deno.NetAddr).port);
  await register(live.addr.port);
  return binder;
}

Deno.test("dialBudget: a sixteenth of the search, within 100 ms and 1 s", () => {
  assert.equal(dialBudget(5000), 312.5);
  assert.equal(dialBudget(60_000), 1000);
  assert.equal(dialBudget(800), 100);
});

Deno.test("one-shot dist client --service answers past 10 instances that swallow the connection, and they are reported", async () => {
  const live = echoServer("live");
  const holes = swallowers(SWALLOWERS);
  const binder = await swallowingService(live, holes);
  try {
    for (let run = 0; run < 3; run++) {
      const t0 = performance.now();
      // Before: exit 1 after 5 s, "dist: TIMEOUT: … timed out after 5000 ms", the next never tried.
      const res = await runDist([
        "client",
        "--binders",
        binder.address,
        "--service",
        "compute",
        "--timeout",
        "5s",
        "echo",
        '{"text":"hi"}',
      ], { timeoutMs: 30_000 });
      const ms = performance.now() - t0;
      assert.equal(res.code, 0, `run ${run}: ${res.stderr}`);
      assert.equal(res.stdout.trim(), "hi");
      assert.ok(ms < 8000, `run ${run} took ${Math.round(ms)} ms`);
    }
    // The ones met were reported before the client exited, and the binder's check dropped them.
    await waitUntil(
      async () => (await ids(binder, "compute")).length < SWALLOWERS + 1,
      "the binder to drop an instance that swallows, reported by a one-shot client",
    );
  } finally {
    for (const hole of holes) hole.close();
    await live.close(0);
    await binder.stop();
  }
});

Deno.test("dist client --service --random 20 does not spend its timeout on each instance that swallows", async () => {
  const live = echoServer("live");
  const holes = swallowers(SWALLOWERS);
  const binder = await swallowingService(live, holes);
  try {
    const t0 = performance.now();
    // Before: 50 s (5 s per instance that swallows, one after another).
    const res = await runDist([
      "client",
      "--binders",
      binder.address,
      "--service",
      "compute",
      "--timeout",
      "5s",
      "--random",
      "20",
      "--json",
    ], { timeoutMs: 60_000 });
    const ms = performance.now() - t0;
    assert.equal(res.code, 0, res.stderr);
    const outcomes = res.stdout.trim().split("\n").map((l) => JSON.parse(l) as { ok: boolean });
    assert.equal(outcomes.filter((o) => o.ok).length, 20, res.stdout);
    assert.ok(ms < 15_000, `took ${Math.round(ms)} ms`);
  } finally {
    for (const hole of holes) hole.close();
    await live.close(0);
    await binder.stop();
  }
});

Deno.test("connect({ binders, service }) reaches an instance slow to answer its hello when the binders hand out no other", async () => {
  // A hello answered after 600 ms: past the short dial (312 ms of 5 s), within the search.
  const slow = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const live = echoServer("slow");
  const accepting = (async () => {
    for await (const socket of slow) {
      setTimeout(async () => {
        try {
          const there = await Deno.connect({ hostname: "127.0.0.1", port: live.addr.port });
          await Promise.all([
            socket.readable.pipeTo(there.writable),
            there.readable.pipeTo(socket.writable),
          ]).catch(() => {});
        } catch { /* the test ended */ }
      }, 600);
    }
  })();
  const binder = await startBinder({});
  const binders = new BinderClient({
    binders: [binder.address],
    role: "client",
    name: "test",
    timeoutMs: 2000,
  });
  try {
    await binder.call("binder.register", {
      service: "compute",
      host: "127.0.0.1",
      port: (slow.addr as Deno.NetAddr).port,
      ttl_ms: 600_000,
    });
    const conn = await connect({ binders, service: "compute" }, {
      name: "t",
      connectTimeout: 5000,
    });
    try {
      assert.equal((await conn.exchange("echo", { text: "hi" })).by, "slow");
    } finally {
      conn.close();
    }
  } finally {
    binders.close();
    slow.close();
    await accepting.catch(() => {});
    await live.close(0);
    await binder.stop();
  }
});

/** Instances that answer the hello and `sys.ping` (the binder's check) but hang up on any request. */
function droppers(n: number): Listener[] {
  return Array.from({ length: n }, (_, i) =>
    listen({
      port: 0,
      role: "server",
      name: `dropper${i}`,
      onRequest: (method, _params, peer) => {
        if (method === "sys.ping") return { pong: true };
        peer.close();
        return new Promise(() => {});
      },
    }));
}

Deno.test("one-shot dist client --service answers past 20 instances that hang up on a request (hostile38 L9)", async () => {
  const live = echoServer("live");
  const fakes = droppers(20);
  const binder = await startBinder({ maxPerSource: 1000 });
  try {
    for (const l of [...fakes, live]) {
      await binder.call("binder.register", {
        service: "compute",
        host: "127.0.0.1",
        port: l.addr.port,
        ttl_ms: 600_000,
      });
    }
    for (let run = 0; run < 4; run++) {
      // Before: exit 1 "dist: UNAVAILABLE: Connection closed by peer" after 3 instances.
      const res = await runDist([
        "client",
        "--binders",
        binder.address,
        "--service",
        "compute",
        "--timeout",
        "5s",
        "echo",
        '{"text":"hi"}',
      ], { timeoutMs: 30_000 });
      assert.equal(res.code, 0, `run ${run}: ${res.stderr}`);
      assert.equal(res.stdout.trim(), "hi");
    }
  } finally {
    for (const f of fakes) await f.close(0);
    await live.close(0);
    await binder.stop();
  }
});

Deno.test("a request lost with a connection that answered something is still sent 3 times at most", async () => {
  // The drop counts when the instance answered before: a request that kills what it reaches
  // (a poison one) is not carried to every instance of the service.
  let sends = 0;
  const servers = Array.from({ length: 6 }, (_, i) =>
    listen({
      port: 0,
      role: "server",
      name: `s${i}`,
      onRequest: (method, _params, peer) => {
        if (method !== "poison") return "ok";
        sends++;
        peer.close();
        return new Promise(() => {});
      },
    }));
  const binder = await startBinder({ maxPerSource: 1000 });
  const binders = new BinderClient({
    binders: [binder.address],
    role: "client",
    name: "test",
    timeoutMs: 2000,
  });
  try {
    for (const l of servers) {
      await binder.call("binder.register", {
        service: "compute",
        host: "127.0.0.1",
        port: l.addr.port,
        ttl_ms: 600_000,
      });
    }
    const conn = await connect({ binders, service: "compute" }, {
      name: "t",
      connectTimeout: 5000,
    });
    try {
      // Each connection answers something before the poison request reaches it.
      conn.onConnect(async (peer) => void await peer.call("hello", {}));
      assert.equal(await conn.request("hello", {}), "ok");
      await assert.rejects(conn.request("poison", {}, { timeout: 4000 }));
      assert.ok(sends <= 3, `${sends} sends`);
    } finally {
      conn.close();
    }
  } finally {
    binders.close();
    for (const s of servers) await s.close(0);
    await binder.stop();
  }
});
