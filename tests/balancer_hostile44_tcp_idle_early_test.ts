/**
 * hostile44c H-C5: `--idle-timeout D` closes a connection "with no byte
 * either way for this long"; README: "it fires within an eighth of it
 * late". The clock (tcp/splice.ts IdleClock) ticks every D/8 and a
 * connection is idle once 8 ticks passed since the tick of its last byte,
 * so a byte just before a tick is followed by an idle close 7/8 D later:
 * up to an eighth EARLY. A connection that talks every 0.9 s under
 * `--idle-timeout 1s` was cut after 2.7-4.5 s (HAProxy's `timeout client
 * 1s`: alive); a silent one was closed after 0.93 s.
 */
import assert from "node:assert/strict";
import { closeQuietly, sleep, within, writeAll } from "./helpers/raw.ts";
import { rawBackend, startTcpBalancer } from "./helpers/tcp_backend.ts";

/** The idle timeout (ms) and the gap between the client's bytes: 94 % of it, 6 ticks in 100 short. */
const IDLE_MS = 4000;
const GAP_MS = 3750;

Deno.test("balancer --mode tcp --idle-timeout 4s: a connection that sends a byte every 3.75 s is never closed as idle (hostile44c H-C5)", async () => {
  const backend = rawBackend(async (conn) => {
    const buf = new Uint8Array(64);
    for (let n; (n = await conn.read(buf)) !== null;) await writeAll(conn, buf.subarray(0, n));
  });
  const lb = await startTcpBalancer([backend.address], [
    "--check-interval",
    "1s",
    "--idle-timeout",
    `${IDLE_MS}ms`,
  ]);
  const [host, port] = lb.address.split(":");
  const conn = await Deno.connect({ hostname: host, port: Number(port) });
  const started = performance.now();
  let echoed = 0;
  try {
    // 7 gaps: each is cut on main's clock with a chance of a half (the byte's place in a tick).
    for (let i = 0; i < 8; i++) {
      if (i > 0) await sleep(GAP_MS);
      let n: number | null = null;
      try {
        await writeAll(conn, new Uint8Array([i]));
        n = await within(conn.read(new Uint8Array(8)), 3000, "the echo");
      } catch {
        // Closed (reset) by the balancer.
      }
      if (n !== 1) break;
      echoed++;
    }
    const idleLines = lb.stderr().split("\n").filter((l) => / closed \(idle\)/.test(l));
    assert.equal(
      echoed,
      8,
      `closed after ${Math.round((performance.now() - started) / 1000)} s, ${echoed} of 8 echoed ` +
        `with a byte every ${GAP_MS} ms: ${idleLines.join(" | ")}`,
    );
  } finally {
    closeQuietly(conn);
    await lb.stop();
    await backend.close();
  }
});
