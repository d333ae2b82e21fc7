/**
 * A peer that does not speak dist (issue 13 item 3): a dialer that reaches
 * an HTTP or TLS port says so, naming what answered, instead of
 * `FRAME_TOO_LARGE: Frame of 1213486160 bytes`; a listener that receives
 * HTTP, a TLS ClientHello or other bytes logs one line naming them, closes,
 * and goes on serving.
 */
import assert from "node:assert/strict";
import { foreignBytes } from "../wire/foreign.ts";
import { dial } from "../wire/mod.ts";
import { lines, runDist, startDist } from "./helpers/dist.ts";
import { waitFor } from "./helpers/raw.ts";

const text = (s: string) => new TextEncoder().encode(s);
const bytes = (...b: number[]) => new Uint8Array(b);
const MAX = 1024 * 1024;

const ROWS: [string, Uint8Array, string | undefined][] = [
  [
    "an HTTP answer",
    text("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n"),
    '"HTTP/1.1 400 Bad Request"',
  ],
  ["an HTTP request", text("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), '"GET / HTTP/1.1"'],
  ["an SSH banner", text("SSH-2.0-OpenSSH_9.2\r\n"), '"SSH-2.0-OpenSSH_9.2"'],
  ["a line longer than is quoted", text("x".repeat(64)), `"${"x".repeat(60)}…"`],
  ["text the head cut short", text("y".repeat(62) + "zz"), `"${"y".repeat(60)}…"`],
  ["a short reply, then EOF", text("no\n"), '"no"'],
  ["a TLS ClientHello", bytes(0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01), "a TLS ClientHello"],
  ["a TLS alert", bytes(0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32), "a TLS alert"],
  ["a frame holding text", bytes(0, 0, 0, 5, ...text("hello")), 'a frame holding "hello"'],
  ["binary", bytes(0xff, 0x00, 0x13, 0x37, 1, 2, 3, 4, 5), "bytes ff 00 13 37 01 02 03 04 …"],
  ["a dist frame", bytes(0, 0, 0, 60, 0x7b, 0x22), undefined],
  ["a dist length prefix alone", bytes(0, 0, 1), undefined],
  ["nothing", bytes(), undefined],
];

for (const [what, head, expected] of ROWS) {
  Deno.test(`foreignBytes() names ${what}: ${expected ?? "may be dist"}`, () => {
    assert.equal(foreignBytes(head, MAX), expected);
  });
}

Deno.test("foreignBytes(): a length over the connection's limit is not dist", () => {
  assert.equal(foreignBytes(bytes(0, 0x20, 0, 0, 0x7b), MAX), "bytes 00 20 00 00 7b");
  assert.equal(foreignBytes(bytes(0, 0x20, 0, 0, 0x7b), 4 * MAX), undefined);
});

/** A self-signed certificate for 127.0.0.1 tests only (EC P-256, 100 years). */
const CERT = `-----BEGIN CERTIFICATE-----
MIIBgDCCASWgAwIBAgIUJji2648WncYLBfSvNI3tKEGBh0MwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTIwNDEyMzk0MFoYDzIxMjYxMTEw
MTIzOTQwWjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAAQ5dcU3ZaorhQslVhmPet1DJ1VP3d8QV4uoZYngp7t0k0zwoRq2+95O
NvPeVcdpUvw5hQT9Aa7PMLfP/AQMuEHPo1MwUTAdBgNVHQ4EFgQU1eK9kk5SyzMc
hR2OVci3leT0N4kwHwYDVR0jBBgwFoAU1eK9kk5SyzMchR2OVci3leT0N4kwDwYD
VR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNJADBGAiEApx2O4L4ystct2atCQAV0
tXE38Gdfj8x/PGrhLbcWBo8CIQCV1pdffTBVglRIjNDvc/lLRbIoSaHU2owICe3Y
E3/kGA==
-----END CERTIFICATE-----`;
const KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgiXa/Hz8QTEfq1pVI
/v0LWW11G0e7eV8bOT2HvZMSFB2hRANCAAQ5dcU3ZaorhQslVhmPet1DJ1VP3d8Q
V4uoZYngp7t0k0zwoRq2+95ONvPeVcdpUvw5hQT9Aa7PMLfP/AQMuEHP
-----END PRIVATE KEY-----`;

Deno.test("dist client pointed at an HTTP server says it does not speak dist, naming the answer", async () => {
  const http = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () => new Response("hello"),
  );
  try {
    const where = `127.0.0.1:${http.addr.port}`;
    const r = await runDist(["client", "--connect", where, "echo", "hi"]);
    assert.equal(r.code, 1, r.stderr);
    assert.deepEqual(lines(r.stderr), [
      `dist: UNAVAILABLE: ${where} does not speak the dist protocol ` +
      `(it answered "HTTP/1.1 400 Bad Request")`,
    ]);
  } finally {
    await http.shutdown();
  }
});

Deno.test("dial() of a TLS port says it speaks TLS (it answered a TLS alert)", async () => {
  const tls = Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert: CERT, key: KEY });
  const served = (async () => {
    for await (const conn of tls) conn.handshake().catch(() => conn.close());
  })();
  try {
    const where = `127.0.0.1:${tls.addr.port}`;
    await assert.rejects(
      dial({ host: "127.0.0.1", port: tls.addr.port }, { role: "test", name: "t" }),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, "UNAVAILABLE");
        assert.equal(
          err.message,
          `${where} speaks TLS: dial it with --tls-ca FILE (it answered a TLS alert)`,
        );
        return true;
      },
    );
  } finally {
    tls.close();
    await served;
  }
});

Deno.test("a dist server logs one line for HTTP, TLS and other bytes, closes them, and serves on", async () => {
  const server = await startDist(["server", "--port", "0"]);
  const port = server.port;
  const said = (what: string) =>
    lines(server.stderr()).filter((l) =>
      l.includes(`does not speak the dist protocol (it sent ${what}); closed`)
    );
  const saidTls = () =>
    lines(server.stderr()).filter((l) =>
      l.includes(
        "speaks TLS (it sent a TLS ClientHello), this listener does not: " +
          "give it --tls-cert and --tls-key, or the dialer no --tls-ca; closed",
      )
    );
  try {
    // A real HTTP client: its request is answered with a closed connection.
    await assert.rejects(fetch(`http://127.0.0.1:${port}/status`));
    await waitFor(() => said('"GET /status HTTP/1.1"').length > 0, 5000, "the HTTP line");
    // A real TLS client: its ClientHello is not a handshake.
    await assert.rejects(
      Deno.connectTls({ hostname: "127.0.0.1", port, caCerts: [CERT] })
        .then((c) => c.handshake().finally(() => c.close())),
    );
    await waitFor(() => saidTls().length > 0, 5000, "the TLS line");
    // Anything else: named by its first bytes.
    const raw = await Deno.connect({ hostname: "127.0.0.1", port });
    await raw.write(bytes(0xff, 0xfe, 0xfd, 0xfc, 0, 1, 2, 3, 4));
    const buf = new Uint8Array(64 * 1024);
    while (await raw.read(buf).catch(() => null) !== null); // its error frame, then EOF
    raw.close();
    await waitFor(() => said("bytes ff fe fd fc 00 01 02 03 …").length > 0, 5000, "the bytes line");
    // One line each, and no other warning about them.
    assert.equal(said('"GET /status HTTP/1.1"').length, 1);
    assert.equal(saidTls().length, 1);
    const warnings = lines(server.stderr()).filter((l) => l.includes("[WRN]"));
    assert.equal(warnings.length, 3, warnings.join("\n"));
    const peer = await dial({ host: "127.0.0.1", port }, { role: "test", name: "t" });
    try {
      assert.equal(await peer.call("echo", { text: "still here" }), "still here");
    } finally {
      peer.close();
    }
  } finally {
    await server.stop();
  }
});
