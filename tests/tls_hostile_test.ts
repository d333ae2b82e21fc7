/**
 * Hostile peers over TLS (issue 15): garbage instead of a handshake, a
 * truncated ClientHello, a handshake that never finishes or drips in a byte
 * at a time (slowloris), floods of them, and garbage or bad hellos once TLS
 * is up. Each is closed within the handshake deadline (or at once), and the
 * listener, in TLS and in mutual TLS, serves a good dialer meanwhile.
 */
import assert from "node:assert/strict";
import { dial, listen, type Listener, type TlsSettings } from "../wire/mod.ts";
import { makePki, type Pki } from "./helpers/pki.ts";
import {
  closeQuietly,
  concat,
  frame,
  HELLO,
  jsonFrame,
  prng,
  RawReader,
  sleep,
  writeAll,
} from "./helpers/raw.ts";

const pki: Pki = await makePki();
globalThis.addEventListener("unload", () => Deno.removeSync(pki.dir, { recursive: true }));

/** The handshake deadline of these listeners (ms). */
const DEADLINE_MS = 500;
/** Slack for a loaded machine past the deadline, before a test calls the close missing (ms). */
const SLACK_MS = 3000;

const KINDS: [string, TlsSettings][] = [
  ["TLS", { cert: pki.server.certPem, key: pki.server.keyPem }],
  ["mutual TLS", { cert: pki.server.certPem, key: pki.server.keyPem, clientCa: pki.caPem }],
];
const GOOD: TlsSettings = { ca: pki.caPem, cert: pki.alice.certPem, key: pki.alice.keyPem };

function serve(tls: TlsSettings): Listener {
  return listen({
    port: 0,
    role: "server",
    name: "tls-server",
    tls,
    handshakeMs: DEADLINE_MS,
    onRequest: (method, params) => method === "echo" ? (params as { text: string }).text : null,
  });
}

/** A TLS connection to `listener` with alice's certificate, its handshake done. */
async function aliceOver(listener: Listener): Promise<Deno.TlsConn> {
  const c = await Deno.connectTls({
    hostname: "127.0.0.1",
    port: listener.addr.port,
    caCerts: [pki.caPem],
    cert: pki.alice.certPem,
    key: pki.alice.keyPem,
  });
  await c.handshake();
  return c;
}

/** A good dialer is served (within a bound that is about the product: a few handshakes). */
async function servesGood(listener: Listener): Promise<void> {
  const peer = await dial({ host: "127.0.0.1", port: listener.addr.port }, {
    role: "test",
    name: "good",
    tls: GOOD,
    connectTimeoutMs: 5000,
  });
  try {
    assert.equal(await peer.call("echo", { text: "still serving" }), "still serving");
  } finally {
    peer.close();
  }
}

/** Resolves with the ms until the listener closed `conn` (EOF or reset), or throws past `ms`. */
async function closedWithin(conn: Deno.Conn, ms: number): Promise<number> {
  const start = performance.now();
  const buf = new Uint8Array(16 * 1024);
  const timer = setTimeout(() => closeQuietly(conn), ms);
  try {
    while (true) {
      let n: number | null;
      try {
        n = await conn.read(buf);
      } catch {
        n = null;
      }
      if (n === null) break;
    }
  } finally {
    clearTimeout(timer);
  }
  const took = performance.now() - start;
  assert.ok(took < ms, `not closed within ${ms} ms`);
  closeQuietly(conn);
  return took;
}

/** A real ClientHello, as Deno's TLS sends it (caught by a plain listener). */
async function clientHello(): Promise<Uint8Array> {
  const catcher = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const caught = catcher.accept().then(async (c) => {
      const buf = new Uint8Array(4096);
      const n = await c.read(buf);
      c.close();
      return buf.slice(0, n ?? 0);
    });
    const tcp = await Deno.connect({ hostname: "127.0.0.1", port: catcher.addr.port });
    const tls = await Deno.startTls(tcp, { hostname: "127.0.0.1", caCerts: [pki.caPem] });
    const hello = await caught;
    await tls.handshake().catch(() => {});
    closeQuietly(tls);
    assert.equal(hello[0], 0x16, "a TLS handshake record");
    return hello;
  } finally {
    catcher.close();
  }
}

const HELLO_BYTES = await clientHello();

function connect(listener: Listener): Promise<Deno.TcpConn> {
  return Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
}

for (const [kind, tls] of KINDS) {
  Deno.test(`${kind}: garbage instead of a handshake is closed at once, and the listener serves on`, async () => {
    const listener = serve(tls);
    try {
      const random = prng(15);
      for (let i = 0; i < 5; i++) {
        const conn = await connect(listener);
        const junk = Uint8Array.from({ length: 4096 }, () => Math.floor(random() * 256));
        await conn.write(junk).catch(() => 0);
        // At once: well before the handshake deadline would cut it.
        assert.ok(await closedWithin(conn, DEADLINE_MS + SLACK_MS) >= 0);
      }
      await servesGood(listener);
    } finally {
      await listener.close(0);
    }
  });

  Deno.test(`${kind}: a truncated ClientHello, then EOF or silence, is closed by the deadline at the latest`, async () => {
    const listener = serve(tls);
    try {
      const eof = await connect(listener);
      await eof.write(HELLO_BYTES.subarray(0, 40));
      await eof.closeWrite();
      await closedWithin(eof, DEADLINE_MS + SLACK_MS);
      const stalled = await connect(listener);
      await stalled.write(HELLO_BYTES.subarray(0, HELLO_BYTES.length - 10));
      const took = await closedWithin(stalled, DEADLINE_MS + SLACK_MS);
      assert.ok(took >= DEADLINE_MS * 0.8, `closed after ${took} ms, before the deadline`);
      await servesGood(listener);
    } finally {
      await listener.close(0);
    }
  });

  Deno.test(`${kind}: a handshake that never starts, or drips in a byte at a time, is cut at the deadline`, async () => {
    const listener = serve(tls);
    try {
      const silent = await connect(listener);
      const drip = await connect(listener);
      let dripping = true;
      const dripped = (async () => {
        for (let i = 0; dripping && i < HELLO_BYTES.length - 1; i++) {
          if (await drip.write(HELLO_BYTES.subarray(i, i + 1)).catch(() => 0) === 0) break;
          await sleep(50);
        }
      })();
      try {
        const [a, b] = await Promise.all([
          closedWithin(silent, DEADLINE_MS + SLACK_MS),
          closedWithin(drip, DEADLINE_MS + SLACK_MS),
        ]);
        for (const took of [a, b]) assert.ok(took >= DEADLINE_MS * 0.8, `closed after ${took} ms`);
      } finally {
        dripping = false;
        await dripped;
      }
      await servesGood(listener);
    } finally {
      await listener.close(0);
    }
  });

  Deno.test(`${kind}: a flood of stalled and garbage handshakes does not keep a good dialer out`, async () => {
    const listener = serve(tls);
    const conns: Deno.Conn[] = [];
    try {
      for (let i = 0; i < 100; i++) {
        const conn = await connect(listener);
        conns.push(conn);
        if (i % 2 === 0) await conn.write(HELLO_BYTES.subarray(0, 20));
        else await conn.write(new Uint8Array(300).fill(0x41)).catch(() => 0);
      }
      await servesGood(listener);
      // Every one of them is gone by the deadline.
      await Promise.all(conns.map((c) => closedWithin(c, DEADLINE_MS + SLACK_MS)));
      await servesGood(listener);
    } finally {
      for (const c of conns) closeQuietly(c);
      await listener.close(0);
    }
  });

  Deno.test(`${kind}: garbage and bad hellos once TLS is up get the wire's answers, and the listener serves on`, async () => {
    const listener = serve(tls);
    const open = () => aliceOver(listener);
    try {
      // A length prefix far over the limit: FRAME_TOO_LARGE, then closed.
      const big = await open();
      await big.write(Uint8Array.of(0x7f, 0xff, 0xff, 0xff, 1, 2, 3));
      const bigAnswer = await new RawReader(big).json();
      assert.equal((bigAnswer?.error as { code: string }).code, "FRAME_TOO_LARGE");
      closeQuietly(big);
      // Bad hellos, twenty at once: BAD_REQUEST each, then closed.
      const bad = await Promise.all(Array.from({ length: 20 }, open));
      await Promise.all(
        bad.map((c, i) => c.write(i % 2 ? frame("not json") : jsonFrame({ ...HELLO, v: 99 }))),
      );
      for (const c of bad) {
        const reader = new RawReader(c);
        const answer = await reader.json(5000);
        assert.equal((answer?.error as { code: string }).code, "BAD_REQUEST");
        await reader.untilClosed(5000);
        closeQuietly(c);
      }
      await servesGood(listener);
    } finally {
      await listener.close(0);
    }
  });
}

for (const [kind, tls] of KINDS) {
  Deno.test(`${kind}: a client that sends echoes and never reads their answers stops being read (hostile review 36 J7)`, async () => {
    const listener = serve(tls);
    const c = await aliceOver(listener);
    try {
      await c.write(jsonFrame(HELLO));
      const text = "e".repeat(60_000);
      const batch = concat(
        Array.from(
          { length: 16 },
          (_, i) => jsonFrame({ id: i, method: "echo", params: { text } }),
        ),
      );
      // As fast as the socket takes them, for 4 s at most; the answers are never read.
      const deadline = Date.now() + 4000;
      let sent = 0;
      while (Date.now() < deadline && sent < 200e6) {
        const wrote = await Promise.race([
          writeAll(c, batch).then(() => true, () => false),
          sleep(Math.max(0, deadline - Date.now())).then(() => false),
        ]);
        if (!wrote) break;
        sent += batch.length;
      }
      // Plain TCP stops at the socket buffers and the connection's bounds (about 12 MB); before,
      // TLS read on and decrypted all a client sent (576 MB in 10 s from another process).
      assert.ok(
        sent < 48e6,
        `${(sent / 1e6).toFixed(0)} MB taken from a client that reads nothing`,
      );
      await servesGood(listener);
    } finally {
      closeQuietly(c);
      await listener.close(0);
    }
  });
}
