/**
 * hostile45c K-C5 (regression of stop 44's H-C1 fix, 6d862f5): a
 * connection its client resets before it is accepted makes Deno's `accept`
 * fail (ENOTCONN). Stop 44 made every dist port go on to the next accept at
 * once, but the HTTP ports — `--metrics` of every role and `dist up`'s
 * dashboard, both served by obs/http_guarded.ts — still take it for a
 * shortage of descriptors: a WARN line, then a pause of 100 ms doubling to
 * 5 s with no success between to reset it. So 5 resets every 100 ms keep
 * Prometheus from scraping.
 */
import assert from "node:assert/strict";
import { newConnections, resetter } from "./helpers/resetter.ts";
import { startDist } from "./helpers/dist.ts";

const ATTACK_MS = 4000;

/** One scrape on a new connection (no pool): its status line. */
async function scrape(port: number): Promise<void> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(
      new TextEncoder().encode("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    );
    const buf = new Uint8Array(64);
    const n = await conn.read(buf);
    assert.match(new TextDecoder().decode(buf.subarray(0, n ?? 0)), /^HTTP\/1\.1 200/);
  } finally {
    conn.close();
  }
}

Deno.test("hostile45c K-C5: clients that reset before the accept do not stop a --metrics port's scrapes", async () => {
  const server = await startDist(["server", "--port", "0", "--metrics", "127.0.0.1:0"]);
  try {
    const m = server.stderr().match(/Metrics at http:\/\/127\.0\.0\.1:(\d+)\/metrics/);
    assert.ok(m, server.stderr());
    const port = Number(m[1]);
    const attack = resetter(port, 5);
    const { answered, failed, slowest } = await newConnections(() => scrape(port), ATTACK_MS);
    const resets = await attack.stop();
    const warned = server.stderr().split("\n").filter((l) => l.includes("cannot accept")).length;
    assert.ok(
      answered >= 15 && failed === 0 && slowest < 1500,
      `${answered} scrapes answered, ${failed} failed, slowest ${Math.round(slowest)} ms, ` +
        `beside ${resets} resets (${warned} "cannot accept" lines)`,
    );
  } finally {
    await server.stop();
  }
});
