/**
 * Instances that take a request nowhere. Their address swallows the
 * connection: a listener that never accepts, so a dial hangs until its
 * timeout (hostile review 38 L8: with 10 registered, 5 of 6 one-shot
 * `dist client --service` calls failed after their whole --timeout on the
 * first one they dialed, and never reported it). Each dial of an instance not
 * known to work gets a short part of the search's time (memory.ts
 * `dialBudget`); one that times out is passed over and reported, and the
 * binder's check drops it. Or they answer their hello and the binder's
 * `sys.ping` but hang up on a request (L9: 20 such, 5 of 6 one-shot calls
 * failed after 3 of them): a connection that drops before anything came
 * after its hello is passed over like one that could not be dialed.
 */
import assert from "node:assert/strict";
import { BinderClient } from "../clients/discovery/mod.ts";
import { connect } from "../clients/connection.ts";
import { dialBudget } from "../clients/discovery/memory.ts";
import { listen, type Listener } from "../wire/mod.ts";
import {
  echoServer,
  ids,
  type LocalBinder,
  registerPorts,
  serviceClient,
  startBinder,
  waitUntil,
} from "./helpers/binder.ts";

const SWALLOWERS = 10;

/** Listeners that never accept: a connect lands in the backlog and no hello is ever answered. */
function swallowers(n: number): Deno.Listener[] {
  return Array.from({ length: n }, () => Deno.listen({ hostname: "127.0.0.1", port: 0 }));
}

/** Instances that answer the hello and `sys.ping` (the binder's check) but hang up on any request. */
function droppers(n: number, onRequest?: (method: string) => unknown): Listener[] {
  return Array.from({ length: n }, (_, i) =>
    listen({
      port: 0,
      role: "server",
      name: `dropper${i}`,
      onRequest: (method, _params, peer) => {
        const answer = onRequest?.(method);
        if (answer !== undefined || method === "sys.ping") return answer ?? { pong: true };
        peer.close();
        return new Promise(() => {});
      },
    }));
}

/**
 * A binder holding `compute`: `fakes` (swallowers or droppers) registered
 * first, then (`withLive`) a live one; `test` runs with it, and everything
 * is stopped after.
 */
async function withService(
  fakes: (Deno.Listener | Listener)[],
  test: (binder: LocalBinder) => Promise<void>,
  withLive = true,
): Promise<void> {
  const live = echoServer("live");
  const binder = await startBinder({ maxPerSource: 1000 });
  const portOf = (l: Deno.Listener | Listener) => (l.addr as Deno.NetAddr).port;
  try {
    const ports = fakes.map(portOf);
    await registerPorts(binder, "compute", withLive ? [...ports, live.addr.port] : ports);
    await test(binder);
  } finally {
    for (const f of fakes) {
      if ("accept" in f) f.close(); // a Deno listener that never accepted
      else await f.close(0);
    }
    await live.close(0);
    await binder.stop();
  }
}

/** Runs `runs` one-shot `echo` calls; each must answer "hi" within `withinMs`. */
async function oneShots(binder: LocalBinder, runs: number, withinMs: number) {
  for (let run = 0; run < runs; run++) {
    const res = await serviceClient(binder, "echo", '{"text":"hi"}');
    assert.equal(res.code, 0, `run ${run}: ${res.stderr}`);
    assert.equal(res.stdout.trim(), "hi");
    assert.ok(res.ms < withinMs, `run ${run} took ${Math.round(res.ms)} ms`);
  }
}

Deno.test("dialBudget: a sixteenth of the search, within 100 ms and 1 s", () => {
  assert.equal(dialBudget(5000), 312.5);
  assert.equal(dialBudget(60_000), 1000);
  assert.equal(dialBudget(800), 100);
});

Deno.test("one-shot dist client --service answers past 10 instances that swallow the connection, and they are reported", async () => {
  await withService(swallowers(SWALLOWERS), async (binder) => {
    // Before: exit 1 after 5 s, "dist: TIMEOUT: … timed out after 5000 ms", the next never tried.
    await oneShots(binder, 3, 8000);
    // The ones met were reported before the client exited, and the binder's check dropped them.
    await waitUntil(
      async () => (await ids(binder, "compute")).length < SWALLOWERS + 1,
      "the binder to drop an instance that swallows, reported by a one-shot client",
    );
  });
});

Deno.test("dist client --service --random 20 does not spend its timeout on each instance that swallows", async () => {
  await withService(swallowers(SWALLOWERS), async (binder) => {
    // Before: 41–50 s (5 s per instance that swallows, one after another).
    const res = await serviceClient(binder, "--random", "20", "--json");
    assert.equal(res.code, 0, res.stderr);
    const outcomes = res.stdout.trim().split("\n").map((l) => JSON.parse(l) as { ok: boolean });
    assert.equal(outcomes.filter((o) => o.ok).length, 20, res.stdout);
    assert.ok(res.ms < 15_000, `took ${Math.round(res.ms)} ms`);
  });
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
    await registerPorts(binder, "compute", [(slow.addr as Deno.NetAddr).port]);
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

Deno.test("one-shot dist client --service answers past 20 instances that hang up on a request (hostile38 L9)", async () => {
  // Before: exit 1 "dist: UNAVAILABLE: Connection closed by peer" after 3 instances.
  await withService(droppers(20), (binder) => oneShots(binder, 4, 8000));
});

Deno.test("a request lost with a connection that answered something is still sent 3 times at most", async () => {
  // The drop counts when the instance answered before: a request that kills what it reaches
  // (a poison one) is not carried to every instance of the service.
  let sends = 0;
  const servers = droppers(6, (method) => method === "poison" ? (sends++, undefined) : "ok");
  await withService(servers, async (binder) => {
    const binders = new BinderClient({
      binders: [binder.address],
      role: "client",
      name: "test",
      timeoutMs: 2000,
    });
    const conn = await connect({ binders, service: "compute" }, {
      name: "t",
      connectTimeout: 5000,
    });
    try {
      // Each connection answers something before the poison request reaches it.
      conn.onConnect(async (peer) => void await peer.call("hello", {}));
      await conn.request("hello", {});
      await assert.rejects(conn.request("poison", {}, { timeout: 4000 }));
      assert.ok(sends >= 1 && sends <= 3, `${sends} sends`);
    } finally {
      conn.close();
      binders.close();
    }
  }, false);
});
