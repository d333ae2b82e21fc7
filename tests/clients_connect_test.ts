/**
 * The client library's connection (clients/connection.ts) against a real
 * `dist server` run in this process: typed and untyped requests, error
 * codes, timeouts and aborts, redial after a server restart, drain and close.
 */
import assert from "node:assert/strict";
import { connect, Connection, DistError, ops, sys } from "../clients/mod.ts";
import { listen } from "../wire/mod.ts";
import { startServerRole } from "./helpers/server_role.ts";
import { isCode } from "./helpers/rpc.ts";
import { within } from "./helpers/raw.ts";
import { freePort } from "./helpers/dist.ts";

Deno.test("connect(): typed requests come back checked and typed, untyped as they came, with by", async () => {
  const server = await startServerRole({ name: "s1" });
  const conn = await connect(`127.0.0.1:${server.port}`);
  try {
    const sum: number = await conn.request(ops.methods.add, { a: 3, b: 4 });
    assert.equal(sum, 7);
    const pong = await conn.request(sys.methods.ping, undefined);
    assert.deepEqual(pong, { pong: true, role: "server", name: "s1" });
    assert.equal(await conn.request("somma", [1, 2]), 3);
    const r = await conn.exchange(ops.methods.echo, { text: "hi" });
    assert.deepEqual(r, { result: "hi", by: "s1" });
    assert.equal(conn.remote?.name, "s1");
    assert.equal(conn.connected, true);
  } finally {
    conn.close();
    await server.stop();
  }
});

Deno.test("connect(): the server's errors arrive as DistError with their code", async () => {
  const server = await startServerRole();
  const conn = await connect({ host: "127.0.0.1", port: server.port });
  try {
    await assert.rejects(conn.request(ops.methods.div, { a: 1, b: 0 }), (err) => {
      assert.ok(err instanceof DistError);
      assert.equal(err.code, "BAD_REQUEST");
      assert.equal(err.message, "Division by zero");
      return true;
    });
    await assert.rejects(conn.request("nope"), isCode("UNKNOWN_METHOD"));
    await assert.rejects(conn.request("add", { a: "x", b: 1 }), /"a" must be a finite number/);
  } finally {
    conn.close();
    await server.stop();
  }
});

Deno.test("connect(): a refused first connection fails at once; waitOnFirstConnect waits for it", async () => {
  // Below the ephemeral range: listened on again later, so no outgoing connection may take it.
  const port = freePort();
  const server = await startServerRole({ port });
  await server.stop();
  const t0 = performance.now();
  await assert.rejects(connect(`127.0.0.1:${port}`, { connectTimeout: 3000 }), (err) => {
    assert.ok(err instanceof DistError);
    assert.equal(err.code, "UNAVAILABLE");
    assert.ok(err.cause instanceof Deno.errors.ConnectionRefused, `${err.cause}`);
    return true;
  });
  assert.ok(performance.now() - t0 < 2000, "not after the connect timeout");
  const late = connect(`127.0.0.1:${port}`, { waitOnFirstConnect: true, connectTimeout: 8000 });
  late.catch(() => {}); // awaited below; a failed restart must not leave it unhandled
  await new Promise((r) => setTimeout(r, 300));
  const again = await startServerRole({ port });
  const conn = await within(late, 8000, "the late connection");
  try {
    assert.equal(await conn.request(ops.methods.add, { a: 1, b: 1 }), 2);
  } finally {
    conn.close();
    await again.stop();
  }
});

Deno.test("request(): a timeout is TIMEOUT, an abort UNAVAILABLE, and the connection goes on", async () => {
  const server = await startServerRole();
  const conn = await connect(`127.0.0.1:${server.port}`, { timeout: 5000 });
  try {
    await assert.rejects(
      conn.request(ops.methods.sleep, { ms: 300 }, { timeout: 50 }),
      isCode("TIMEOUT"),
    );
    const abort = new AbortController();
    const aborted = conn.request(ops.methods.sleep, { ms: 300 }, { signal: abort.signal });
    abort.abort();
    await assert.rejects(aborted, isCode("UNAVAILABLE"));
    // The late answers are dropped; the next request is answered as usual.
    await new Promise((r) => setTimeout(r, 350));
    assert.equal(await conn.request(ops.methods.echo, { text: "still here" }), "still here");
  } finally {
    conn.close();
    await server.stop();
  }
});

Deno.test("connect(): after a server restart it dials again; requests in flight and made meanwhile are answered", async () => {
  const port = freePort(); // listened on again after the restart
  const first = await startServerRole({ port, name: "before" });
  const conn = await connect(`127.0.0.1:${port}`, { timeout: 8000 });
  let second: Awaited<ReturnType<typeof startServerRole>> | undefined;
  try {
    // Settled either way before anything can fail: a restart that fails is the error shown.
    const settle = <T>(p: Promise<T>) => p.then((r) => r, (e) => e);
    const inFlight = settle(conn.exchange(ops.methods.sleep, { ms: 500 }));
    const once = settle(conn.request("sleep", { ms: 500 }, { idempotent: false }));
    await first.stop(); // the server finishes nothing past its grace: both calls are lost
    // Not sent again: it may have run.
    const refused = await once;
    isCode("UNAVAILABLE")(refused);
    assert.deepEqual((refused as DistError).data, { mayHaveRun: true });
    const waiting = settle(conn.exchange(ops.methods.echo, { text: "again" }));
    second = await startServerRole({ port, name: "after" });
    assert.deepEqual(await within(waiting, 8000, "the waiting request"), {
      result: "again",
      by: "after",
    });
    // Idempotent: sent again on the new connection.
    assert.deepEqual(await within(inFlight, 8000, "the request in flight"), {
      result: 500,
      by: "after",
    });
    assert.equal(conn.remote?.name, "after");
  } finally {
    conn.close();
    await second?.stop();
  }
});

Deno.test("drain() finishes requests in flight then closes; close() fails them", async () => {
  const server = await startServerRole();
  try {
    const conn = await connect(`127.0.0.1:${server.port}`);
    const slow = conn.request(ops.methods.sleep, { ms: 200 });
    const drained = conn.drain(5000);
    await assert.rejects(conn.request(ops.methods.echo, { text: "late" }), /draining/);
    assert.equal(await slow, 200);
    await drained;
    assert.equal(conn.connected, false);
    await assert.rejects(conn.request("echo", "x"), isCode("UNAVAILABLE"));

    const other = await connect(`127.0.0.1:${server.port}`);
    const cut = other.request(ops.methods.sleep, { ms: 500 });
    other.close();
    await assert.rejects(cut, isCode("UNAVAILABLE"));
  } finally {
    await server.stop();
  }
});

Deno.test("a typed request fails INTERNAL when the answer is not what the contract says", async () => {
  // A fake service: the same method names, garbage answers.
  const fake = listen({
    host: "127.0.0.1",
    port: 0,
    role: "server",
    name: "liar",
    by: "liar",
    onRequest: (method) => method === "sys.ping" ? { pong: "yes" } : "seven",
  });
  const conn = new Connection(`127.0.0.1:${fake.addr.port}`);
  try {
    await conn.ready();
    await assert.rejects(conn.request(ops.methods.add, { a: 3, b: 4 }), (err) => {
      assert.ok(err instanceof DistError);
      assert.equal(err.code, "INTERNAL");
      assert.equal(
        err.message,
        'Malformed answer to add from liar: "result" must be a finite number, got seven',
      );
      return true;
    });
    await assert.rejects(conn.request(sys.methods.ping, {}), /"pong" must be true, got yes/);
    assert.equal(await conn.request("add", { a: 3, b: 4 }), "seven", "untyped: as it came");
  } finally {
    conn.close();
    await fake.close(0);
  }
});
