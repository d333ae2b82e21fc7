/**
 * `dist balancer --mode tcp`: a backend back up after being out takes new
 * connections at once, however many it kept open meanwhile. (The RPC mode's
 * slow start let a backend back up have one request in flight; in this mode
 * that was one open connection, so a backend that kept one client
 * connection while it was out got no new one until every old one ended:
 * with every backend so, every new client was closed "no backend is up".)
 */
import assert from "node:assert/strict";
import { startDist } from "./helpers/dist.ts";
import { closeQuietly, waitFor, within, writeAll } from "./helpers/raw.ts";

const encoder = new TextEncoder();

/** An echo server on `port` (0: a free one) until closed; connections it took live on. */
function echoOn(port: number, conns: Set<Deno.Conn>) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port });
  (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      (async () => {
        const buf = new Uint8Array(1024);
        for (let n; (n = await conn.read(buf)) !== null;) await writeAll(conn, buf.subarray(0, n));
      })().catch(() => {}).finally(() => closeQuietly(conn));
    }
  })().catch(() => {});
  return listener;
}

/** Whether `conn` gets `text` echoed back within 3 s. */
async function echoes(conn: Deno.Conn, text: string): Promise<boolean> {
  await writeAll(conn, encoder.encode(text));
  const buf = new Uint8Array(64);
  const n = await within(conn.read(buf).catch(() => null), 3000, "the echo");
  return n === text.length;
}

Deno.test("balancer --mode tcp: a backend back up after being out takes new connections though it kept old ones open", async () => {
  const conns = new Set<Deno.Conn>();
  let listener = echoOn(0, conns);
  const port = (listener.addr as Deno.NetAddr).port;
  const lb = await startDist([
    "balancer",
    "--mode",
    "tcp",
    "--port",
    "0",
    "--backends",
    `127.0.0.1:${port}`,
    "--check-interval",
    "100ms",
  ]);
  const clients: Deno.Conn[] = [];
  const dial = async () => {
    const c = await Deno.connect({ hostname: "127.0.0.1", port: lb.port });
    clients.push(c);
    return c;
  };
  try {
    const kept = await dial();
    assert.equal(await echoes(kept, "kept"), true);
    // The backend stops listening (its open connection lives on): checks are refused, it is out.
    closeQuietly(listener);
    await waitFor(() => /is down/.test(lb.stderr()), 5000, "the backend out");
    listener = echoOn(port, conns);
    await waitFor(() => /is up: health checks pass/.test(lb.stderr()), 5000, "the backend back");
    // Before: "closed: no backend is up (none tried)" for as long as `kept` stayed open.
    for (let i = 0; i < 3; i++) {
      assert.equal(await echoes(await dial(), `new${i}`), true, lb.stderr());
    }
    assert.equal(await echoes(kept, "still"), true);
    assert.doesNotMatch(lb.stderr(), /no backend is up/);
  } finally {
    for (const c of clients) closeQuietly(c);
    await lb.stop();
    closeQuietly(listener);
    for (const c of conns) closeQuietly(c);
  }
});
