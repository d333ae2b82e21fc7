/**
 * hostile41a W9: the first frame (the hello) was read up to the
 * connection's frame limit (1 MiB) and parsed whole before any credential
 * was checked: a hello of 0.98 MB with 62,000 escaped keys took the
 * balancer's event loop ~200 ms each. Now a first frame past 16 KiB fails
 * FRAME_TOO_LARGE as soon as its length prefix is read, answered and
 * closed, on every role's port (the handshake is wire's); a hello with the
 * longest credentials still fits.
 */
import assert from "node:assert/strict";
import { FIRST_FRAME_BYTES } from "../wire/inbound.ts";
import { MAX_SECRET_LENGTH } from "../wire/credentials.ts";
import { header, HELLO, jsonFrame, writeAll } from "./helpers/raw.ts";
import { connect, rawClient, server } from "./helpers/rpc.ts";

Deno.test("a hello past 16 KiB is refused FRAME_TOO_LARGE at its length prefix, without being read", async () => {
  const l = server({ onRequest: () => 1 });
  const { conn, reader } = await rawClient(l);
  try {
    // Only the length prefix and the start of a 500 KB hello: main waited for the rest.
    const padding = "x".repeat(500_000);
    const whole = jsonFrame({ ...HELLO, padding });
    await writeAll(conn, whole.subarray(0, 4 + 200));
    const answer = await reader.json(3000);
    assert.equal(answer?.op, "error", JSON.stringify(answer)?.slice(0, 200));
    const error = answer?.error as { code: string; message: string };
    assert.equal(error.code, "FRAME_TOO_LARGE", error.message);
    assert.match(error.message, /First frame .* 500\d+ bytes .* 16384/);
    await reader.untilClosed(3000);
  } finally {
    conn.close();
    await l.close();
  }
});

Deno.test("a whole 100 KB hello (not key-heavy) is refused too; one of 16 KiB passes", async () => {
  const l = server({ onRequest: () => 1 });
  try {
    const big = await rawClient(l);
    await writeAll(big.conn, jsonFrame({ ...HELLO, padding: "y".repeat(100_000) }));
    const answer = await big.reader.json(3000);
    // Main: a welcome (the padding field is ignored).
    assert.equal((answer?.error as { code: string } | undefined)?.code, "FRAME_TOO_LARGE");
    big.conn.close();
    const fits = await rawClient(l);
    const hello = jsonFrame({ ...HELLO, padding: "" });
    const pad = FIRST_FRAME_BYTES - (hello.length - 4);
    await writeAll(fits.conn, jsonFrame({ ...HELLO, padding: "z".repeat(pad) }));
    assert.equal((await fits.reader.json(3000))?.op, "welcome");
    fits.conn.close();
  } finally {
    await l.close();
  }
});

Deno.test("a hello with token, user and password at their longest still fits the first frame", async () => {
  // In clear, as a dialer older than the challenge sends them (a dist dialer sends a proof, and
  // refuses a listener without settings, h46d D6): the longest hello a listener must take.
  const l = server({ onRequest: () => 7 });
  const { conn, reader } = await rawClient(l);
  try {
    const secret = "s".repeat(MAX_SECRET_LENGTH);
    const hello = {
      ...HELLO,
      token: secret,
      user: "u".repeat(MAX_SECRET_LENGTH),
      password: secret,
    };
    assert.ok(jsonFrame(hello).length <= FIRST_FRAME_BYTES);
    await writeAll(conn, jsonFrame(hello));
    assert.equal((await reader.json(3000))?.op, "welcome");
    await writeAll(conn, jsonFrame({ id: 1, method: "anything", params: {} }));
    assert.equal((await reader.json(3000))?.result, 7);
  } finally {
    conn.close();
    await l.close();
  }
});

Deno.test("a dialer told FRAME_TOO_LARGE by a listener whose welcome is too long fails at once", async () => {
  // A listener (raw) answering a 64 KB welcome: the dialer refuses it by its length.
  const raw = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = (async () => {
    const c = await raw.accept();
    await writeAll(c, header(64 * 1024));
    // Until the dialer goes.
    while (await c.read(new Uint8Array(1024)) !== null);
    c.close();
  })();
  try {
    const started = performance.now();
    await assert.rejects(
      connect(raw.addr.port, { connectTimeoutMs: 2500 }),
      (err: Error & { code?: string }) => err.code === "FRAME_TOO_LARGE",
    );
    assert.ok(
      performance.now() - started < 2000,
      "failed at the length prefix, not at the timeout",
    );
  } finally {
    raw.close();
    await served.catch(() => {});
  }
});
