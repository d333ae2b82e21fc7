/**
 * h48 P12, P13 on a role's metrics port (the guarded HTTP server of obs/):
 * a request whose lines end in a bare LF is answered (RFC 9112 2.2; it
 * waited 10 s for the header timeout and was cut with no answer), and a 400
 * for a target that is no URL (`GET * HTTP/1.1`) closes the connection, as
 * a malformed header's does.
 */
import assert from "node:assert/strict";
import { startDist } from "./helpers/dist.ts";
import { metricsUrl } from "./helpers/metrics.ts";

/** Sends `text` and reads until the server closes (or `ms` pass: then "timeout" is appended). */
async function exchange(port: number, text: string, ms = 5000): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const timer = setTimeout(() => conn.close(), ms);
  let out = "";
  let timedOut = true;
  try {
    await conn.write(new TextEncoder().encode(text));
    const buf = new Uint8Array(1 << 16);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) {
        timedOut = false;
        break;
      }
      out += new TextDecoder().decode(buf.subarray(0, n));
    }
  } catch {
    // Closed by the timer.
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch {
      // Closed.
    }
  }
  return timedOut ? out + "\n[timeout]" : out;
}

Deno.test("metrics HTTP: bare-LF line ends are answered, a 400 for a non-URL target closes (h48 P12, P13)", async () => {
  const server = await startDist(["server", "--port", "0", "--metrics", "127.0.0.1:0"]);
  try {
    const port = Number(new URL(await metricsUrl(server.stderr)).port);
    const bare = await exchange(port, "GET /metrics HTTP/1.0\nUser-Agent: nc\n\n");
    assert.match(bare, /^HTTP\/1\.1 200 /, bare.slice(0, 300));
    assert.match(bare, /^dist_info\{/m);
    assert.doesNotMatch(bare, /\[timeout\]$/);
    // Mixed: CRLF lines, then a bare LF blank line.
    const mixed = await exchange(port, "GET /metrics HTTP/1.0\r\nHost: x\r\n\n");
    assert.match(mixed, /^HTTP\/1\.1 200 /, mixed.slice(0, 300));

    const star = await exchange(port, "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n");
    assert.match(star, /^HTTP\/1\.1 400 /, star.slice(0, 300));
    assert.match(star, /^connection: close\r$/im);
    assert.doesNotMatch(star, /\[timeout\]$/, "the connection was kept open");
  } finally {
    await server.stop();
  }
});
