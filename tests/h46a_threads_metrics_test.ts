/**
 * hostile46a G7: under `dist balancer --threads N` a counter of `/metrics`
 * never goes down. Thread 0 sums every thread's samples at each scrape and
 * left out a thread that had not answered within a second; while the
 * balancer was busy (MessagePack clients pipelining 900 KB requests), a
 * scrape took 1.8 s and every counter dropped by that thread's part
 * (`dist_balancer_forwarded_total` 521 → 280, `dist_connections_opened_total`
 * 24 → 14), which Prometheus reads as a counter reset: `rate()` and
 * `increase()` then count the whole value again.
 */
import assert from "node:assert/strict";
import { encode } from "@msgpack/msgpack";
import { eventually, startBalancer, startServers, stopAll } from "./helpers/balancer.ts";
import { metricsUrl } from "./helpers/metrics.ts";

const SECONDS = 10;

function frame(payload: Uint8Array): Uint8Array {
  const b = new Uint8Array(4 + payload.length);
  new DataView(b.buffer).setUint32(0, payload.length);
  b.set(payload, 4);
  return b;
}

/** A MessagePack client pipelining `inFlight` echoes of 900 KB of U+0001 (each 5.4 MB as JSON). */
async function busyClient(port: number, inFlight: number, until: number): Promise<void> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const hello = { op: "hello", v: 1, codec: "msgpack", role: "client", name: "busy", heartbeat: 0 };
  const request = (id: number) =>
    frame(encode({ id, method: "echo", params: { text: "\u0001".repeat(900_000) } }));
  try {
    await conn.write(frame(new TextEncoder().encode(JSON.stringify(hello))));
    let id = 0;
    // Answers are read and dropped; a request goes out for each answer's worth of bytes read.
    const reading = (async () => {
      const buf = new Uint8Array(1 << 16);
      while ((await conn.read(buf)) !== null) {
        // Drained.
      }
    })().catch(() => {});
    const one = request(++id);
    while (performance.now() < until) {
      for (let i = 0; i < inFlight && performance.now() < until; i++) {
        let at = 0;
        while (at < one.length) at += await conn.write(one.subarray(at));
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    conn.close();
    await reading;
  } catch {
    // Cut off by the balancer: its doing, not the test's.
  }
}

Deno.test("balancer --threads 2: no /metrics counter goes down between scrapes while the balancer is busy (hostile46a G7)", async () => {
  const servers = await startServers(1);
  const lb = await startBalancer(servers, ["--threads", "2", "--metrics", "127.0.0.1:0"]);
  try {
    await eventually(
      () => Promise.resolve(lb.stderr().includes("Accepting on 2 threads")),
      10_000,
      "both threads accepting",
    );
    const url = await metricsUrl(lb.stderr);
    const port = Number(lb.address.split(":")[1]);
    const until = performance.now() + SECONDS * 1000;
    const clients = Array.from({ length: 16 }, () => busyClient(port, 4, until));
    const last = new Map<string, number>();
    const drops: string[] = [];
    let scrapes = 0;
    while (performance.now() < until) {
      const r = await fetch(url);
      const text = await r.text();
      scrapes++;
      for (const line of text.split("\n")) {
        if (line.startsWith("#") || !/_total[ {]/.test(line)) continue;
        const cut = line.lastIndexOf(" ");
        const series = line.slice(0, cut);
        const value = Number(line.slice(cut + 1));
        const before = last.get(series);
        if (before !== undefined && value < before) drops.push(`${series}: ${before} -> ${value}`);
        last.set(series, value);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    await Promise.all(clients);
    assert.ok(scrapes >= 3, `${scrapes} scrapes`);
    assert.deepEqual(drops, [], `counters went down between scrapes (of ${scrapes})`);
  } finally {
    await stopAll([lb, ...servers]);
  }
});
