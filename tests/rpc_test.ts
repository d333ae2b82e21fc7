import assert from "node:assert/strict";
import { CloseReason, DistError, msgpackCodec, type Peer, Reply } from "../wire/mod.ts";
import { startChild } from "./helpers/child.ts";
import {
  closeQuietly,
  concat,
  jsonFrame,
  prng,
  rawHandshake,
  RawReader,
  sleep,
  waitFor,
  WELCOME,
  within,
  writeAll,
} from "./helpers/raw.ts";
import { connect, deferred, echo, HOST, isCode, rawClient, server } from "./helpers/rpc.ts";

Deno.test("Peer.call() matches 1,000 concurrent calls answered out of order", async () => {
  const rand = prng(42);
  const l = server({
    onRequest: async (_m, params) => {
      await sleep(Math.floor(rand() * 21));
      return params;
    },
  });
  let p: Peer | undefined;
  try {
    p = await connect(l);
    const order: number[] = [];
    const calls = Array.from(
      { length: 1000 },
      (_, i) =>
        p!.call("echo", { i, tag: `call-${i}` }, { timeout: 10_000 }).then((r) => {
          order.push(i);
          return r;
        }),
    );
    const results = await within(Promise.all(calls), 10_000, "1,000 calls");
    results.forEach((r, i) => assert.deepEqual(r, { i, tag: `call-${i}` }));
    assert.notDeepEqual(order, [...order].sort((a, b) => a - b), "answers came back in order");
    assert.equal(p.pendingCalls, 0);
  } finally {
    p?.close();
    await l.close(500);
  }
});

Deno.test("Peer.call() rejects with TIMEOUT after its timeout and ignores the late answer", async () => {
  const gate = deferred();
  let late = 0;
  const l = server({
    onRequest: (m, params) => m === "hang" ? gate.promise.then(() => (late++, "late")) : params,
  });
  let p: Peer | undefined;
  try {
    p = await connect(l, { timeoutMs: 100 });
    const t0 = performance.now();
    await assert.rejects(p.call("hang", null, { timeout: 100 }), isCode("TIMEOUT"));
    const elapsed = performance.now() - t0;
    assert.ok(elapsed >= 80 && elapsed <= 600, `timed out after ${elapsed} ms`);
    await assert.rejects(p.call("hang"), isCode("TIMEOUT"), "the peer's default timeoutMs");
    assert.equal(p.pendingCalls, 0);
    gate.resolve();
    await waitFor(() => late === 2, 2000, "the late answers");
    assert.equal(await p.call("echo", 5), 5, "the late answers matched no call");
    assert.ok(!p.isClosed);
  } finally {
    gate.resolve();
    p?.close();
    await l.close(500);
  }
});

Deno.test("Peer.call() rejects when its AbortSignal aborts, at once if already aborted", async () => {
  const gate = deferred();
  let handled = 0;
  const l = server({ onRequest: (m, params) => (handled++, m === "hang" ? gate.promise : params) });
  let p: Peer | undefined;
  try {
    p = await connect(l);
    const ac = new AbortController();
    const call = p.call("hang", null, { signal: ac.signal, timeout: 5000 });
    await sleep(30);
    let t0 = performance.now();
    ac.abort();
    await assert.rejects(call, isCode("UNAVAILABLE"));
    assert.ok(performance.now() - t0 < 100);
    const ac2 = new AbortController();
    const call2 = p.call("hang", null, { signal: ac2.signal });
    await sleep(10);
    ac2.abort(new DistError("TIMEOUT", "deadline of the caller"));
    await assert.rejects(call2, isCode("TIMEOUT"), "the reason's code");
    assert.equal(p.pendingCalls, 0);

    const before = handled;
    t0 = performance.now();
    await assert.rejects(p.call("echo", 1, { signal: AbortSignal.abort() }), isCode("UNAVAILABLE"));
    const reason = new DistError("OVERLOADED", "shed");
    await assert.rejects(
      p.call("echo", 1, { signal: AbortSignal.abort(reason) }),
      isCode("OVERLOADED"),
    );
    assert.ok(performance.now() - t0 < 50, "rejected at once");
    assert.equal(await p.call("echo", 2), 2);
    assert.equal(handled, before + 1, "an already aborted call is never sent");
  } finally {
    gate.resolve();
    p?.close();
    await l.close(500);
  }
});

Deno.test("Peer.call() rejects every pending call with UNAVAILABLE when the peer is killed", async () => {
  const srv = await startChild("hang_server.ts");
  let p: Peer | undefined;
  try {
    p = await connect(srv.port);
    const settled = Promise.allSettled(
      Array.from({ length: 50 }, (_, i) => p!.call("hang", { i }, { timeout: 10_000 })),
    );
    // Answered in order behind the 50, so all of them have reached the child.
    assert.equal(await p.call("echo", "sync", { timeout: 5000 }), "sync");
    assert.equal(p.pendingCalls, 50);
    const t0 = performance.now();
    srv.child.kill("SIGKILL");
    const results = await within(settled, 1000, "the 50 calls to fail");
    assert.ok(performance.now() - t0 < 1000);
    for (const r of results) {
      assert.equal(r.status, "rejected");
      isCode("UNAVAILABLE")((r as PromiseRejectedResult).reason);
    }
    assert.ok(p.isClosed);
  } finally {
    p?.close();
    await srv.stop();
  }
});

Deno.test("Peer heartbeat closes a silent peer as HeartbeatTimeout and fails its calls", async () => {
  const raw = Deno.listen({ hostname: HOST, port: 0 });
  let accepted: Deno.Conn | undefined;
  const serve = (async () => {
    accepted = await raw.accept();
    const reader = new RawReader(accepted);
    assert.equal((await reader.json())?.op, "hello");
    await writeAll(accepted, jsonFrame(WELCOME));
    await reader.untilClosed(5000); // reads pings and the call, never answers
  })();
  let p: Peer | undefined;
  try {
    p = await connect(raw.addr.port, { heartbeatMs: 100, liveness: 3 });
    const t0 = performance.now();
    const call = p.call("anything", null, { timeout: 5000 });
    const reason = await within(p.closed, 2000, "the heartbeat to close");
    const elapsed = performance.now() - t0;
    assert.equal(reason, CloseReason.HeartbeatTimeout);
    assert.ok(elapsed >= 250 && elapsed <= 700, `closed after ${elapsed} ms`);
    await assert.rejects(call, isCode("UNAVAILABLE"));
    await within(serve, 2000, "the raw server to see the close");
  } finally {
    p?.close();
    closeQuietly(accepted);
    closeQuietly(raw);
    await serve.catch(() => {});
  }
});

Deno.test("Peer heartbeat keeps an idle, healthy connection open, with equal or unequal settings", async () => {
  // 50 ms × 3 is the dead window. With unequal settings the slower side alone
  // would ping only after 2 s: the handshake makes both use 50 ms, whichever
  // side asked for it.
  for (const [listenMs, dialMs] of [[50, 50], [2000, 50], [50, 2000]]) {
    const l = server({ heartbeatMs: listenMs, onRequest: echo });
    let p: Peer | undefined;
    try {
      p = await connect(l, { heartbeatMs: dialMs });
      await sleep(500);
      assert.ok(
        !p.isClosed,
        `closed: ${p.conn.closeReason} (listener ${listenMs}, dialer ${dialMs})`,
      );
      assert.equal(l.peers.size, 1);
      assert.equal(await p.call("echo", "still here"), "still here");
    } finally {
      p?.close();
      await l.close(500);
    }
  }
});

Deno.test("listen() serves JSON and MessagePack dialers with the codec each asked for", async () => {
  const seen: Record<string, string> = {};
  const l = server({
    onRequest: (_m, params, peer) => ({ params, codec: peer.codec.name }),
    onPeer: (peer) => seen[peer.remote.name] = peer.codec.name,
  });
  const peers: Peer[] = [];
  try {
    const pj = await connect(l, { name: "json-client" });
    peers.push(pj);
    const pm = await connect(l, { name: "mp-client", codec: msgpackCodec });
    peers.push(pm);
    const value = { text: "héllo ✓", n: [1, 2.5, -3], nested: { ok: true, nil: null } };
    assert.deepEqual(await pj.call("echo", value), { params: value, codec: "json" });
    assert.deepEqual(await pm.call("echo", value), { params: value, codec: "msgpack" });
    const bin = new Uint8Array([0, 1, 255]);
    assert.deepEqual(await pm.call("echo", bin), { params: bin, codec: "msgpack" });
    assert.deepEqual(seen, { "json-client": "json", "mp-client": "msgpack" });
  } finally {
    for (const p of peers) p.close();
    await l.close(500);
  }
});

Deno.test("Peer answers a handler's DistError with its code, other throws as INTERNAL", async () => {
  const l = server({
    onRequest: (m) => {
      if (m === "not-found") {
        throw new DistError("NOT_FOUND", "no such key", { data: { key: "k" } });
      }
      if (m === "busy") return Promise.reject(new DistError("OVERLOADED", "busy"));
      if (m === "boom") throw new TypeError("kaboom");
      if (m === "boom-async") return Promise.reject("a string");
      return null;
    },
  });
  const bare = server(); // no onRequest: the default handler
  const peers: Peer[] = [];
  try {
    const p = await connect(l);
    peers.push(p);
    const err = await p.call("not-found").catch((e) => e) as DistError;
    isCode("NOT_FOUND")(err);
    assert.equal(err.message, "no such key");
    assert.deepEqual(err.data, { key: "k" });
    await assert.rejects(p.call("busy"), isCode("OVERLOADED"));
    await assert.rejects(p.call("boom"), (e) => isCode("INTERNAL")(e) && /kaboom/.test(`${e}`));
    await assert.rejects(p.call("boom-async"), isCode("INTERNAL"));
    assert.equal(await p.call("fine"), null);
    const q = await connect(bare);
    peers.push(q);
    await assert.rejects(q.call("no.such.method"), isCode("UNKNOWN_METHOD"));
  } finally {
    for (const p of peers) p.close();
    await l.close(500);
    await bare.close(500);
  }
});

Deno.test("Peer.notify() reaches onNotification both ways and gets no answer", async () => {
  const got: unknown[] = [];
  const back: unknown[] = [];
  let serverPeer: Peer | undefined;
  const l = server({
    onRequest: echo,
    onNotification: (m, params, peer) => got.push([m, params, peer.remote.name]),
    onPeer: (peer) => serverPeer = peer,
  });
  let p: Peer | undefined;
  let conn: Deno.Conn | undefined;
  try {
    p = await connect(l, {
      name: "notifier",
      onNotification: (m, params) => back.push([m, params]),
    });
    assert.equal(p.notify("note", { x: 1 }), true);
    p.notify("bare");
    await waitFor(() => got.length === 2, 2000, "two notifications");
    assert.deepEqual(got, [["note", { x: 1 }, "notifier"], ["bare", undefined, "notifier"]]);
    serverPeer!.notify("to-client", [1]);
    await waitFor(() => back.length === 1, 2000, "a notification to the dialer");
    assert.deepEqual(back, [["to-client", [1]]]);

    const raw = await rawClient(l);
    conn = raw.conn;
    await rawHandshake(conn, raw.reader);
    await writeAll(
      conn,
      concat([
        jsonFrame({ method: "note", params: 2 }),
        jsonFrame({ id: 9, method: "e", params: 3 }),
      ]),
    );
    assert.deepEqual(await raw.reader.json(), { id: 9, result: 3 }, "first frame back");
    await waitFor(() => got.length === 3, 2000, "the raw notification");
    p.close();
    assert.equal(p.notify("after-close"), false);
  } finally {
    p?.close();
    closeQuietly(conn);
    await l.close(500);
  }
});

Deno.test("Peer.request() returns the result with the responder's by", async () => {
  const l = server({
    by: "srv-1",
    onRequest: (m, params) => m === "pass" ? new Reply(params, "backend-7") : params,
  });
  const peers: Peer[] = [];
  try {
    const p = await connect(l);
    peers.push(p);
    assert.deepEqual(await p.request("echo", 1), { result: 1, by: "srv-1" });
    assert.deepEqual(await p.request("pass", 2), { result: 2, by: "backend-7" });
    assert.equal(await p.call("echo", 3), 3);
    l.by = "srv-renamed";
    const q = await connect(l);
    peers.push(q);
    assert.deepEqual(await q.request("echo", 4), { result: 4, by: "srv-renamed" });
  } finally {
    for (const p of peers) p.close();
    await l.close(500);
  }
});
