/**
 * hostile45c K-C10: a listener given both `--token` and `--tls-client-ca`
 * lets in a dialer that presents a certificate its CA signed and no token,
 * with every right (auth/gate.ts: with no users file a certificate subject
 * is a user of its own, with no permissions to check). An operator who adds
 * mutual TLS to a token listener gets "token OR certificate": any holder of
 * a certificate of that CA — every listener of the cluster holds one, and
 * this one accepts a server's certificate as a client's — needs no token.
 * nats-server (`verify: true` with a token) and Mosquitto
 * (`require_certificate` with a password file) ask for both.
 */
import assert from "node:assert/strict";
import { parseAddress } from "../config/mod.ts";
import { dial, type DistError } from "../wire/mod.ts";
import { startDist } from "./helpers/dist.ts";
import { makePki } from "./helpers/pki.ts";

Deno.test("hostile45c K-C10: with --token and --tls-client-ca, a client certificate without the token is refused", async () => {
  const pki = await makePki();
  const server = await startDist([
    "server",
    "--port",
    "0",
    "--token",
    "k-c10-token-0123456789",
    "--tls-cert",
    pki.server.cert,
    "--tls-key",
    pki.server.key,
    "--tls-client-ca",
    pki.ca,
  ]);
  try {
    const tls = { ca: pki.caPem, cert: pki.alice.certPem, key: pki.alice.keyPem };
    // The certificate and the token: in.
    const both = await dial(parseAddress(server.address), {
      role: "client",
      name: "both",
      tls,
      credentials: { token: "k-c10-token-0123456789" },
    });
    assert.equal(await both.call("add", { a: 2, b: 3 }), 5);
    both.close();
    // The certificate alone: the token is missing.
    let answer: string;
    try {
      const certOnly = await dial(parseAddress(server.address), {
        role: "client",
        name: "cert",
        tls,
      });
      answer = `let in: sys.stats answered ${
        Object.keys(await certOnly.call("sys.stats") as object).length
      } keys`;
      certOnly.close();
    } catch (err) {
      answer = (err as DistError).code;
    }
    assert.equal(answer, "UNAUTHORIZED");
  } finally {
    await server.stop();
    await pki.remove();
  }
});
