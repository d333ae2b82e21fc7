/**
 * hostile h48 P9: `dist client --bench` (and `--random`) counts answers by
 * their `by` in a Map with no bound, and prints every entry. A backend
 * (a server, or a worker behind a balancer: "a worker may write anything
 * there", hostile44a H-A5) that answers each request under another `by`
 * grows the client by the size of every `by` it ever sent: 200,000
 * requests with a 200-character `by` each took the client to 688 MB of
 * RSS (13.4 s) and printed a 42 MB `by:` line. wrk, hey and ab keep no
 * such table; a bound (the first 100 names, the rest as `others ×N`) keeps
 * the report readable and the client's memory flat. Here a fake server
 * answers 5,000 echoes, each under a fresh 200-character `by`; the report
 * must stay under 64 KiB (now: about 1 MB).
 */
import assert from "node:assert/strict";
import { runDist } from "./helpers/dist.ts";
import { concat, jsonFrame, writeAll } from "./helpers/raw.ts";

const REQUESTS = 5_000;

/** A server that welcomes anyone and answers every request with a `by` never seen before. */
function fakeServer(): { port: number; close(): Promise<void> } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const pad = "x".repeat(200);
  let n = 0;
  const serveOne = async (conn: Deno.Conn) => {
    conns.add(conn);
    let buf = new Uint8Array(0);
    let welcomed = false;
    const chunk = new Uint8Array(1 << 16);
    try {
      for (;;) {
        const got = await conn.read(chunk);
        if (got === null) return;
        buf = concat([buf, chunk.subarray(0, got)]);
        const out: Uint8Array[] = [];
        let off = 0;
        while (buf.length - off >= 4) {
          const len = new DataView(buf.buffer, buf.byteOffset + off).getUint32(0);
          if (buf.length - off - 4 < len) break;
          const msg = JSON.parse(new TextDecoder().decode(buf.subarray(off + 4, off + 4 + len)));
          off += 4 + len;
          if (!welcomed) {
            welcomed = true;
            out.push(jsonFrame({
              op: "welcome",
              v: 1,
              codec: "json",
              role: "server",
              name: "fake",
              heartbeat: 1000,
              max_frame: 1 << 20,
            }));
          } else if (msg.id !== undefined) {
            out.push(jsonFrame({ id: msg.id, result: "x", by: `${pad}-${++n}` }));
          }
        }
        buf = buf.slice(off);
        if (out.length > 0) await writeAll(conn, concat(out));
      }
    } catch {
      // The client went away.
    } finally {
      conns.delete(conn);
    }
  };
  const accepting = (async () => {
    const tasks: Promise<void>[] = [];
    try {
      for await (const conn of listener) tasks.push(serveOne(conn));
    } catch {
      // Closed.
    }
    await Promise.all(tasks);
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    async close() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch {
          // Closed already.
        }
      }
      await accepting;
    },
  };
}

Deno.test("client --bench: a backend answering under ever new names does not grow the report without bound (h48 P9)", async () => {
  const server = fakeServer();
  try {
    const run = await runDist(
      ["client", "-c", `127.0.0.1:${server.port}`, "--bench", "--requests", `${REQUESTS}`],
      { timeoutMs: 60_000 },
    );
    assert.equal(run.code, 0, run.stderr.slice(-500));
    // (runDist keeps the last 1 MiB of a stream: a longer report is cut at its start.)
    assert.ok(
      run.stdout.length < 64 * 1024,
      `a report of ${run.stdout.length} characters or more for ${REQUESTS} requests: ` +
        run.stdout.slice(-300),
    );
    assert.match(run.stdout, /5000 ok/);
  } finally {
    await server.close();
  }
});
