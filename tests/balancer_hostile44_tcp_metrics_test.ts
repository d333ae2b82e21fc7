/**
 * hostile44c H-C3: what `--metrics` says of connections. In `--mode tcp`
 * the proxy counts its connections (open, total, refused, closed to make
 * room, no backend, failed connects: `TcpProxy.stats()`), but none of it
 * reaches `/metrics`, which has the backends by state and the checks
 * only; the RPC mode's `dist_connections` ("Connections open now") is not
 * there. With `--threads 2`, `dist_connections` is thread 0's alone: 18
 * with 40 open.
 */
import assert from "node:assert/strict";
import { closeQuietly, HELLO, jsonFrame, RawReader, writeAll } from "./helpers/raw.ts";
import { rawBackend, startTcpBalancer } from "./helpers/tcp_backend.ts";
import { eventually, startBalancer, startServers, stopAll } from "./helpers/balancer.ts";
import { metricsUrl, promtoolCheck, sample, scrape } from "./helpers/metrics.ts";

/** The value of `dist_connections` (unlabelled), or undefined when the scrape has none. */
function connectionsGauge(text: string): number | undefined {
  const m = /^dist_connections (\d+)$/m.exec(text);
  return m === null ? undefined : Number(m[1]);
}

Deno.test("balancer --mode tcp --metrics: the connections open now are in dist_connections (hostile44c H-C3)", async () => {
  const backend = rawBackend(async (conn) => {
    const buf = new Uint8Array(1024);
    for (let n; (n = await conn.read(buf)) !== null;) await writeAll(conn, buf.subarray(0, n));
  });
  const lb = await startTcpBalancer([backend.address], [
    "--check-interval",
    "1s",
    "--metrics",
    "127.0.0.1:0",
  ]);
  const port = Number(lb.address.split(":")[1]);
  const conns: Deno.Conn[] = [];
  try {
    const url = await metricsUrl(lb.stderr);
    for (let i = 0; i < 3; i++) {
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      conns.push(c);
      await writeAll(c, new Uint8Array([1]));
      assert.equal(await c.read(new Uint8Array(4)), 1);
    }
    const text = await scrape(url);
    assert.equal(
      connectionsGauge(text),
      3,
      `dist_connections with 3 proxied connections open; the scrape:\n${text}`,
    );
  } finally {
    for (const c of conns) closeQuietly(c);
    await lb.stop();
    await backend.close();
  }
});

Deno.test("balancer --threads 2 --metrics: dist_connections counts every thread's connections (hostile44c H-C3)", async () => {
  const servers = await startServers(1);
  const lb = await startBalancer(servers, ["--threads", "2", "--metrics", "127.0.0.1:0"]);
  const port = Number(lb.address.split(":")[1]);
  const conns: Deno.Conn[] = [];
  try {
    await eventually(
      () => Promise.resolve(lb.stderr().includes("Accepting on 2 threads")),
      10_000,
      "both threads accepting",
    );
    const url = await metricsUrl(lb.stderr);
    const base = connectionsGauge(await scrape(url)) ?? 0;
    // 32 connections: all on one thread is a 2^-31 chance.
    for (let i = 0; i < 32; i++) {
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      conns.push(c);
      await writeAll(c, jsonFrame(HELLO));
      const reader = new RawReader(c);
      assert.equal((await reader.json())?.op, "welcome");
      await writeAll(c, jsonFrame({ op: "request", id: 1, method: "sys.ping", params: {} }));
      assert.equal((await reader.json())?.id, 1);
    }
    let seen: number | undefined;
    // Scraped until it says so, 3 s at most (a thread's count may lag a turn).
    for (let i = 0; i < 30 && seen !== base + 32; i++) {
      seen = connectionsGauge(await scrape(url));
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(seen, base + 32, `dist_connections ${seen} with ${base} + 32 open`);
    // Every thread's requests summed, the backends by thread (each has its pool), promtool clean.
    const text = await scrape(url);
    assert.equal(sample(text, 'dist_requests_total{class="sys",code="OK"}'), 32, text);
    for (const thread of ["0", "1"]) {
      const up = sample(text, `dist_balancer_backends{state="up",thread="${thread}"}`);
      assert.equal(up, 1, `thread ${thread}'s pool: its server up\n${text}`);
    }
    assert.equal(await promtoolCheck(text), "", text);
  } finally {
    for (const c of conns) closeQuietly(c);
    await stopAll([lb, ...servers]);
  }
});
