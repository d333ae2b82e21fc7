/**
 * A service whose binders hand out hundreds of dead instances (hostile
 * review 36 J9: anyone may register by default, and 300 registrations of
 * addresses where nothing listens made `dist client --service` fail its
 * first request, which tried at most 3 instances). A refused dial costs next
 * to nothing: the client moves on to the next instance at once, within the
 * connect timeout, passes over those it found dead, and reaches the live one
 * (clients/discovery/service.ts, memory.ts), in the library and in the CLI.
 */
import assert from "node:assert/strict";
import { BinderClient, Resolver, ServiceCaller } from "../clients/discovery/mod.ts";
import { connect } from "../clients/connection.ts";
import { DEAD_MS, DownReports, InstanceMemory, MAX_REPORTS } from "../clients/discovery/memory.ts";
import type { Listener } from "../wire/mod.ts";
import { echoServer, ids, type LocalBinder, startBinder, waitUntil } from "./helpers/binder.ts";
import { runDist } from "./helpers/dist.ts";

const DEAD = 300;

/**
 * `n` ports from `from` on (a random start within `span`) where nothing
 * listens now: each bound, then let go. They are outside the kernel's
 * ephemeral range (32768–60999), so no other test's listener on port 0
 * takes one meanwhile: under `--parallel`, a freed ephemeral port was
 * taken by another test's server, which answered `echo` with UNKNOWN_METHOD
 * (main's CI at 50345db).
 */
function deadPorts(n: number, from: number, span: number): number[] {
  const ports: number[] = [];
  for (let port = from + Math.floor(Math.random() * span); ports.length < n; port++) {
    try {
      Deno.listen({ hostname: "127.0.0.1", port }).close();
      ports.push(port);
    } catch {
      // In use: not dead.
    }
  }
  return ports;
}

/** Dead instances the binder hands out before the live one, at least. */
const MET = 8;

const idOf = (port: number) => `compute@127.0.0.1:${port}`;

/**
 * A binder holding `compute`: one live instance (`live`, an echo server)
 * among DEAD registrations of dead addresses. The binder hands instances
 * out in id order from the first: the live one (an ephemeral port, 3xxxx
 * to 6xxxx) comes after half of the dead ones (1xxxx) and before the rest
 * (71xx to 79xx: clear of the default topology's 7000, 7001 and 8000).
 * Before, with dead ports from the kernel in no order, a live one among
 * the first four ids (3 runs in 200) was reached after fewer than 4 dead
 * ones, fewer than the first test waits to see reported (main's CI at
 * ce5106b).
 */
async function crowdedService(): Promise<{ live: Listener; binder: LocalBinder }> {
  const dead = [...deadPorts(DEAD / 2, 10_000, 8_000), ...deadPorts(DEAD / 2, 7_100, 650)];
  const live = echoServer("live");
  const before = dead.filter((port) => idOf(port) < idOf(live.addr.port)).length;
  assert.ok(before >= MET, `${before} dead ids before the live one's`);
  const binder = await startBinder({ maxPerSource: 1000 });
  const register = (port: number) =>
    binder.call("binder.register", {
      service: "compute",
      host: "127.0.0.1",
      port,
      ttl_ms: 600_000,
    });
  for (const port of dead) await register(port);
  await register(live.addr.port);
  return { live, binder };
}

const binderClient = (address: string) =>
  new BinderClient({ binders: [address], role: "client", name: "test", timeoutMs: 2000 });

Deno.test("connect({ binders, service }) reaches the one live instance among 300 dead ones, and reports them", async () => {
  const { live, binder } = await crowdedService();
  const binders = binderClient(binder.address);
  try {
    // Before: the connection gave up after 3 refused dials ("Cannot connect to …: Connection refused").
    const conn = await connect({ binders, service: "compute" }, {
      name: "test",
      connectTimeout: 5000,
    });
    try {
      const res = await conn.exchange("echo", { text: "hi" });
      assert.equal(res.result, "hi" as unknown);
      assert.equal(res.by, "live");
      // The dead ones it met were reported, and the binder checked them and dropped them.
      await waitUntil(
        async () => (await ids(binder, "compute")).length < DEAD + 1 - 3,
        "the binder to drop dead instances the client reported",
      );
    } finally {
      conn.close();
    }
  } finally {
    binders.close();
    await live.close(0);
    await binder.stop();
  }
});

Deno.test("connect({ binders, service }) with only dead instances fails within its connect timeout, naming the service", async () => {
  const binder = await startBinder({ maxPerSource: 1000 });
  const binders = binderClient(binder.address);
  try {
    for (const port of deadPorts(20, 10_000, 8_000)) {
      await binder.call("binder.register", {
        service: "compute",
        host: "127.0.0.1",
        port,
        ttl_ms: 600_000,
      });
    }
    await assert.rejects(
      connect({ binders, service: "compute" }, { name: "test", connectTimeout: 3000 }),
      (err: Error) => {
        // Every one tried failed, or the binders, told of them, dropped them all meanwhile.
        assert.match(err.message, /^No instance of service "compute" (could be reached|\(asked)/);
        return true;
      },
    );
  } finally {
    binders.close();
    await binder.stop();
  }
});

Deno.test("ServiceCaller answers every request through 300 dead instances handed out in turn", async () => {
  const { live, binder } = await crowdedService();
  const service = await connect({ binders: binderClient(binder.address), service: "compute" }, {
    name: "test",
    connectTimeout: 5000,
  });
  let dials = 0;
  const caller = new ServiceCaller(
    new Resolver(binderClient(binder.address), "compute", { waitMs: 0 }),
    {
      dial: (
        address,
      ) => (dials++, connect(address, { name: "test", connectTimeout: 1000, redial: false })),
      service,
    },
  );
  try {
    for (let i = 0; i < 20; i++) {
      const res = await caller.exchange("echo", { text: `hi ${i}` });
      assert.equal(res.result, `hi ${i}` as unknown);
      assert.equal(res.by, "live");
    }
    // What the service connection's search found dead was not dialed again for each request.
    assert.ok(dials <= 20, `${dials} dials for 20 requests`);
  } finally {
    caller.close();
    await live.close(0);
    await binder.stop();
  }
});

Deno.test("dist client --service --random 20 answers all 20 with 300 dead instances registered", async () => {
  const { live, binder } = await crowdedService();
  try {
    // Before: exit 1 at the first request, "dist: UNAVAILABLE: Cannot connect to …: Connection refused".
    const res = await runDist([
      "client",
      "--binders",
      binder.address,
      "--service",
      "compute",
      "--random",
      "20",
      "--json",
    ], { timeoutMs: 60_000 });
    assert.equal(res.code, 0, res.stderr);
    const outcomes = res.stdout.trim().split("\n").map((l) =>
      JSON.parse(l) as { ok: boolean; by?: string }
    );
    assert.equal(outcomes.filter((o) => o.ok && o.by === "live").length, 20, res.stdout);
  } finally {
    await live.close(0);
    await binder.stop();
  }
});

const inst = (port: number) => ({
  id: `compute@127.0.0.1:${port}`,
  service: "compute",
  host: "127.0.0.1",
  port,
});

Deno.test("InstanceMemory passes over an instance that failed for DEAD_MS, and names the last that worked", () => {
  let now = 0;
  const memory = new InstanceMemory(() => now);
  memory.worked(inst(1));
  memory.worked(inst(2));
  memory.failed(inst(3));
  assert.equal(memory.isDead(inst(3)), true);
  // A registration again under another id is the same place.
  const again = { ...inst(3), id: "other" };
  assert.equal(memory.isDead(again), true);
  assert.equal(memory.lastWorked()?.port, 2);
  assert.equal(memory.lastWorked(inst(2))?.port, 1, "not the one that just failed");
  memory.failed(inst(2));
  assert.equal(memory.lastWorked()?.port, 1, "one that failed since is not offered");
  now += DEAD_MS;
  assert.equal(memory.isDead(inst(3)), false, "tried again after DEAD_MS");
  memory.failed(inst(1));
  memory.forgetDead();
  assert.equal(memory.isDead(inst(1)), false);
});

Deno.test("DownReports sends each instance's report once a second at most, MAX_REPORTS at once", async () => {
  const pending: (() => void)[] = [];
  const sent: number[] = [];
  const reports = new DownReports((i) => {
    sent.push(i.port);
    return new Promise<void>((resolve) => pending.push(resolve));
  });
  for (let port = 1; port <= MAX_REPORTS + 2; port++) reports.report(inst(port));
  assert.deepEqual(sent, Array.from({ length: MAX_REPORTS }, (_, i) => i + 1));
  assert.equal(reports.report(inst(1)), undefined, "reported less than a second ago");
  for (const resolve of pending.splice(0)) resolve();
  await new Promise((r) => setTimeout(r, 0));
  assert.notEqual(reports.report(inst(MAX_REPORTS + 1)), undefined, "room again");
});
