/**
 * The HTTP server of the read-only ports (obs/http_guarded.ts), in
 * process with small limits: a header that does not arrive in time is cut,
 * connections past the cap take the place of the longest waiting (or are
 * refused 503 when all are busy), answers keep their connection open, an
 * event stream is cancelled when its reader goes, and malformed requests
 * are answered, never thrown.
 */
import assert from "node:assert/strict";
import { type GuardedServer, serveGuarded } from "../obs/http_guarded.ts";
import { closeQuietly, sleep } from "./helpers/raw.ts";

const encoder = new TextEncoder();

/** A server with a 300 ms header timeout and at most 4 connections; `/sse` streams. */
function small(events: { cancelled: number }): { server: GuardedServer; base: string } {
  const server = serveGuarded(
    { hostname: "127.0.0.1", port: 0, what: "test", maxConnections: 4, headerTimeoutMs: 300 },
    (request) => {
      const path = new URL(request.url).pathname;
      if (path === "/sse") {
        let timer: ReturnType<typeof setInterval>;
        const body = new ReadableStream<Uint8Array>({
          start(c) {
            let i = 0;
            timer = setInterval(() => c.enqueue(encoder.encode(`data: ${i++}\n\n`)), 20);
          },
          cancel() {
            clearInterval(timer);
            events.cancelled++;
          },
        });
        return new Response(body, { headers: { "content-type": "text/event-stream" } });
      }
      return new Response(request.method === "HEAD" ? null : `path ${path}\n`);
    },
  );
  return { server, base: `http://127.0.0.1:${server.addr.port}` };
}

async function connect(server: GuardedServer, bytes: string): Promise<Deno.Conn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  if (bytes !== "") await conn.write(encoder.encode(bytes));
  return conn;
}

/** Whether the server closed `conn` within `ms` (a read gives EOF or fails). */
async function closedWithin(conn: Deno.Conn, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const buf = new Uint8Array(4096);
  const eof = (async () => {
    try {
      while ((await conn.read(buf)) !== null) { /* an answer: read on */ }
    } catch {
      // Reset: closed too.
    }
    return true;
  })();
  const r = await Promise.race([
    eof,
    new Promise<boolean>((res) => timer = setTimeout(res, ms, false)),
  ]);
  clearTimeout(timer);
  return r;
}

/** One request on a fresh connection; the answer's status line. */
async function statusOf(server: GuardedServer, request: string): Promise<string> {
  const conn = await connect(server, request);
  try {
    const buf = new Uint8Array(4096);
    const n = await conn.read(buf).catch(() => null); // reset: a cut before the answer was read
    return new TextDecoder().decode(buf.subarray(0, n ?? 0)).split("\r\n")[0];
  } finally {
    closeQuietly(conn);
  }
}

const opts = { sanitizeOps: false, sanitizeResources: false };

Deno.test({
  name: "serveGuarded() cuts a request header that does not arrive whole in time",
  ...opts,
  async fn() {
    const { server, base } = small({ cancelled: 0 });
    try {
      const slow = await connect(server, "GET / HTTP/1.1\r\nHost: x\r\n");
      const t0 = performance.now();
      // A byte now and then does not extend it: the header has 300 ms in all.
      const dribble = setInterval(() => slow.write(Uint8Array.of(0x58)).catch(() => {}), 50);
      try {
        assert.ok(await closedWithin(slow, 2000), "the slow client is still connected");
      } finally {
        clearInterval(dribble);
        closeQuietly(slow);
      }
      const took = performance.now() - t0;
      assert.ok(took >= 250 && took < 1500, `cut after ${took.toFixed(0)} ms`);
      assert.equal(await (await fetch(`${base}/after`)).text(), "path /after\n");
    } finally {
      await server.shutdown();
    }
  },
});

Deno.test({
  name:
    "serveGuarded() past its cap drops the longest waiting connection, or answers 503 when all are busy",
  ...opts,
  async fn() {
    const events = { cancelled: 0 };
    const { server, base } = small(events);
    const held: Deno.Conn[] = [];
    try {
      for (let i = 0; i < 6; i++) held.push(await connect(server, "GE"));
      await sleep(50);
      assert.ok(server.connections <= 4, `${server.connections} connections open`);
      // The first two made room for the later ones.
      assert.ok(await closedWithin(held[0], 200));
      assert.ok(await closedWithin(held[1], 200));
      // A real request still gets in (in place of the longest waiting).
      assert.equal(await (await fetch(`${base}/in`)).text(), "path /in\n");
      for (const c of held) closeQuietly(c);
      held.length = 0;
      await sleep(50);
      // Four event streams busy: a fifth connection is refused, not queued.
      const streams = await Promise.all(
        Array.from({ length: 4 }, () => fetch(`${base}/sse`)),
      );
      const readers = streams.map((r) => r.body!.getReader());
      for (const r of readers) await r.read();
      assert.equal(server.connections, 4);
      assert.match(await statusOf(server, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n"), / 503 /);
      for (const r of readers) await r.cancel();
      await sleep(100);
      assert.equal(events.cancelled, 4, "each stream was cancelled when its reader went");
      assert.equal(server.connections, 0);
    } finally {
      for (const c of held) closeQuietly(c);
      await server.shutdown();
    }
  },
});

/** Bytes of `/big`: more than loopback's socket buffers take, so a peer that does not read stalls the write. */
const BIG = 48 * 1024 * 1024;

Deno.test({
  name:
    "serveGuarded() past its cap drops a connection stalled on a body or on a write, longest stalled first",
  ...opts,
  async fn() {
    const big = new Uint8Array(BIG);
    const writing = { started: 0 };
    // A header timeout long enough that nothing is cut by time during the test.
    const server = serveGuarded(
      { hostname: "127.0.0.1", port: 0, what: "test", maxConnections: 4, headerTimeoutMs: 20_000 },
      (request) => {
        if (new URL(request.url).pathname !== "/big") return new Response("small\n");
        writing.started++;
        return new Response(big);
      },
    );
    const held: Deno.Conn[] = [];
    try {
      // Two announce a body and never send it; two ask for /big and never read.
      for (let i = 0; i < 2; i++) {
        held.push(
          await connect(server, "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\n\r\n"),
        );
        await sleep(30);
      }
      for (let i = 0; i < 2; i++) {
        held.push(await connect(server, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n"));
        await sleep(30);
      }
      const t0 = performance.now();
      while (writing.started < 2 && performance.now() - t0 < 3000) await sleep(20);
      await sleep(400); // The writes fill the socket buffers and stall (250 ms makes a write stalled).
      assert.equal(server.connections, 4);
      // Each legitimate request takes the place of the longest stalled, and is
      // answered; then one more stalled connection fills the cap again.
      const request = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
      const body = "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\n\r\n";
      for (let i = 0; i < 3; i++) {
        const t1 = performance.now();
        assert.match(await statusOf(server, request), / 200 /, `request ${i}`);
        assert.ok(performance.now() - t1 < 1000, `request ${i} waited`);
        assert.ok(await closedWithin(held[i], 500), `connection ${i} is still open`);
        held.push(await connect(server, body));
        await sleep(30);
      }
      // The last of the /big writes is still under way: it stalled, it was not done.
      assert.equal(await closedWithin(held[3], 100), false, "the last /big was cut");
    } finally {
      for (const c of held) closeQuietly(c);
      await server.shutdown();
    }
  },
});

Deno.test({
  name: "serveGuarded() past its cap drops a request whose answer has taken over 250 ms",
  ...opts,
  async fn() {
    // Each slow answer waits until the test ends (then it is let go).
    const release: (() => void)[] = [];
    const server = serveGuarded(
      { hostname: "127.0.0.1", port: 0, what: "test", maxConnections: 4, headerTimeoutMs: 20_000 },
      async (request) => {
        if (new URL(request.url).pathname === "/slow") {
          await new Promise<void>((r) => release.push(r));
        }
        return new Response("answer\n");
      },
    );
    const held: Deno.Conn[] = [];
    try {
      // Four requests whose answers take long (as /api/stats of a hung instance).
      for (let i = 0; i < 4; i++) {
        held.push(await connect(server, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"));
        await sleep(30);
      }
      await sleep(400);
      assert.equal(server.connections, 4);
      const t0 = performance.now();
      const request = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
      assert.match(await statusOf(server, request), / 200 /);
      assert.ok(performance.now() - t0 < 1000, "the request waited");
      assert.ok(await closedWithin(held[0], 500), "the longest waiting is still open");
      assert.equal(await closedWithin(held[1], 100), false, "a younger one was closed");
    } finally {
      for (const r of release) r();
      for (const c of held) closeQuietly(c);
      await server.shutdown();
    }
  },
});

Deno.test({
  name: "serveGuarded() keeps a connection for further requests and answers bad ones",
  ...opts,
  async fn() {
    const { server } = small({ cancelled: 0 });
    try {
      const conn = await connect(
        server,
        "GET /a HTTP/1.1\r\nHost: x\r\n\r\nHEAD /b HTTP/1.1\r\nHost: x\r\n\r\n" +
          "GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
      );
      let text = "";
      const buf = new Uint8Array(4096);
      for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) {
        text += new TextDecoder().decode(buf.subarray(0, n));
      }
      closeQuietly(conn);
      assert.equal(text.match(/HTTP\/1\.1 200 OK/g)?.length, 3, text);
      assert.match(text, /path \/a\n/);
      assert.doesNotMatch(text, /path \/b/); // HEAD: no body
      assert.match(text, /path \/c\n$/);
      const cases: [string, RegExp][] = [
        ["GARBAGE\r\n\r\n", / 400 /],
        ["GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", / 400 /],
        ["GET / HTTP/1.1\r\nBad Header\r\n\r\n", / 400 /],
        ["POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", / 200 /],
        ["POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", / 413 /],
        ["GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", / 400 /],
        ["GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", / 413 /],
        ["CONNECT a:1 HTTP/1.1\r\nHost: a\r\n\r\n", / 405 /],
        ["GET / HTTP/1.1\r\nX: " + "a".repeat(40_000) + "\r\n\r\n", /^$| 431 /],
        ["GET /old HTTP/1.0\r\n\r\n", / 200 /],
      ];
      for (const [request, expected] of cases) {
        assert.match(
          await statusOf(server, request),
          expected,
          JSON.stringify(request.slice(0, 40)),
        );
      }
    } finally {
      await server.shutdown();
    }
  },
});
