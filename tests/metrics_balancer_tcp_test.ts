/**
 * What `--metrics` says of an L4 balancer (`--mode tcp`): its client
 * connections as the RPC ports count theirs, and each backend's connections,
 * bytes, failed connects and state. It passes `promtool check metrics`
 * (`--threads 2`: balancer_hostile44_tcp_metrics_test.ts).
 */
import assert from "node:assert/strict";
import { closeQuietly, writeAll } from "./helpers/raw.ts";
import { rawBackend, startTcpBalancer } from "./helpers/tcp_backend.ts";
import { metricsUrl, promtoolCheck, sample, scrape, scrapeUntil } from "./helpers/metrics.ts";

/** `name{backend="address"}`. */
const of = (name: string, address: string) => `${name}{backend="${address}"}`;

Deno.test("balancer --mode tcp --metrics: connections, bytes and each backend's figures", async () => {
  const echo = () =>
    rawBackend(async (conn) => {
      const buf = new Uint8Array(1024);
      for (let n; (n = await conn.read(buf)) !== null;) await writeAll(conn, buf.subarray(0, n));
    });
  const a = echo(), b = echo();
  // A port nobody listens on: down after the first check.
  const gone = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const dead = `127.0.0.1:${(gone.addr as Deno.NetAddr).port}`;
  gone.close();
  const lb = await startTcpBalancer([a.address, b.address, dead], [
    "--metrics",
    "127.0.0.1:0",
    "--policy",
    "round-robin",
  ]);
  const port = Number(lb.address.split(":")[1]);
  const conns: Deno.Conn[] = [];
  try {
    const url = await metricsUrl(lb.stderr);
    for (let i = 0; i < 4; i++) {
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      conns.push(c);
      await writeAll(c, new Uint8Array(10));
      let got = 0;
      const buf = new Uint8Array(64);
      while (got < 10) got += (await c.read(buf)) ?? 10;
    }
    const open = await scrape(url);
    assert.equal(await promtoolCheck(open), "", open);
    assert.equal(sample(open, "dist_connections"), 4, open);
    assert.equal(sample(open, "dist_connections_opened_total"), 4, open);
    assert.equal(sample(open, 'dist_balancer_backends{state="up"}'), 2, open);
    assert.equal(sample(open, of("dist_balancer_backend_up", dead)), 0, open);
    for (const x of [a, b]) {
      assert.equal(sample(open, of("dist_balancer_backend_up", x.address)), 1, open);
      assert.equal(sample(open, of("dist_balancer_backend_connections", x.address)), 2, open);
      assert.equal(sample(open, of("dist_balancer_backend_connections_total", x.address)), 2);
      // The bytes of connections still open count (an echo: as many back).
      assert.equal(sample(open, of("dist_balancer_backend_sent_bytes_total", x.address)), 20);
      assert.equal(sample(open, of("dist_balancer_backend_received_bytes_total", x.address)), 20);
    }
    assert.equal(sample(open, "dist_received_bytes_total"), 40, open);
    assert.equal(sample(open, "dist_sent_bytes_total"), 40, open);

    for (const c of conns.splice(0)) closeQuietly(c);
    const closed = await scrapeUntil(
      url,
      (t) => sample(t, "dist_connections") === 0,
      5000,
      "every connection closed",
    );
    assert.equal(sample(closed, of("dist_balancer_backend_connections", a.address)), 0, closed);
    assert.equal(sample(closed, "dist_received_bytes_total"), 40, "ended ones' bytes stay counted");
    assert.equal(sample(closed, of("dist_balancer_backend_sent_bytes_total", b.address)), 20);

    // The backends all stop: a client is closed with no backend, each failed connect counted.
    await a.close();
    await b.close();
    await scrapeUntil(
      url,
      (t) => sample(t, 'dist_balancer_backends{state="up"}') === 0,
      5000,
      "every backend down",
    );
    const c = await Deno.connect({ hostname: "127.0.0.1", port });
    await c.read(new Uint8Array(8)).catch(() => null);
    closeQuietly(c);
    const none = await scrapeUntil(
      url,
      (t) => sample(t, 'dist_balancer_unserved_connections_total{why="no_backend"}') === 1,
      5000,
      "the client closed with no backend",
    );
    assert.equal(await promtoolCheck(none), "", none);
    const failed = [a.address, b.address, dead].map((x) =>
      sample(none, of("dist_balancer_backend_connect_failures_total", x))!
    );
    assert.equal(
      failed.reduce((s, n) => s + n),
      sample(none, "dist_balancer_connect_failures_total"),
    );
    assert.ok(failed.every((n) => n === 1), `each out backend dialed once: ${failed}\n${none}`);
  } finally {
    for (const c of conns) closeQuietly(c);
    await lb.stop();
    await a.close();
    await b.close();
  }
});
