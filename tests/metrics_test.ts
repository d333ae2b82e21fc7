/**
 * `--metrics HOST:PORT` on real processes: every role's /metrics passes
 * `promtool check metrics` (Debian `prometheus`, installed by .ci/run),
 * counters move with traffic, scrapes during load answer, and bad HTTP on
 * the metrics port never harms the role.
 */
import assert from "node:assert/strict";
import { BrokerClient, streamDist } from "./helpers/broker.ts";
import { type DistProcess, runDist, startDist } from "./helpers/dist.ts";
import { connectTo, startBalancer } from "./helpers/balancer.ts";
import { sleep, writeAll } from "./helpers/raw.ts";
import { Sampler } from "../obs/mod.ts";
import { metricsUrl, PROMTOOL, promtoolCheck as check, sample, scrape } from "./helpers/metrics.ts";

const M = ["--metrics", "127.0.0.1:0"];

/** The times (ms) at which `sampler` times events that come at `at(i)`, i < n. */
function timedAt(sampler: Sampler, clock: { now: number }, n: number, at: (i: number) => number) {
  const timed: number[] = [];
  for (let i = 0; i < n; i++) {
    clock.now = at(i);
    if (sampler.take() !== 0) timed.push(clock.now);
  }
  return timed;
}

Deno.test("Sampler times every event at a low rate, one per 2 to 4 ms at a high one", () => {
  const clock = { now: 0 };
  const sampler = new Sampler(() => clock.now);
  // 100 events 10 ms apart: each one.
  assert.equal(timedAt(sampler, clock, 100, (i) => 1 + i * 10).length, 100);
  // 1,000,000 events a second for one second: about one per 2 to 4 ms.
  const start = clock.now + 10;
  const fast = timedAt(sampler, clock, 1_000_000, (i) => start + i / 1000);
  assert.ok(fast.length >= 250 && fast.length <= 520, `${fast.length} timed`);
  const gaps = fast.slice(20).map((t, i) => t - fast[19 + i]);
  assert.ok(
    Math.min(...gaps) >= 1 && Math.max(...gaps) <= 4.01,
    `gaps ${Math.min(...gaps)}–${Math.max(...gaps)}`,
  );
  // Slow again (10 ms apart) for 3 s, nudged once a second as a registry does:
  // after the second nudge, each one is timed again.
  const slow = clock.now + 10;
  const after: number[] = [];
  for (let s = 0; s < 3; s++) {
    sampler.nudge();
    after.push(...timedAt(sampler, clock, 100, (i) => slow + s * 1000 + i * 10));
  }
  assert.ok(after.length >= 100 && after.length <= 203, `${after.length} of 300 timed`);
  assert.deepEqual(after.slice(-100), Array.from({ length: 100 }, (_, i) => slow + 2000 + i * 10));
});

Deno.test({
  name: "--metrics: every role's /metrics passes promtool check metrics, under traffic",
  ignore: PROMTOOL === undefined,
  async fn() {
    const started: { stop: () => Promise<unknown> }[] = [];
    try {
      const server = await startDist(["server", "--port", "0", ...M]);
      started.push(server);
      const broker = await startDist(["broker", "--port", "0", ...M]);
      started.push(broker);
      const binder = await startDist(["binder", "--port", "0", ...M]);
      started.push(binder);
      const balancer = await startBalancer([server], M);
      started.push(balancer);
      const worker = streamDist(["worker", "--balancer", balancer.workerAddress, ...M]);
      started.push(worker);
      const consumer = streamDist(["consumer", "--broker", broker.address, "--topic", "/m", ...M]);
      started.push(consumer);
      // Traffic through each, so the families have samples, errors included.
      for (const args of [["add", "1", "2"], ["div", "1", "0"]]) {
        await runDist(["client", "--connect", balancer.address, ...args]);
      }
      await runDist(["client", "--connect", server.address, "nosuch"]);
      const pub = await BrokerClient.connect(broker.port);
      await pub.confirm("/m/a", { "è": 1 }, true);
      pub.publish("/m/b", 2); // a notification: the fast path
      await pub.confirm("/m/c", "ü");
      pub.close();
      const binderPeer = await connectTo(binder.address);
      await binderPeer.call("binder.register", {
        service: "svc",
        host: "127.0.0.1",
        port: 1,
        ttl_ms: 120_000, // outlives a slow machine's scrapes
      });
      binderPeer.close();
      const procs: [string, () => string][] = [
        ["server", server.stderr],
        ["broker", broker.stderr],
        ["binder", binder.stderr],
        ["balancer", balancer.stderr],
        ["worker", worker.stderr],
        ["consumer", consumer.stderr],
      ];
      for (const [role, stderr] of procs) {
        const text = await scrape(await metricsUrl(stderr));
        assert.equal(await check(text), "", `${role}'s metrics:\n${text}`);
        assert.equal(sample(text, `dist_info{role="${role}",name=`) ?? 1, 1);
        assert(sample(text, "process_resident_memory_bytes")! > 0, role);
      }
      const b = await scrape(await metricsUrl(broker.stderr));
      assert.equal(sample(b, "dist_broker_retained_topics"), 3); // each topic keeps its last value
      assert(sample(b, "dist_broker_messages_received_total")! >= 3);
      const bd = await scrape(await metricsUrl(binder.stderr));
      assert.equal(sample(bd, "dist_binder_instances"), 1);
      const s = await scrape(await metricsUrl(server.stderr));
      assert.equal(sample(s, 'dist_requests_total{class="unknown",code="UNKNOWN_METHOD"}'), 1);
    } finally {
      await Promise.all(started.map((p) => p.stop()));
    }
  },
});

Deno.test("--metrics: request counters follow the traffic, and scrapes answer during load", async () => {
  const server = await startDist(["server", "--port", "0", ...M]);
  try {
    const url = await metricsUrl(server.stderr);
    const ok = 'dist_requests_total{class="ops",code="OK"}';
    assert.equal(sample(await scrape(url), ok), 0); // no ops request yet
    const n = 5;
    for (let i = 0; i < n; i++) {
      await runDist(["client", "--connect", server.address, "add", String(i), "1"]);
    }
    const text = await scrape(url);
    assert.equal(sample(text, ok), n);
    // Requests more than 2 ms apart are each timed (see Sampler).
    const timed = 'dist_request_duration_seconds_count{class="ops"}';
    assert.equal(sample(text, timed), n);
    assert.equal(sample(text, "dist_connections_opened_total"), n);
    assert(sample(text, "dist_received_bytes_total")! > 0);
    // A benchmark runs while the endpoint is scraped: every scrape answers,
    // and the count only grows.
    const bench = runDist([
      "client",
      "--connect",
      server.address,
      "--bench",
      "--requests",
      "3000",
      "--concurrency",
      "16",
    ]);
    let last = n;
    let scrapes = 0;
    let done = false;
    bench.finally(() => done = true);
    while (!done && scrapes < 200) {
      const v = sample(await scrape(url), ok) ?? 0;
      assert(v >= last, `the count went back from ${last} to ${v}`);
      last = v;
      scrapes++;
      await sleep(20);
    }
    const result = await bench;
    assert.equal(result.code, 0, result.stderr);
    assert(scrapes >= 1);
    const after = await scrape(url);
    assert.ok(sample(after, ok)! >= n + 3000); // (and the bench's own warm-up)
    // Under load a sample is timed, not every request.
    assert.ok(sample(after, timed)! > n && sample(after, timed)! < sample(after, ok)! / 2, after);
  } finally {
    await server.stop();
  }
});

Deno.test("--metrics: bad HTTP on the metrics port never harms the role", async () => {
  const server: DistProcess = await startDist(["server", "--port", "0", ...M]);
  try {
    const url = new URL(await metricsUrl(server.stderr));
    const port = Number(url.port);
    const hostile = [
      "GARBAGE\r\n\r\n",
      "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
      "GET /metrics HTTP/1.1\r\n" + "X: " + "a".repeat(200_000) + "\r\n\r\n",
      "GET /metrics HTTP/1.1\r\nHost:", // cut off mid-header
      "\x16\x03\x01\x00\x05hello", // TLS-looking bytes
    ];
    for (const bytes of hostile) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        await writeAll(conn, new TextEncoder().encode(bytes));
      } catch {
        // The server may close early: that is an answer too.
      }
      conn.close();
    }
    for (const [path, method, status] of [["/", "GET", 404], ["/metrics", "POST", 405]] as const) {
      const r = await fetch(new URL(path, url), { method });
      await r.body?.cancel();
      assert.equal(r.status, status);
    }
    assert.equal((await fetch(url, { method: "HEAD" })).status, 200);
    const text = await scrape(url.href);
    assert(text.includes("dist_requests_total"));
    const r = await runDist(["client", "--connect", server.address, "echo", "still"]);
    assert.equal(r.code, 0, r.stderr);
  } finally {
    const { code } = await server.stop();
    assert.equal(code, 0);
  }
});

Deno.test("--metrics: a busy metrics port is the user's mistake, said with the flag", async () => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const r = await runDist([
      "server",
      "--port",
      "0",
      "--metrics",
      `127.0.0.1:${(taken.addr as Deno.NetAddr).port}`,
    ]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /dist: --metrics 127\.0\.0\.1:\d+: port \d+ is in use/);
  } finally {
    taken.close();
  }
});
