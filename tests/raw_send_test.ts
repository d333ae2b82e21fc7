/**
 * wire/raw_send.ts: the balancer's writes by one libc `send` on Deno's TCP
 * sockets. What goes out must be what was queued, in order, whether `send`
 * takes it whole, in part or not at all (a peer that does not read: the
 * rest goes on through the runtime's write).
 */
import assert from "node:assert/strict";
import { Outbound } from "../wire/outbound.ts";
import { NO_FD, rawSend, useRawSend } from "../wire/raw_send.ts";
import { tcpPair } from "./helpers/raw.ts";

async function readExactly(conn: Deno.Conn, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let got = 0;
  while (got < n) {
    const k = await conn.read(out.subarray(got));
    if (k === null) break;
    got += k;
  }
  return out.subarray(0, got);
}

/** An Outbound with raw send on over a fresh TCP pair: `out` writes `a`; errors collected. */
async function withOutbound(
  body: (out: Outbound, a: Deno.TcpConn, b: Deno.TcpConn, errors: unknown[]) => Promise<void>,
): Promise<void> {
  assert.ok(useRawSend(), "libc send available (Linux, --allow-ffi)");
  const [a, b] = await tcpPair();
  const errors: unknown[] = [];
  const out = new Outbound(a, 64 * 1024 * 1024, (err) => errors.push(err));
  try {
    await body(out, a, b, errors);
  } finally {
    out.close();
    a.close();
    try {
      b.close();
    } catch {
      // Closed by the test.
    }
  }
}

Deno.test("raw send: a connection's descriptor is found by its ends, and writes reach its peer", async () => {
  assert.ok(useRawSend(), "libc send available (Linux, --allow-ffi)");
  const [a, b] = await tcpPair();
  try {
    // Not before the connection has written a few times (idle ones never look).
    assert.equal(rawSend!.fdOf(a, 1), -1);
    const fd = rawSend!.fdOf(a, 100);
    assert.ok(fd >= 0, `descriptor found: ${fd}`);
    const hello = new TextEncoder().encode("hello");
    assert.equal(rawSend!.send(fd, hello, hello.length), hello.length);
    assert.equal(new TextDecoder().decode(await readExactly(b, 5)), "hello");
    // The other end has a descriptor of its own.
    assert.notEqual(rawSend!.fdOf(b, 100), fd);
  } finally {
    a.close();
    b.close();
  }
});

Deno.test("raw send: 16 MiB queued to a peer that reads late arrive whole and in order", async () => {
  await withOutbound(async (out, _a, b, errors) => {
    const total = 16 * 1024 * 1024;
    // Chunks of odd sizes, each byte its position mod 251, a flush each: the
    // first ones (drained one by one) go through the op until the descriptor
    // is known, then by send until the send buffer fills, then through the op.
    let queued = 0;
    for (let i = 0; queued < total; i++) {
      if (i < 12) await out.drained(0);
      const n = Math.min(total - queued, 1 + (i * 7919) % 200_000);
      const buf = out.buffer;
      buf.reserve(n);
      for (let k = 0; k < n; k++) buf.bytes[buf.length + k] = (queued + k) % 251;
      buf.length += n;
      queued += n;
      assert.ok(out.queued(Infinity));
      out.flush();
      if (i % 16 === 15) await new Promise((r) => setTimeout(r, 1));
    }
    const got = await readExactly(b, total);
    await out.drained(0);
    assert.deepEqual(errors, []);
    assert.equal(got.length, total);
    for (let k = 0; k < total; k++) {
      if (got[k] !== k % 251) assert.fail(`byte ${k}: ${got[k]} where ${k % 251} was written`);
    }
    assert.equal(out.bytesOut, total);
    assert.equal(out.pending, 0);
  });
});

Deno.test("raw send: a write to a peer that is gone fails as the runtime's write does", async () => {
  await withOutbound(async (out, a, b, errors) => {
    const write = async (n: number) => {
      out.buffer.reserve(n);
      out.buffer.length += n;
      out.queued(Infinity);
      out.flush();
      await out.drained(0);
    };
    for (let i = 0; i < 10; i++) await write(10);
    assert.ok(rawSend!.fdOf(a, 100) !== NO_FD);
    b.close();
    await new Promise((r) => setTimeout(r, 20));
    for (let i = 0; i < 10 && errors.length === 0; i++) {
      await write(1000);
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.equal(errors.length, 1, "the write error is reported once");
  });
});
