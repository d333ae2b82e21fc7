/**
 * `balancer --service` against fake instances that answer their handshake
 * and health checks but never a request (hostile35 H4): more of them than
 * `--max-backends` took every place for good, and a real server registered
 * after them was never dialed (every request timed out). A place is now kept
 * by serving: the real server is reached within seconds, then takes the
 * requests, while the fakes get a trial now and then.
 */
import assert from "node:assert/strict";
import { listen, type Listener, type Peer } from "../wire/mod.ts";
import { startDist } from "./helpers/dist.ts";
import { backendsOf, connectTo, eventually, startBalancer, stopAll } from "./helpers/balancer.ts";
import { connectTo as binderConn, startService } from "./helpers/binder.ts";

/** `n` listeners that answer their handshake and `sys.ping`, and nothing else, ever. */
function fakes(n: number): Listener[] {
  return Array.from({ length: n }, (_, i) =>
    listen({
      port: 0,
      role: "server",
      name: `fake${i}`,
      onRequest: (method) => method === "sys.ping" ? {} : new Promise(() => {}),
    }));
}

/** Registers each of `listeners` as an instance of compute, from one client. */
async function register(binder: string, listeners: Listener[]): Promise<void> {
  const mallory = await binderConn(binder);
  try {
    for (const l of listeners) {
      await mallory.call("binder.register", {
        service: "compute",
        host: "127.0.0.1",
        port: l.addr.port,
        ttl_ms: 600_000,
      });
    }
  } finally {
    mallory.close();
  }
}

/**
 * `c` loops of echo through `peer` for `ms`: who answered, how many
 * answers, and the errors by code.
 */
async function load(peer: Peer, c: number, ms: number) {
  const by = new Map<string, number>();
  const errors = new Map<string, number>();
  const end = performance.now() + ms;
  await Promise.all(Array.from({ length: c }, async () => {
    while (performance.now() < end) {
      try {
        const r = await peer.request("echo", { text: "x" }, { timeout: 8000 });
        by.set(r.by ?? "?", (by.get(r.by ?? "?") ?? 0) + 1);
      } catch (err) {
        const code = (err as { code?: string }).code ?? "?";
        errors.set(code, (errors.get(code) ?? 0) + 1);
      }
    }
  }));
  return { by, errors };
}

/** Sends echoes through `peer`, 4 at a time, until one is answered by `name`. @returns when (ms) */
async function reached(peer: Peer, name: string, ms: number): Promise<number> {
  const t0 = performance.now();
  let found = false;
  await Promise.all(Array.from({ length: 4 }, async () => {
    while (!found && performance.now() - t0 < ms) {
      const r = await peer.request("echo", { text: "x" }, { timeout: 8000 }).catch(() => undefined);
      if (r?.by === name) found = true;
    }
  }));
  assert.ok(found, `${name} not reached within ${ms} ms`);
  return performance.now() - t0;
}

Deno.test("balancer --service: a server registered after fakes that answer only their hello is reached, and serves", async () => {
  const binder = await startDist(["binder", "--port", "0"]);
  const fake = fakes(16);
  const lb = await startBalancer([], [
    "--service",
    "compute",
    "--binders",
    binder.address,
    "--max-backends",
    "4",
  ]);
  const peer = await connectTo(lb.address, 10_000);
  let server;
  try {
    await register(binder.address, fake);
    await eventually(
      () => Promise.resolve(/instance\(s\) left out: 4 dialed at most/.test(lb.stderr())),
      10_000,
      "the cap said",
    );
    await eventually(
      async () => (await backendsOf(peer)).filter((b) => b.state === "up").length >= 4,
      10_000,
      "fakes up",
    );
    server = await startService("compute", binder.address, ["--name", "real"]);
    const ms = await reached(peer, "real", 20_000);
    assert.ok(ms < 12_000, `real reached after ${Math.round(ms)} ms`);
    // Then it serves: the fakes only get a trial now and then, each answered elsewhere.
    const { by, errors } = await load(peer, 4, 2000);
    assert.equal(errors.size, 0, JSON.stringify([...errors]));
    assert.deepEqual([...by.keys()], ["real"]);
    assert.ok(by.get("real")! >= 40, `${by.get("real")} answers in 2 s`);
    const views = await backendsOf(peer);
    assert.ok(views.length <= 4, `${views.length} dialed`);
    assert.match(lb.stderr(), /held or failed requests without answering one were dropped/);
  } finally {
    peer.close();
    await Promise.all(fake.map((l) => l.close(0)));
    await stopAll([lb, server, binder]);
  }
});

Deno.test("balancer --service: a server that served keeps its place through a flood of such fakes, and one restarted after it is reached again", async () => {
  const binder = await startDist(["binder", "--port", "0"]);
  const first = await startService("compute", binder.address, ["--name", "real"]);
  const lb = await startBalancer([], [
    "--service",
    "compute",
    "--binders",
    binder.address,
    "--max-backends",
    "4",
  ]);
  const peer = await connectTo(lb.address, 10_000);
  const fake = fakes(16);
  let again;
  try {
    await reached(peer, "real", 10_000);
    await register(binder.address, fake);
    await eventually(
      () => Promise.resolve(/instance\(s\) left out: 4 dialed at most/.test(lb.stderr())),
      10_000,
      "the cap said",
    );
    // It keeps its place and takes the requests; a fake's trial is sent again to it.
    const before = await load(peer, 4, 2000);
    assert.equal(before.errors.size, 0, JSON.stringify([...before.errors]));
    assert.deepEqual([...before.by.keys()], ["real"]);
    await first.stop();
    again = await startService("compute", binder.address, ["--name", "real"]);
    const ms = await reached(peer, "real", 20_000);
    assert.ok(ms < 12_000, `real reached again after ${Math.round(ms)} ms`);
    const after = await load(peer, 4, 2000);
    assert.equal(after.errors.size, 0, JSON.stringify([...after.errors]));
    assert.deepEqual([...after.by.keys()], ["real"]);
  } finally {
    peer.close();
    await Promise.all(fake.map((l) => l.close(0)));
    await stopAll([lb, first, again, binder]);
  }
});
