import assert from "node:assert/strict";
import {
  CloseReason,
  FramedConn,
  listen,
  type Listener,
  type Peer,
  Redialer,
} from "../wire/mod.ts";
import {
  closeQuietly,
  concat,
  frame,
  header,
  HELLO,
  jsonFrame,
  rawHandshake,
  sleep,
  waitFor,
  within,
  writeAll,
} from "./helpers/raw.ts";
import { connect, echo, HOST, isCode, rawClient, server } from "./helpers/rpc.ts";

Deno.test("listen() answers garbage with an error and keeps serving", async (t) => {
  const serverPeers: Peer[] = [];
  const l = server({ onRequest: echo, handshakeMs: 200, onPeer: (p) => serverPeers.push(p) });
  const conns: Deno.Conn[] = [];
  const raw = async () => {
    const c = await rawClient(l);
    conns.push(c.conn);
    return c;
  };
  try {
    await t.step("invalid JSON after the hello gets BAD_REQUEST", async () => {
      const { conn, reader } = await raw();
      await rawHandshake(conn, reader);
      await writeAll(conn, frame("{not json"));
      const reply = await reader.json();
      assert.equal(reply?.id, null);
      assert.equal((reply?.error as { code: string }).code, "BAD_REQUEST");
      await writeAll(conn, jsonFrame({ id: 1, method: "echo", params: 7 }));
      assert.deepEqual(await reader.json(), { id: 1, result: 7 }, "one bad frame is tolerated");
    });
    await t.step("a length over the limit gets FRAME_TOO_LARGE and a close", async () => {
      const { conn, reader } = await raw();
      await rawHandshake(conn, reader);
      await writeAll(conn, header(0xfffffff0));
      const reply = await reader.json();
      assert.deepEqual(reply?.id, null);
      assert.equal((reply?.error as { code: string }).code, "FRAME_TOO_LARGE");
      assert.equal(await reader.frame(), null, "closed");
      const reason = await within(serverPeers.at(-1)!.closed, 1000, "server side close");
      assert.equal(reason, CloseReason.FrameTooLarge);
    });
    for (
      const [what, bytes, code] of [
        ["non-JSON instead of the hello", frame("GET / HTTP/1.1"), "BAD_REQUEST"],
        [
          "unframed HTTP instead of the hello",
          new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n"),
          "FRAME_TOO_LARGE",
        ],
        ["a hello with an unknown codec", jsonFrame({ ...HELLO, codec: "xml" }), "BAD_REQUEST"],
        ["a hello of protocol version 2", jsonFrame({ ...HELLO, v: 2 }), "BAD_REQUEST"],
        ["silence past handshakeMs", new Uint8Array(0), "TIMEOUT"],
      ] as const
    ) {
      await t.step(`${what} gets ${code} and a close`, async () => {
        const { conn, reader } = await raw();
        await writeAll(conn, bytes);
        const reply = await reader.json();
        assert.equal(reply?.op, "error");
        assert.equal((reply?.error as { code: string }).code, code);
        assert.equal(await reader.frame(), null, "closed");
      });
    }
    await t.step("the listener still serves a normal dial()", async () => {
      const p = await connect(l);
      try {
        assert.equal(await p.call("echo", "fine"), "fine");
      } finally {
        p.close();
      }
    });
  } finally {
    for (const c of conns) closeQuietly(c);
    await l.close(500);
  }
});

// Regression test: handshake.ts firstFrame() (lines 26, 33) swaps onFrame after the hello
// but leaves its own onStreamError on the conn; a stream error in the same
// read (here an oversized length right behind the hello) rejects an already
// settled promise, the read loop has ended, and Peer never learns of it: no
// FRAME_TOO_LARGE, no close until the heartbeat gives up seconds later. Fix:
// hold the error like the held frames (conn.heldError) and have the Peer
// constructor call #fatal() with it.
Deno.test({
  name: "listen() answers FRAME_TOO_LARGE to an oversized frame pipelined behind the hello",

  async fn() {
    const l = server({ onRequest: echo });
    const { conn, reader } = await rawClient(l);
    try {
      await writeAll(conn, concat([jsonFrame(HELLO), header(0xfffffff0)]));
      assert.equal((await reader.json())?.op, "welcome");
      const reply = await reader.json(1000);
      assert.equal((reply?.error as { code: string }).code, "FRAME_TOO_LARGE");
      assert.equal(await reader.frame(1000), null, "closed");
    } finally {
      closeQuietly(conn);
      await l.close(500);
    }
  },
});

Deno.test("listen() with maxConnections 1 refuses a second dial with OVERLOADED", async () => {
  const l = server({ maxConnections: 1, onRequest: echo });
  const peers: Peer[] = [];
  try {
    const first = await connect(l);
    peers.push(first);
    await assert.rejects(connect(l), isCode("OVERLOADED"));
    assert.equal(await first.call("echo", 1), 1, "the first connection is untouched");
    first.close();
    await waitFor(() => l.peers.size === 0, 2000, "the first connection to go");
    const again = await connect(l);
    peers.push(again);
    assert.equal(await again.call("echo", 2), 2);
  } finally {
    for (const p of peers) p.close();
    await l.close(500);
  }
});

Deno.test("listen() with maxInFlight stops reading from a peer at the limit, then resumes", async () => {
  let running = 0;
  let peak = 0;
  let release!: () => void;
  const gate = new Promise<void>((r) => release = r);
  const l = server({
    maxInFlight: 4,
    onRequest: async (_m, params) => {
      peak = Math.max(peak, ++running);
      await gate;
      running--;
      return params;
    },
  });
  let p: Peer | undefined;
  try {
    p = await connect(l);
    const first = [1, 2, 3, 4].map((n) => p!.call("hold", n));
    await waitFor(() => running === 4, 2000, "4 requests in flight");
    const more = [5, 6, 7, 8, 9, 10].map((n) => p!.call("hold", n));
    await sleep(150);
    assert.equal(running, 4, "requests past the limit must wait unread");
    release();
    assert.deepEqual(await Promise.all([...first, ...more]), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert.ok(peak <= 4 + 6, `peak ${peak}`);
  } finally {
    release();
    p?.close();
    await l.close(500);
  }
});

Deno.test("a listener that paused reading does not take the peer's unread pings for silence", async () => {
  // Reading stops at 2 requests in flight for 400 ms, far longer than
  // heartbeat × liveness (50 ms × 3): the connection must survive it.
  const l = server({
    maxInFlight: 2,
    heartbeatMs: 50,
    onRequest: async (_m, params) => {
      await sleep(400);
      return params;
    },
  });
  let p: Peer | undefined;
  try {
    p = await connect(l, { heartbeatMs: 50 });
    const first = [1, 2].map((n) => p!.call("slow", n));
    await sleep(50); // the rest arrive while reading is paused
    const rest = [3, 4, 5, 6].map((n) => p!.call("slow", n));
    assert.deepEqual(await Promise.all([...first, ...rest]), [1, 2, 3, 4, 5, 6]);
    assert.ok(!p.isClosed, `closed: ${p.conn.closeReason}`);
  } finally {
    p?.close();
    await l.close(500);
  }
});

Deno.test("Listener.close() lets a call in flight finish before closing", async () => {
  let started = 0;
  const l = server({
    onRequest: async (_m, params) => {
      started++;
      await sleep(100);
      return params;
    },
  });
  let p: Peer | undefined;
  try {
    p = await connect(l);
    const call = p.call("slow", "done");
    await waitFor(() => started === 1, 2000, "the handler to start");
    const closing = l.close(2000);
    assert.equal(await call, "done");
    await within(closing, 2000, "Listener.close()");
    assert.equal(await within(p.closed, 1000, "the dialer's close"), CloseReason.RemoteClosed);
    await assert.rejects(connect(l.addr.port), isCode("UNAVAILABLE"));
  } finally {
    p?.close();
    await l.close(500);
  }
});

Deno.test("Redialer connects once a listener appears and reconnects after a drop", async () => {
  const probe = Deno.listen({ hostname: HOST, port: 0 });
  const port = probe.addr.port;
  probe.close(); // free again; a small race with other processes is accepted
  let connects = 0;
  const reasons: CloseReason[] = [];
  const r = new Redialer({ host: HOST, port }, {
    role: "client",
    name: "redialer",
    minBackoffMs: 20,
    maxBackoffMs: 100,
    onConnect: () => void connects++,
    onDisconnect: (reason) => reasons.push(reason),
  }).start();
  let l: Listener | undefined;
  try {
    await waitFor(() => r.failures >= 1, 2000, "a failed dial");
    assert.equal(r.peer, undefined);
    l = listen({ host: HOST, port, role: "server", name: "late", onRequest: echo });
    const peer = await r.ready(3000);
    assert.equal(connects, 1);
    assert.equal(await peer.call("echo", 1), 1);
    await waitFor(() => l!.peers.size === 1, 2000, "the server side");
    for (const sp of l.peers) sp.close();
    await waitFor(() => connects === 2, 3000, "a second connection");
    assert.deepEqual(reasons, [CloseReason.RemoteClosed]);
    assert.ok(peer.isClosed);
    const again = await r.ready(1000);
    assert.notEqual(again, peer);
    assert.equal(await again.call("echo", 2), 2);
  } finally {
    await within(r.stop(), 2000, "Redialer.stop()");
    await l?.close(500);
  }
  assert.equal(r.peer, undefined);
  await assert.rejects(r.ready(100), isCode("UNAVAILABLE"));
});

// Regression test: redial.ts stop() (line 76) neither rejects nor clears the ready()
// waiters that are pending: they wait out their own timeout (and keep its
// timer alive). Fix: stop() rejects each waiter with UNAVAILABLE and clears
// its timer.
Deno.test({
  name: "Redialer.stop() rejects pending ready() calls at once",

  async fn() {
    const probe = Deno.listen({ hostname: HOST, port: 0 });
    const port = probe.addr.port;
    probe.close();
    const r = new Redialer({ host: HOST, port }, { role: "client", name: "r", minBackoffMs: 20 });
    r.start();
    const waiting = r.ready(3000);
    await sleep(50);
    await r.stop();
    await assert.rejects(within(waiting, 500, "ready() after stop()"), isCode("UNAVAILABLE"));
  },
});

// Regression test: a stop() that came while onConnect was running (a consumer
// resubscribing when Ctrl-C arrives) closed no connection, and the one being
// set up stayed open, its heartbeats keeping it alive: stop() never returned.
Deno.test("Redialer.stop() during onConnect closes the connection being set up and returns", async () => {
  const l = listen({ host: HOST, port: 0, role: "server", name: "s", onRequest: echo });
  let entered!: () => void;
  const inHook = new Promise<void>((resolve) => entered = resolve);
  const r = new Redialer({ host: HOST, port: l.addr.port }, {
    role: "client",
    name: "r",
    onConnect: async () => {
      entered();
      await sleep(200);
    },
  }).start();
  try {
    await within(inHook, 2000, "onConnect");
    await within(r.stop(), 2000, "Redialer.stop()");
    assert.equal(r.peer, undefined);
    await waitFor(() => l.peers.size === 0, 2000, "the server to see the close");
  } finally {
    await l.close(200);
  }
});

/** Sends `big` requests at a raw connection in batches until `until()`, for at most 5 s. */
async function flood(conn: Deno.Conn, batch: number, until: () => boolean): Promise<number> {
  let id = 0;
  const end = performance.now() + 5000;
  while (!until()) {
    if (performance.now() > end) throw new Error("flood: condition not reached in 5 s");
    const frames = Array.from({ length: batch }, () => jsonFrame({ id: ++id, method: "big" }));
    await within(writeAll(conn, concat(frames)), 2000, "flood write").catch(() => {});
    await sleep(2);
  }
  return id;
}

Deno.test("FramedConn pauses reading from a peer that sends requests but never reads", async () => {
  const big = "x".repeat(16 * 1024);
  let handled = 0;
  let serverPeer: Peer | undefined;
  const l = server({
    highWater: 64 * 1024,
    onRequest: () => (handled++, big),
    onPeer: (p) => serverPeer = p,
  });
  const { conn, reader } = await rawClient(l);
  try {
    await rawHandshake(conn, reader);
    await waitFor(() => serverPeer !== undefined, 2000, "the server peer");
    const fc = serverPeer!.conn;
    let sent = await flood(conn, 4, () => fc.paused);
    const [handledAtPause, pendingAtPause] = [handled, fc.pendingBytes];
    assert.ok(pendingAtPause <= fc.maxOutbound);
    const more = Array.from(
      { length: 200 },
      (_, i) => jsonFrame({ id: sent + 1 + i, method: "big" }),
    );
    sent += more.length;
    await writeAll(conn, concat(more));
    await sleep(100);
    assert.ok(fc.paused, "still paused");
    assert.equal(handled, handledAtPause, "no request read while paused");
    assert.ok(fc.pendingBytes <= pendingAtPause, "outbound did not grow");
    // Reading the answers resumes the server, and nothing was lost.
    for (let id = 1; id <= sent; id++) {
      assert.deepEqual(await reader.json(), { id, result: big });
    }
    assert.ok(!fc.paused && !fc.isClosed);
  } finally {
    closeQuietly(conn);
    await l.close(500);
  }
});

Deno.test("FramedConn closes a peer that never reads as SlowConsumer past maxOutbound", async (t) => {
  await t.step("flooded with requests", async () => {
    let serverPeer: Peer | undefined;
    const l = server({
      highWater: 64 * 1024,
      maxOutbound: 128 * 1024,
      onRequest: () => "x".repeat(16 * 1024),
      onPeer: (p) => serverPeer = p,
    });
    const { conn, reader } = await rawClient(l);
    try {
      await rawHandshake(conn, reader);
      await waitFor(() => serverPeer !== undefined, 2000, "the server peer");
      await flood(conn, 6, () => serverPeer!.isClosed);
      assert.equal(serverPeer!.conn.closeReason, CloseReason.SlowConsumer);
    } finally {
      closeQuietly(conn);
      await l.close(500);
    }
  });
  for (const reads of [false, true]) {
    await t.step(
      `pushed notifications, ${reads ? "to a reader: kept" : "never read: cut"}`,
      async () => {
        let serverPeer: Peer | undefined;
        const max = 256 * 1024;
        const l = server({ highWater: 64 * 1024, maxOutbound: max, onPeer: (p) => serverPeer = p });
        const { conn, reader } = await rawClient(l);
        let reading: Promise<void> | undefined;
        try {
          await rawHandshake(conn, reader);
          await waitFor(() => serverPeer !== undefined, 2000, "the server peer");
          if (reads) reading = reader.untilClosed(5000).catch(() => {});
          const sp = serverPeer!;
          const payload = "y".repeat(16 * 1024);
          let most = 0;
          const end = performance.now() + (reads ? 300 : 5000);
          // Bursts of 64 KiB: a burst alone never passes maxOutbound.
          while (!sp.isClosed && performance.now() < end) {
            for (let i = 0; i < 4 && sp.notify("flood", payload); i++) {
              most = Math.max(most, sp.conn.pendingBytes);
            }
            await sleep(1);
          }
          if (reads) assert.ok(!sp.isClosed, `closed: ${sp.conn.closeReason}`);
          else assert.equal(sp.conn.closeReason, CloseReason.SlowConsumer);
          assert.ok(most <= max + payload.length + 100, `outbound reached ${most} bytes`);
        } finally {
          closeQuietly(conn);
          await reading;
          await l.close(500);
        }
      },
    );
  }
});

// Regression test: conn.ts constructor (line 87) raises maxOutbound to highWater
// (default 4 MiB), so a smaller maxOutbound given alone is silently ignored.
// Fix: clamp highWater down to maxOutbound instead.
Deno.test({
  name: "FramedConn keeps a maxOutbound smaller than the default highWater",

  fn() {
    const fc = new FramedConn({} as Deno.Conn, { maxOutbound: 64 * 1024 });
    assert.equal(fc.maxOutbound, 64 * 1024);
    assert.ok(fc.highWater <= fc.maxOutbound);
  },
});

Deno.test("Redialer.stop() cuts short a dial stuck in its handshake", async () => {
  // A listener that accepts and never answers the hello.
  const raw = Deno.listen({ hostname: HOST, port: 0 });
  const accepted: Deno.Conn[] = [];
  const serve = (async () => {
    for await (const c of raw) accepted.push(c);
  })();
  const r = new Redialer({ host: HOST, port: (raw.addr as Deno.NetAddr).port }, {
    role: "test",
    name: "test",
    connectTimeoutMs: 10_000,
  }).start();
  try {
    await waitFor(() => accepted.length === 1, 2000, "the dial to connect");
    const t0 = performance.now();
    await within(r.stop(), 1000, "Redialer.stop()");
    assert.ok(performance.now() - t0 < 1000);
  } finally {
    await r.stop();
    accepted.forEach(closeQuietly);
    closeQuietly(raw);
    await serve.catch(() => {});
  }
});

Deno.test("Redialer closes a connection whose onConnect failed before dialing again", async () => {
  const l = server({ onRequest: echo });
  let attempts = 0;
  const r = new Redialer({ host: HOST, port: l.addr.port }, {
    role: "test",
    name: "test",
    minBackoffMs: 10,
    maxBackoffMs: 20,
    onConnect: () => {
      attempts++;
      throw new Error("registration refused");
    },
  }).start();
  try {
    await waitFor(() => attempts >= 5, 3000, "5 attempts");
    // Each failed attempt hung up: the listener never holds more than the one being set up.
    await waitFor(() => l.peers.size <= 1, 1000, "failed connections to close");
    assert.ok(l.peers.size <= 1, `${l.peers.size} connections left open`);
  } finally {
    await r.stop();
    await l.close(500);
  }
});
