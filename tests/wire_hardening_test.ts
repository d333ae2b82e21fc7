/**
 * One test per defect a hostile or careless peer could trigger against
 * wire/ (issue 5), black-box: raw sockets against the real server role,
 * in-process or as a `dist server` child where its logs or memory matter.
 */
import assert from "node:assert/strict";
import { decode as mpDecode, encode as mpEncode } from "@msgpack/msgpack";
import {
  dial,
  jsonCodec,
  listen,
  type ListenOptions,
  msgpackCodec,
  OutBuffer,
  type Peer,
} from "../wire/mod.ts";
import {
  closeQuietly,
  concat,
  frame,
  header,
  HELLO,
  jsonFrame,
  rawHandshake,
  RawReader,
  sleep,
  waitFor,
  writeAll,
} from "./helpers/raw.ts";
import { isCode } from "./helpers/rpc.ts";
import { startServerRole } from "./helpers/server_role.ts";
import { startDist } from "./helpers/dist.ts";

const HOST = "127.0.0.1";

async function withServer(
  flags: Record<string, unknown>,
  body: (port: number) => Promise<void>,
): Promise<void> {
  const server = await startServerRole(flags);
  try {
    await body(server.port);
  } finally {
    await server.stop();
  }
}

async function rawConn(port: number): Promise<{ conn: Deno.TcpConn; reader: RawReader }> {
  const conn = await Deno.connect({ hostname: HOST, port });
  return { conn, reader: new RawReader(conn) };
}

function rssOf(pid: number): number {
  const m = Deno.readTextFileSync(`/proc/${pid}/status`).match(/VmRSS:\s+(\d+) kB/);
  return m ? Number(m[1]) * 1024 : 0;
}

Deno.test("a result out of range is BAD_REQUEST in both codecs, never null or infinity", async () => {
  await withServer({}, async (port) => {
    const cases: [string, unknown][] = [
      ["add", [1e308, 1e308]],
      ["mul", [1e200, 1e200]],
      ["div", [1, 5e-324]],
      ["sum", "1e308,1e308"],
      ["sub", { a: -1e308, b: 1e308 }],
    ];
    for (const codec of [jsonCodec, msgpackCodec]) {
      const peer = await dial({ host: HOST, port }, { role: "test", name: "t", codec });
      try {
        for (const [method, params] of cases) {
          await assert.rejects(peer.call(method, params), (err) => {
            isCode("BAD_REQUEST")(err);
            assert.match((err as Error).message, /out of range/, `${codec.name} ${method}`);
            return true;
          });
        }
        assert.equal(await peer.call("add", [1, 2]), 3, "the connection still serves");
      } finally {
        peer.close();
      }
    }
  });
});

Deno.test("codecs refuse to encode NaN and ±Infinity instead of writing null", () => {
  for (const codec of [jsonCodec, msgpackCodec]) {
    for (const value of [Infinity, -Infinity, NaN]) {
      const out = new OutBuffer(0);
      assert.throws(
        () => codec.writeFrame(out, { id: 1, result: { nested: [1, value] } }, 1 << 20),
        isCode("BAD_REQUEST"),
        `${codec.name} ${value}`,
      );
      assert.equal(out.length, 0, "nothing was appended");
    }
    const out = new OutBuffer(0);
    codec.writeFrame(out, { id: 1, result: null, text: "null" }, 1 << 20);
    assert.ok(out.length > 4, `${codec.name}: a real null still encodes`);
  }
});

Deno.test("a half-closed peer still gets every answer it is owed, then EOF", async (t) => {
  await withServer({}, async (port) => {
    await t.step("a request in flight when the peer shuts its write side", async () => {
      const { conn, reader } = await rawConn(port);
      try {
        await rawHandshake(conn, reader);
        await writeAll(conn, jsonFrame({ id: 1, method: "sleep", params: { ms: 300 } }));
        await conn.closeWrite();
        const answer = await reader.json(3000);
        assert.equal(answer?.id, 1);
        assert.equal(answer?.result, 300);
        assert.equal(await reader.frame(3000), null, "then the server closes");
      } finally {
        closeQuietly(conn);
      }
    });
    await t.step("hello and a request in one write, then SHUT_WR", async () => {
      const { conn, reader } = await rawConn(port);
      try {
        await writeAll(
          conn,
          concat([jsonFrame(HELLO), jsonFrame({ id: 2, method: "add", params: [3, 4] })]),
        );
        await conn.closeWrite();
        assert.equal((await reader.json(3000))?.op, "welcome");
        const answer = await reader.json(3000);
        assert.equal(answer?.id, 2);
        assert.equal(answer?.result, 7);
        assert.equal(await reader.frame(3000), null);
      } finally {
        closeQuietly(conn);
      }
    });
  });
});

Deno.test("an id past 256 chars is BAD_REQUEST at once, and its text stays out of the log", async () => {
  const server = await startDist(["server", "--port", "0", "--log-level", "debug"]);
  const conns: Deno.TcpConn[] = [];
  try {
    const hugeId = "i".repeat(1_000_000);
    const before = server.stderr().length;
    await Promise.all(Array.from({ length: 20 }, async () => {
      const { conn, reader } = await rawConn(server.port);
      conns.push(conn);
      await rawHandshake(conn, reader);
      const t0 = performance.now();
      await writeAll(conn, jsonFrame({ id: hugeId, method: "echo", params: ["x"] }));
      // The server's heartbeat may come first on a slow machine.
      let answer;
      do answer = await reader.json(3000); while (answer?.method === "ping");
      assert.equal(answer?.id, null);
      assert.equal((answer?.error as { code: string }).code, "BAD_REQUEST");
      assert.ok(performance.now() - t0 < 2500, "answered, not left to time out");
    }));
    for (const c of conns) closeQuietly(c);
    await sleep(300);
    const logged = server.stderr().length - before;
    assert.ok(logged < 64 * 1024, `20 huge ids wrote ${logged} bytes of log`);
  } finally {
    for (const c of conns) closeQuietly(c);
    await server.stop();
  }
});

Deno.test("an answer too large to send becomes an error that fits", async () => {
  const maxFrame = 4096;
  await withServer({ maxFrame, name: "server-with-a-long-name" }, async (port) => {
    const peer = await dial({ host: HOST, port }, { role: "test", name: "t" });
    try {
      // The request just fits; the answer (result + a long `by`) does not.
      const text = "x".repeat(maxFrame - 40);
      await assert.rejects(peer.call("echo", [text]), (err) => {
        isCode("FRAME_TOO_LARGE")(err);
        assert.match((err as Error).message, /Answer too large to send/);
        return true;
      });
      assert.equal(await peer.call("echo", ["ok"]), "ok");
    } finally {
      peer.close();
    }
  });
});

Deno.test("a peer that never reads is cut off after --write-timeout, and it is logged", async () => {
  // 3 s: the reader must still be connected when our writes are seen blocked (300 ms without
  // progress) and sys.stats answers; at 500 ms a loaded parallel run (load 18) saw it cut already.
  const server = await startDist(["server", "--port", "0", "--write-timeout", "3s"]);
  const { conn, reader } = await rawConn(server.port);
  const stats = await dial({ host: HOST, port: server.port }, { role: "test", name: "stats" });
  const connections = async () =>
    ((await stats.call("sys.stats")) as { connections: number }).connections;
  const writes: Promise<unknown>[] = [];
  try {
    await rawHandshake(conn, reader);
    // Send 64 KiB echoes and never read the answers, until our own writes
    // block: the server's output to us is then stuck too.
    const request = jsonFrame({ id: 1, method: "echo", params: ["y".repeat(64 * 1024)] });
    const deadline = performance.now() + 10_000;
    while (performance.now() < deadline) {
      const write = writeAll(conn, request).then(() => true, () => false);
      writes.push(write);
      const done = await Promise.race([write, sleep(300).then(() => "blocked")]);
      if (done !== true) break;
    }
    assert.equal(await connections(), 2, "the silent reader is still connected");
    await waitFor(() => server.stderr().includes("slow_consumer"), 15_000, "a slow_consumer log");
    assert.match(server.stderr(), /WRN.*closed: slow_consumer.*took no bytes/);
    assert.equal(await connections(), 1, "only the stats connection is left");
  } finally {
    stats.close();
    closeQuietly(conn);
    await Promise.all(writes);
    await server.stop();
  }
});

Deno.test("a frame that never completes is cut off (slowloris), complete frames are not", async () => {
  // Heartbeat 200 ms × liveness 3: a frame must complete within 600 ms.
  await withServer({ heartbeat: 200, liveness: 3 }, async (port) => {
    const dribbler = await rawConn(port);
    const steady = await rawConn(port);
    try {
      await rawHandshake(dribbler.conn, dribbler.reader);
      await rawHandshake(steady.conn, steady.reader);
      const t0 = performance.now();
      let open = true;
      const closed = dribbler.reader.untilClosed(5000).finally(() => open = false);
      // A 1000-byte frame, one byte every 100 ms: each byte used to count as life.
      await writeAll(dribbler.conn, header(1000));
      const ping = jsonFrame({ method: "ping" });
      while (open && performance.now() - t0 < 5000) {
        await dribbler.conn.write(new Uint8Array([0x20])).catch(() => open = false);
        await writeAll(steady.conn, ping);
        await sleep(100);
      }
      await closed;
      const elapsed = performance.now() - t0;
      assert.ok(elapsed < 3000, `the dribbler was cut off after ${Math.round(elapsed)} ms`);
      // The peer sending whole frames at the same pace is still served.
      await writeAll(steady.conn, jsonFrame({ id: 9, method: "add", params: [1, 1] }));
      let answer;
      do answer = await steady.reader.json(2000); while (answer?.method === "ping");
      assert.equal(answer?.result, 2);
    } finally {
      closeQuietly(dribbler.conn);
      closeQuietly(steady.conn);
    }
  });
});

Deno.test("garbage is not amplified: at most 10 error answers, then the connection closes", async () => {
  await withServer({}, async (port) => {
    const { conn, reader } = await rawConn(port);
    try {
      await rawHandshake(conn, reader);
      // 5,000 empty frames (20 KB) in one write.
      await writeAll(conn, concat(Array.from({ length: 5000 }, () => header(0))));
      let answers = 0;
      while ((await reader.frame(3000)) !== null) answers++;
      assert.ok(answers > 0, "the first errors are answered");
      assert.ok(answers <= 10, `${answers} error answers`);
    } finally {
      closeQuietly(conn);
    }
  });
});

Deno.test('"id": null is a BAD_REQUEST, not a notification', async () => {
  await withServer({}, async (port) => {
    const { conn, reader } = await rawConn(port);
    try {
      await rawHandshake(conn, reader);
      await writeAll(conn, jsonFrame({ id: null, method: "echo", params: ["x"] }));
      const answer = await reader.json(2000);
      assert.equal(answer?.id, null);
      assert.equal((answer?.error as { code: string }).code, "BAD_REQUEST");
    } finally {
      closeQuietly(conn);
    }
  });
});

/** A raw connection that speaks MessagePack after the (JSON) handshake. */
async function msgpackConn(port: number) {
  const { conn, reader } = await rawConn(port);
  await writeAll(conn, jsonFrame({ ...HELLO, codec: "msgpack" }));
  assert.equal((await reader.json())?.op, "welcome");
  return {
    conn,
    send: (payload: Uint8Array) => writeAll(conn, frame(payload)),
    async answer(timeoutMs = 3000): Promise<Record<string, unknown> | null> {
      const payload = await reader.frame(timeoutMs);
      return payload === null ? null : mpDecode(payload) as Record<string, unknown>;
    },
  };
}

Deno.test("MessagePack strings must be valid UTF-8, as in JSON", async () => {
  await withServer({}, async (port) => {
    const mp = await msgpackConn(port);
    try {
      // {id: 1, method: "echo", params: ["\xff\xfe"]} with the string's bytes invalid.
      const head = mpEncode({ id: 1, method: "echo" });
      const bad = concat([
        new Uint8Array([0x83]),
        head.subarray(1),
        mpEncode("params"),
        new Uint8Array([0x91, 0xa2, 0xff, 0xfe]),
      ]);
      await mp.send(bad);
      const answer = await mp.answer();
      assert.equal((answer?.error as { code: string }).code, "BAD_REQUEST");
      assert.match((answer?.error as { message: string }).message, /UTF-8/);
      assert.equal(answer?.id, 1, "answered by its id: the caller need not wait for a timeout");
      await mp.send(mpEncode({ id: 2, method: "echo", params: ["héllo ✓"] }));
      assert.equal((await mp.answer())?.result, "héllo ✓", "valid UTF-8 still echoes");
    } finally {
      closeQuietly(mp.conn);
    }
  });
});

Deno.test("JSON text that is not UTF-8 is BAD_REQUEST by its id when the frame is otherwise readable", async () => {
  await withServer({}, async (port) => {
    const { conn, reader } = await rawConn(port);
    try {
      await rawHandshake(conn, reader);
      const enc = new TextEncoder();
      const send = async (...parts: (string | number[])[]) => {
        const bytes = concat(
          parts.map((p) => typeof p === "string" ? enc.encode(p) : new Uint8Array(p)),
        );
        await writeAll(conn, frame(bytes));
        return await reader.json(2000);
      };
      // One read of several frames (decoded together) and a frame alone.
      const inString = await send('{"id":5,"method":"echo","params":["a', [0xff], 'b"]}');
      assert.equal(inString?.id, 5, "the id was readable: the refusal names it");
      assert.equal((inString?.error as { code: string }).code, "BAD_REQUEST");
      assert.match((inString?.error as { message: string }).message, /UTF-8/);
      const inKey = await send('{"id":"k","method":"echo","params":{"', [0xc3, 0x28], '":1}}');
      assert.equal(inKey?.id, "k", "keys too");
      // A bad byte outside any string leaves no readable message: id null.
      const garbage = await send('{"id":6,', [0xff], '"method":"echo"}');
      assert.equal(garbage?.id, null);
      assert.equal((garbage?.error as { code: string }).code, "BAD_REQUEST");
      const two = concat([
        frame(
          concat([
            enc.encode('{"id":7,"method":"echo","params":["'),
            new Uint8Array([0xfe]),
            enc.encode('"]}'),
          ]),
        ),
        frame('{"id":8,"method":"echo","params":["ok"]}'),
      ]);
      await writeAll(conn, two);
      const a7 = await reader.json(2000);
      const a8 = await reader.json(2000);
      assert.equal(a7?.id, 7);
      assert.equal((a7?.error as { code: string }).code, "BAD_REQUEST");
      assert.equal(a8?.result, "ok", "the frame beside it is served");
    } finally {
      closeQuietly(conn);
    }
  });
});

Deno.test("nesting is bounded before decoding: deep frames cost no memory", async () => {
  const server = await startDist(["server", "--port", "0"]);
  const conns: Deno.TcpConn[] = [];
  try {
    const before = rssOf(server.child.pid);
    // 24 frames of 1,000,000 nested one-element array headers (each used to
    // cost ~50 MiB while decoding), over 3 connections (8 errors each).
    const bomb = new Uint8Array(1_000_000).fill(0x91);
    for (let c = 0; c < 3; c++) {
      const mp = await msgpackConn(server.port);
      conns.push(mp.conn);
      for (let i = 0; i < 8; i++) {
        await mp.send(bomb);
        const answer = await mp.answer();
        assert.match((answer?.error as { message: string }).message, /deeper than 64/);
      }
    }
    const { conn, reader } = await rawConn(server.port);
    conns.push(conn);
    await rawHandshake(conn, reader);
    await writeAll(conn, frame("[".repeat(500_000) + "]".repeat(500_000)));
    assert.match(JSON.stringify(await reader.json(3000)), /deeper than 64/);
    const grown = rssOf(server.child.pid) - before;
    // Unbounded, these frames cost ~1.2 GiB. Bounded, the 24 MiB of frames
    // read and copied are garbage that V8 collects when it sees fit: 60-67
    // MiB measured here, so the limit leaves room for that, not for a bomb.
    assert.ok(grown < 96 * 1024 * 1024, `RSS grew ${Math.round(grown / 1048576)} MiB`);
  } finally {
    for (const c of conns) closeQuietly(c);
    await server.stop();
  }
});

Deno.test("connections are logged at debug (open, close with reason and counts), requests at trace", async () => {
  const server = await startDist(["server", "--port", "0", "--log-level", "trace"]);
  let peer: Peer | undefined;
  try {
    peer = await dial({ host: HOST, port: server.port }, { role: "client", name: "logged-client" });
    assert.equal(await peer.call("add", [2, 2]), 4);
    peer.close();
    await waitFor(() => /closed: remote_closed/.test(server.stderr()), 3000, "the close line");
    const log = server.stderr();
    assert.match(log, /DBG.*Connection from 127\.0\.0\.1:\d+: logged-client \(client, json\)/);
    assert.match(log, /TRC.*Request 1 add from logged-client/);
    assert.match(
      log,
      /DBG.*Connection with logged-client \(127\.0\.0\.1:\d+\) closed: remote_closed; 1 requests, \d+ bytes in, \d+ bytes out/,
    );
  } finally {
    peer?.close();
    await server.stop();
  }
});

Deno.test("ticker: a stall of this process counts as at most two periods of a peer's silence", async () => {
  const { ticker } = await import("../wire/heartbeat.ts");
  const steps: number[] = [];
  const member = { tickMs: 20, tick: (elapsed: number) => steps.push(elapsed) };
  ticker.add(member);
  try {
    await sleep(100);
    // Block the event loop for 600 ms: the next tick comes ~600 ms late.
    const until = performance.now() + 600;
    while (performance.now() < until) { /* busy */ }
    await sleep(60);
    assert.ok(steps.length >= 3, `${steps.length} ticks`);
    const period = 20;
    const longest = Math.max(...steps);
    assert.ok(longest <= 2 * period + 1, `a tick reported ${longest} ms`);
  } finally {
    ticker.delete(member);
  }
});

Deno.test("after the peer's EOF, calls fail at once with UNAVAILABLE instead of waiting for their timeout", async () => {
  // A listener that welcomes, asks us one slow question, then shuts its
  // write side: we still owe it an answer, so our side stays open a while.
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  const accepted = (async () => {
    const conn = await listener.accept();
    const reader = new RawReader(conn);
    await reader.json(); // the hello
    await writeAll(
      conn,
      concat([
        jsonFrame({ op: "welcome", v: 1, codec: "json", role: "x", name: "x" }),
        jsonFrame({ id: 1, method: "slow", params: [] }),
      ]),
    );
    await conn.closeWrite();
    return { conn, reader };
  })();
  let peer: Peer | undefined;
  let server: { conn: Deno.Conn; reader: RawReader } | undefined;
  try {
    peer = await dial({ host: HOST, port: (listener.addr as Deno.NetAddr).port }, {
      role: "test",
      name: "t",
      onRequest: () => sleep(800).then(() => "late"),
    });
    server = await accepted;
    await waitFor(() => peer!.conn.readEnded, 2000, "the EOF to be read");
    assert.ok(!peer.isClosed, "still open: an answer is owed");
    assert.equal(peer.canCall, false);
    const t0 = performance.now();
    await assert.rejects(peer.call("echo", ["x"], { timeout: 5000 }), isCode("UNAVAILABLE"));
    assert.ok(performance.now() - t0 < 500, "failed at once, not after its timeout");
    assert.equal((await server.reader.json(3000))?.result, "late", "the owed answer still came");
  } finally {
    peer?.close();
    closeQuietly(server?.conn);
    listener.close();
  }
});

Deno.test("a lone surrogate escape is BAD_REQUEST: a string with no UTF-8 form never reaches another peer", async () => {
  await withServer({}, async (port) => {
    const { conn, reader } = await rawConn(port);
    try {
      await rawHandshake(conn, reader);
      const send = async (text: string) => {
        await writeAll(conn, frame(text));
        return await reader.json(2000);
      };
      const lone = await send('{"id":1,"method":"echo","params":["a\\ud800b"]}');
      assert.equal(lone?.id, 1, "answered by its id: it parsed, so its id is known");
      assert.equal((lone?.error as { code: string }).code, "BAD_REQUEST");
      assert.match((lone?.error as { message: string }).message, /lone surrogate/);
      const key = await send('{"id":2,"method":"echo","params":{"\\udc00":1,"text":"x"}}');
      assert.equal((key?.error as { code: string }).code, "BAD_REQUEST", "keys too");
      // A pair is a real character; an escaped backslash before "ud800" is plain text.
      assert.equal(
        (await send('{"id":3,"method":"echo","params":["\\ud83d\\ude00"]}'))?.result,
        "😀",
      );
      assert.equal(
        (await send('{"id":4,"method":"echo","params":["\\\\ud800"]}'))?.result,
        "\\ud800",
      );
    } finally {
      closeQuietly(conn);
    }
  });
});

Deno.test("toJsonText() and toMsgpack() refuse what the codecs refuse", async () => {
  const { toJsonText, toMsgpack } = await import("../wire/mod.ts");
  for (const bad of [NaN, { a: [1, Infinity] }]) {
    assert.throws(() => toJsonText(bad), isCode("BAD_REQUEST"));
    assert.throws(() => toMsgpack(bad), isCode("BAD_REQUEST"));
  }
  assert.equal(toJsonText({ a: null }), '{"a":null}');
  const bytes = toMsgpack({ a: 1 });
  assert.deepEqual(mpDecode(bytes), { a: 1 });
  assert.notEqual(toMsgpack({ b: 2 }).buffer, bytes.buffer, "each call returns its own bytes");
});

Deno.test("an answer longer than the frame limit is refused before room is reserved for it", () => {
  const out = new OutBuffer(0);
  const big = { id: 1, result: "é".repeat(200_000) }; // 400 KB of UTF-8
  assert.throws(() => jsonCodec.writeFrame(out, big, 100_000), isCode("FRAME_TOO_LARGE"));
  assert.ok(out.bytes.length < 100_000, `reserved ${out.bytes.length} bytes`);
});

Deno.test("Redialer backs off from a peer that hangs up soon after each connection", async () => {
  const { Redialer } = await import("../wire/mod.ts");
  // Welcomes every dialer, then closes 30 ms later: a flapping peer.
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  let accepted = 0;
  const serving = (async () => {
    for await (const conn of listener) {
      accepted++;
      (async () => {
        const reader = new RawReader(conn);
        await reader.json().catch(() => null);
        await writeAll(
          conn,
          jsonFrame({ op: "welcome", v: 1, codec: "json", role: "x", name: "x" }),
        )
          .catch(() => {});
        await sleep(30); // up for a moment (past the dialer's setup), then gone
        closeQuietly(conn);
      })();
    }
  })().catch(() => {});
  const r = new Redialer({ host: HOST, port: (listener.addr as Deno.NetAddr).port }, {
    role: "test",
    name: "t",
  }).start();
  try {
    await sleep(1500);
    // 100 + 200 + 400 + 800 ms of backoff fit in 1.5 s: a handful of dials, not thousands.
    assert.ok(accepted >= 2, `${accepted} dials`);
    assert.ok(accepted <= 8, `${accepted} dials in 1.5 s`);
  } finally {
    await r.stop();
    listener.close();
    await serving;
  }
});

/** A listener whose handler counts how many requests run at once. */
function countingServer(options: Partial<ListenOptions>) {
  let running = 0;
  let most = 0;
  const order: number[] = [];
  const l = listen({
    host: HOST,
    port: 0,
    role: "server",
    name: "s",
    ...options,
    onRequest: async (_m, params) => {
      most = Math.max(most, ++running);
      await sleep(20);
      running--;
      order.push(params as number);
      return params;
    },
  });
  return { l, most: () => most, order };
}

/** Pipelines `count` requests in one write on a raw connection; resolves with the answers' ids. */
async function pipeline(port: number, count: number, from = 0): Promise<number[]> {
  const { conn, reader } = await rawConn(port);
  try {
    await rawHandshake(conn, reader);
    await writeAll(
      conn,
      concat(
        Array.from(
          { length: count },
          (_, i) => jsonFrame({ id: from + i, method: "x", params: from + i }),
        ),
      ),
    );
    const ids: number[] = [];
    while (ids.length < count) {
      const m = await reader.json(5000);
      if (m === null) break;
      if (typeof m.id === "number") ids.push(m.id);
    }
    return ids;
  } finally {
    closeQuietly(conn);
  }
}

Deno.test("maxInFlight is exact: requests pipelined past it wait unread, in order, and are all answered", async () => {
  const { l, most, order } = countingServer({ maxInFlight: 5 });
  try {
    const ids = await pipeline(l.addr.port, 60);
    assert.equal(ids.length, 60, "every request answered");
    assert.equal(most(), 5, "never more than 5 at once, even from one read");
    assert.deepEqual(order.slice(0, 5), [0, 1, 2, 3, 4], "the first five started first");
    assert.deepEqual([...order].sort((a, b) => a - b), Array.from({ length: 60 }, (_, i) => i));
  } finally {
    await l.close(0);
  }
});

Deno.test("a listener's in-flight budget bounds requests across all its connections", async () => {
  const { l, most } = countingServer({ maxInFlightTotal: 20 });
  try {
    const answers = await Promise.all(
      Array.from({ length: 6 }, (_, c) => pipeline(l.addr.port, 40, c * 1000)),
    );
    for (const ids of answers) assert.equal(ids.length, 40, "every request answered");
    // The budget, plus the 4 each connection is always granted (240 without it).
    assert.ok(most() <= 20 + 6 * 4, `${most()} requests ran at once across 6 connections`);
  } finally {
    await l.close(0);
  }
});

Deno.test("a light client is served while a heavy one has used up the listener's budget", async () => {
  const l = listen({
    host: HOST,
    port: 0,
    role: "server",
    name: "s",
    maxInFlightTotal: 10,
    onRequest: (method, params) => method === "slow" ? sleep(1000).then(() => params) : params,
  });
  const heavy = await rawConn(l.addr.port);
  let light: Peer | undefined;
  try {
    await rawHandshake(heavy.conn, heavy.reader);
    await writeAll(
      heavy.conn,
      concat(Array.from({ length: 100 }, (_, i) => jsonFrame({ id: i, method: "slow" }))),
    );
    await sleep(50);
    light = await dial({ host: HOST, port: l.addr.port }, { role: "test", name: "light" });
    const t0 = performance.now();
    assert.equal(await light.call("quick", 1), 1);
    assert.ok(performance.now() - t0 < 500, "answered without waiting for the heavy client");
  } finally {
    light?.close();
    closeQuietly(heavy.conn);
    await l.close(0);
  }
});

Deno.test("a half-closed peer gets the answers to requests still waiting for room", async () => {
  const { l } = countingServer({ maxInFlight: 3 });
  try {
    const { conn, reader } = await rawConn(l.addr.port);
    try {
      await rawHandshake(conn, reader);
      await writeAll(
        conn,
        concat(Array.from({ length: 20 }, (_, i) => jsonFrame({ id: i, method: "x", params: i }))),
      );
      await conn.closeWrite();
      let answered = 0;
      while ((await reader.json(5000)) !== null) answered++;
      assert.equal(answered, 20);
    } finally {
      closeQuietly(conn);
    }
  } finally {
    await l.close(0);
  }
});

Deno.test("process-wide output limit: many stalled peers hold a bounded total, not N × highWater", async () => {
  const { FramedConn, processOutbound } = await import("../wire/mod.ts");
  const { StalledConn } = await import("./helpers/fake_conn.ts");
  const saved = processOutbound.highWater;
  const baseline = processOutbound.pending;
  processOutbound.highWater = 1024 * 1024;
  const fakes = Array.from({ length: 8 }, () => new StalledConn());
  const conns = fakes.map((f) => new FramedConn(f.asConn()));
  const answer = new Uint8Array(64 * 1024);
  try {
    for (const c of conns) {
      // Each request read makes a 64 KiB answer that the peer never takes.
      c.attach({
        onFrames: (frames) => {
          for (const _ of frames) c.sendRaw(answer);
        },
        onStreamError: () => {},
        onEnd: () => {},
        onClose: () => {},
      });
      c.start();
    }
    for (let i = 0; i < 100; i++) for (const f of fakes) f.feed(frame("r"));
    await sleep(200);
    const held = processOutbound.pending - baseline;
    // Without the limit each would stop only at its own highWater (4 MiB): 32 MiB in all.
    assert.ok(held <= 4 * 1024 * 1024, `8 stalled peers hold ${held} bytes`);
    assert.ok(conns.every((c) => c.readingPaused), "every one of them stopped reading");
  } finally {
    for (const c of conns) c.close();
    processOutbound.highWater = saved;
  }
  assert.equal(processOutbound.pending, baseline, "closing gives every byte back to the count");
});

Deno.test("an answer holding a lone surrogate fails its call at once, not at its timeout", async () => {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  const served = (async () => {
    const conn = await listener.accept();
    const reader = new RawReader(conn);
    await reader.json(); // hello
    await writeAll(conn, jsonFrame({ op: "welcome", v: 1, codec: "json", role: "x", name: "x" }));
    const call = await reader.json();
    await writeAll(conn, frame(`{"id":${call?.id},"result":"\\udc00"}`));
    return conn;
  })();
  let peer: Peer | undefined;
  try {
    peer = await dial({ host: HOST, port: (listener.addr as Deno.NetAddr).port }, {
      role: "t",
      name: "t",
    });
    const t0 = performance.now();
    await assert.rejects(peer.call("x", [], { timeout: 5000 }), (err) => {
      isCode("INTERNAL")(err);
      assert.match((err as Error).message, /Unreadable answer/);
      return true;
    });
    assert.ok(performance.now() - t0 < 1000);
  } finally {
    peer?.close();
    closeQuietly(await served);
    listener.close();
  }
});

Deno.test("encoders refuse lone surrogates, so nothing we send is refused by our own decoder", async () => {
  const { toJsonText, toMsgpack } = await import("../wire/mod.ts");
  for (const bad of ["a\ud800", { k: ["\udfff"] }]) {
    assert.throws(() => toJsonText(bad), isCode("BAD_REQUEST"));
    assert.throws(() => toMsgpack(bad), isCode("BAD_REQUEST"));
  }
  assert.equal(
    toJsonText("😀\\ud800"),
    '"😀\\\\ud800"',
    "a pair and an escaped backslash are fine",
  );
});

Deno.test("truncated text never splits a surrogate pair: an error quoting a client's text stays sendable", async () => {
  const { truncate } = await import("../wire/mod.ts");
  const text = "x".repeat(99) + "😀";
  assert.ok(truncate(text, 100).isWellFormed());
  assert.ok(truncate(text, 100).startsWith("x".repeat(99) + "…"));
  // The server quotes the bad value, cut, in its error: the caller gets it at once.
  await withServer({}, async (port) => {
    const peer = await dial({ host: HOST, port }, { role: "t", name: "t" });
    try {
      await assert.rejects(
        peer.call("add", { a: "x".repeat(99) + "😀", b: 1 }, { timeout: 3000 }),
        isCode("BAD_REQUEST"),
      );
    } finally {
      peer.close();
    }
  });
});

Deno.test("a peer that reports an error and hangs up fails our pending calls with what it reported", async () => {
  await withServer({ maxFrame: 1000 }, async (port) => {
    const peer = await dial({ host: HOST, port }, { role: "t", name: "t" });
    try {
      await assert.rejects(peer.call("echo", ["y".repeat(5000)], { timeout: 3000 }), (err) => {
        isCode("FRAME_TOO_LARGE")(err);
        assert.match(
          (err as Error).message,
          /exceeds the limit of 1000 bytes.*closed the connection/,
        );
        return true;
      });
    } finally {
      peer.close();
    }
  });
});
