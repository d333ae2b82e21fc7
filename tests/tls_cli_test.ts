/**
 * TLS from the command line (issue 15): `dist cert ca|issue` make files
 * openssl verifies; a server and a client given them talk, in TLS and in
 * mutual TLS; each side without the other's flag says which is missing;
 * TLS files that cannot be used are one `dist: …` line and exit 2.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { lines, runDist, startDist } from "./helpers/dist.ts";
import { waitFor } from "./helpers/raw.ts";

const dir = await Deno.makeTempDir({ prefix: "dist-cert-" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
const f = (name: string) => join(dir, name);

async function cert(args: string[]): Promise<string> {
  const r = await runDist(["cert", ...args, "--dir", dir]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

const HAVE_OPENSSL = await new Deno.Command("openssl", { args: ["version"], stdout: "null" })
  .output().then((r) => r.success, () => false);
if (!HAVE_OPENSSL) {
  console.error("tls_cli_test: no openssl here: the openssl verify check is left out");
}

// Made once for the file: a CA, a server for 127.0.0.1 and localhost, a client.
await cert(["ca"]);
await cert(["issue", "server-1", "--host", "127.0.0.1,localhost"]);
await cert(["issue", "alice"]);
const SERVER = ["--tls-cert", f("server-1.crt"), "--tls-key", f("server-1.key")];

Deno.test("dist cert makes a CA and certificates that openssl verifies, keys readable by their owner only", async () => {
  assert.equal((await Deno.stat(f("ca.key"))).mode! & 0o777, 0o600);
  assert.equal((await Deno.stat(f("server-1.key"))).mode! & 0o777, 0o600);
  if (HAVE_OPENSSL) {
    for (const check of [["-verify_ip", "127.0.0.1"], ["-verify_hostname", "localhost"]]) {
      const r = await new Deno.Command("openssl", {
        args: ["verify", "-CAfile", f("ca.crt"), ...check, f("server-1.crt")],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.match(new TextDecoder().decode(r.stdout), /: OK/, check.join(" "));
    }
    const wrong = await new Deno.Command("openssl", {
      args: [
        "verify",
        "-CAfile",
        f("ca.crt"),
        "-verify_hostname",
        "example.com",
        f("server-1.crt"),
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(wrong.success, false);
  }
  // An existing file is kept unless --force.
  const again = await runDist(["cert", "issue", "alice", "--dir", dir]);
  assert.equal(again.code, 2);
  assert.deepEqual(lines(again.stderr), [
    `dist: ${f("alice.crt")} exists: give --force to replace it`,
  ]);
});

Deno.test("a server with --tls-cert and a client with --tls-ca talk; without it the client is told, and the server logs it", async () => {
  const server = await startDist(["server", "--port", "0", ...SERVER]);
  try {
    const ok = await runDist([
      "client",
      "--connect",
      server.address,
      "--tls-ca",
      f("ca.crt"),
      "add",
      "2",
      "3",
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout.trim(), "5");
    const plain = await runDist(["client", "--connect", server.address, "echo", "hi"]);
    assert.equal(plain.code, 1);
    assert.deepEqual(lines(plain.stderr), [
      `dist: UNAVAILABLE: ${server.address} speaks TLS: dial it with --tls-ca FILE ` +
      `(it answered a TLS alert)`,
    ]);
    await waitFor(
      () =>
        server.stderr().includes("closed: it sent plain TCP, not TLS (a dialer without --tls-ca?)"),
      5000,
      "the plain-TCP line",
    );
  } finally {
    await server.stop();
  }
});

Deno.test("a mutual-TLS server takes a client with its certificate, and tells one without why it is refused", async () => {
  const server = await startDist([
    "server",
    "--port",
    "0",
    ...SERVER,
    "--tls-client-ca",
    f("ca.crt"),
  ]);
  try {
    const ca = ["--connect", server.address, "--tls-ca", f("ca.crt")];
    const ok = await runDist([
      "client",
      ...ca,
      "--tls-cert",
      f("alice.crt"),
      "--tls-key",
      f("alice.key"),
      "echo",
      "mutual",
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout.trim(), "mutual");
    const none = await runDist(["client", ...ca, "echo", "hi"]);
    assert.equal(none.code, 1);
    assert.match(
      none.stderr,
      /UNAUTHORIZED: .*A client certificate is required: give --tls-cert and --tls-key/,
    );
  } finally {
    await server.stop();
  }
});

Deno.test("TLS files that cannot be used are one line and exit 2, before anything listens", async () => {
  await cert(["issue", "other", "--host", "127.0.0.1"]);
  const cases: [string[], string][] = [
    [
      ["--tls-cert", f("server-1.crt")],
      "dist: --tls-cert and --tls-key go together: give --tls-key too",
    ],
    [
      ["--tls-cert", f("server-1.crt"), "--tls-key", f("other.key")],
      `dist: --tls-key ${f("other.key")} is not the key of --tls-cert ${f("server-1.crt")}`,
    ],
    [
      ["--tls-cert", f("server-1.key"), "--tls-key", f("server-1.key")],
      `dist: --tls-cert ${f("server-1.key")}: no PEM certificate in it`,
    ],
    [["--tls-ca", f("missing.crt")], `dist: --tls-ca ${f("missing.crt")}: cannot read it: `],
    [
      ["--tls-client-ca", f("ca.crt")],
      "dist: --tls-client-ca makes a listener require client certificates: give it --tls-cert and --tls-key too",
    ],
  ];
  for (const [flags, message] of cases) {
    const r = await runDist(["server", "--port", "0", ...flags]);
    assert.equal(r.code, 2, `${flags.join(" ")}: ${r.stderr}`);
    const got = lines(r.stderr);
    assert.equal(got.length, 1, r.stderr);
    assert.ok(got[0].startsWith(message), `${got[0]}\n  expected: ${message}`);
  }
});
