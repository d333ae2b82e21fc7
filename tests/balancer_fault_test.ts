/**
 * The fault scenario of the balancer: a benchmark through a balancer over 3
 * servers while one server is SIGKILLed mid-run. No client request may
 * fail; the dead server leaves the rotation and comes back once restarted.
 */
import assert from "node:assert/strict";
import { runDist, startDist } from "./helpers/dist.ts";
import {
  allUp,
  backendsOf,
  connectTo,
  eventually,
  startBalancer,
  startServers,
  stopAll,
} from "./helpers/balancer.ts";
import { sleep } from "./helpers/raw.ts";

const INTERVAL_MS = 200;
const RISE = 2;
const FALL = 3;
/** Slack for a loaded 2-core machine on top of each bound. */
const MARGIN_MS = 1500;

Deno.test("balancer: a server SIGKILLed mid-bench costs no client error, leaves and rejoins the rotation", async () => {
  const servers = await startServers(3);
  const lb = await startBalancer(servers, [
    "--check-interval",
    `${INTERVAL_MS}ms`,
    "--rise",
    String(RISE),
    "--fall",
    String(FALL),
  ]);
  const watcher = await connectTo(lb.address);
  let restarted: Awaited<ReturnType<typeof startDist>> | undefined;
  try {
    await allUp(watcher);
    let benchDone = false;
    const bench = runDist([
      "client",
      "--connect",
      lb.address,
      "--bench",
      "--json",
      "--requests",
      "30000",
      "--concurrency",
      "64",
      "--connections",
      "4",
    ], { timeoutMs: 90_000 }).finally(() => benchDone = true);

    // Kill s2 once a fifth of the run is served.
    const victim = servers[1];
    await eventually(
      async () => (await backendsOf(watcher)).reduce((n, b) => n + b.served, 0) >= 6000,
      60_000,
      "6000 requests served",
    );
    assert.equal(benchDone, false, "the kill lands mid-run");
    const killedAt = performance.now();
    await victim.stop("SIGKILL");
    await eventually(
      async () => (await backendsOf(watcher)).find((b) => b.peer === "s2")!.state === "down",
      INTERVAL_MS * FALL + MARGIN_MS,
      "s2 out of rotation",
    );
    const outAfter = performance.now() - killedAt;

    const result = await bench;
    assert.equal(result.code, 0, `bench failed: ${result.stderr}${result.stdout}`);
    const summary = JSON.parse(result.stdout.trim().split("\n").at(-1)!);
    assert.deepEqual(summary.errors, {}, "zero client errors");
    assert.equal(summary.ok, 30000);
    assert.ok(summary.by.s1 > 0 && summary.by.s3 > 0);

    // Restart s2 on its port: back within rise × interval of listening.
    restarted = await startDist(["server", "--port", String(victim.port), "--name", "s2"]);
    const listeningAt = performance.now();
    await eventually(
      async () => (await backendsOf(watcher)).find((b) => b.peer === "s2")?.state === "up",
      RISE * INTERVAL_MS + MARGIN_MS,
      "s2 back in rotation",
    );
    const backAfter = performance.now() - listeningAt;
    const before = (await backendsOf(watcher)).find((b) => b.name === victim.address)!.served;
    for (let i = 0; i < 6; i++) await watcher.call("echo", { text: "x" });
    const after = (await backendsOf(watcher)).find((b) => b.name === victim.address)!.served;
    assert.equal(after - before, 2, "s2 takes its turn again");
    const stats = await watcher.call("sys.stats") as Record<string, number>;
    console.log(
      `s2 out ${Math.round(outAfter)} ms after the kill, back ${Math.round(backAfter)} ms ` +
        `after restarting; ${stats.retries} requests retried, bench p99 ${summary.latency_ms.p99} ms`,
    );
  } finally {
    watcher.close();
    await stopAll([lb, restarted, ...servers]);
  }
});

Deno.test("balancer: every backend dying fails requests with UNAVAILABLE, not a hang", async () => {
  const servers = await startServers(2);
  const lb = await startBalancer(servers, ["--queue-timeout", "500ms"]);
  const peer = await connectTo(lb.address);
  try {
    await allUp(peer);
    const calls = Array.from(
      { length: 10 },
      () => peer.call("sleep", { ms: 2000 }).then(() => "ok", (e) => e.code),
    );
    await sleep(200);
    await Promise.all(servers.map((s) => s.stop("SIGKILL")));
    const t0 = performance.now();
    const outcomes = await Promise.all(calls);
    assert.deepEqual(outcomes, Array(10).fill("UNAVAILABLE"));
    assert.ok(performance.now() - t0 < 4000, "failed within the queue timeout, with margin");
  } finally {
    peer.close();
    await stopAll([lb, ...servers]);
  }
});

Deno.test("balancer: a server that stops answering (SIGSTOP) is out after `fall` missed checks, back after `rise`", async () => {
  const servers = await startServers(2);
  const lb = await startBalancer(servers, [
    "--check-interval",
    `${INTERVAL_MS}ms`,
    "--fall",
    String(FALL),
    "--rise",
    String(RISE),
    // Heartbeats slower than the checks: the checks must be what notices.
    "--heartbeat",
    "5s",
  ]);
  const peer = await connectTo(lb.address);
  const s1 = () => backendsOf(peer).then((list) => list.find((b) => b.peer === "s1")!);
  try {
    await allUp(peer);
    servers[0].child.kill("SIGSTOP");
    const stoppedAt = performance.now();
    await eventually(
      async () => (await s1()).state === "down",
      INTERVAL_MS * (FALL + 1) + MARGIN_MS,
      "s1 out",
    );
    assert.match((await s1()).reason, /3 health checks missed/);
    assert.ok(performance.now() - stoppedAt >= INTERVAL_MS * (FALL - 1), "not before the misses");
    for (let i = 0; i < 4; i++) assert.equal((await peer.request("echo", ["x"])).by, "s2");
    servers[0].child.kill("SIGCONT");
    await eventually(
      async () => (await s1()).state === "up",
      INTERVAL_MS * (RISE + 1) + MARGIN_MS,
      "s1 back",
    );
  } finally {
    try {
      servers[0].child.kill("SIGCONT");
    } catch {
      // Already gone.
    }
    peer.close();
    await stopAll([lb, ...servers]);
  }
});
