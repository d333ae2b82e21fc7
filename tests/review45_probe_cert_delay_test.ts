/**
 * review45 R9 (f6ad2db, the fix of review45 R1): a hello with no
 * credentials at all is now refused at once, so the binder's report_down
 * check gets its UNAUTHORIZED in time. But under mutual TLS the check is
 * not credential-less: the binder dials with its own TLS files, and its
 * certificate is presented as a client's. A listener with `--token` (and
 * no users file) refuses a certificate without the token (hostile45c
 * K-C10's fix) and a users file refuses a subject it does not name: both
 * are failures of the binder's host record, answered after the gate's
 * delay (250 ms doubling), so the third report 2 s apart (or one after a
 * few wrong-token hellos) outlasts `--verify-timeout` and a live server is
 * removed on every binder: R1 again, for every cluster with mutual TLS.
 */
import assert from "node:assert/strict";
import { parseAddress } from "../config/mod.ts";
import { dial, DistError, type Peer } from "../wire/mod.ts";
import { startDist } from "./helpers/dist.ts";
import { makePki } from "./helpers/pki.ts";
import { waitFor } from "./helpers/raw.ts";

const TOKEN = "review45-r9-cluster-token-0123456789";

Deno.test("review45 R9: under mutual TLS, reports of a live --token server 2.1 s apart never remove it", async () => {
  const pki = await makePki();
  const tlsFlags = ["--tls-cert", pki.server.cert, "--tls-key", pki.server.key, "--tls-ca", pki.ca];
  const binder = await startDist(["binder", "--port", "0", "--token", TOKEN, ...tlsFlags]);
  const server = await startDist([
    "server",
    "--port",
    "0",
    "--service",
    "compute",
    "--binders",
    binder.address,
    "--token",
    TOKEN,
    ...tlsFlags,
    "--tls-client-ca",
    pki.ca,
  ]);
  let client: Peer | undefined;
  try {
    await waitFor(() => /Registered as /.test(server.stderr()), 10_000, "the server to register");
    client = await dial(parseAddress(binder.address), {
      role: "client",
      name: "review45-r9",
      credentials: { token: TOKEN },
      tls: { ca: pki.caPem },
      timeoutMs: 15_000,
    });
    const c = client;
    const id = `compute@${server.address}`;
    const verdicts: boolean[] = [];
    for (let i = 0; i < 3; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 2100)); // past the 2 s "alive" memory
      verdicts.push((await c.call("binder.report_down", { id }) as { alive: boolean }).alive);
    }
    let there = true;
    try {
      await c.call("binder.lookup", { service: "compute" });
    } catch (err) {
      if (!(err instanceof DistError) || err.code !== "NOT_FOUND") throw err;
      there = false;
    }
    const refused = server.stderr().split("\n").filter((l) => /Refused a hello/.test(l)).at(-1);
    assert.deepEqual(
      { verdicts, there },
      { verdicts: [true, true, true], there: true },
      `the server is alive and serving; its last refusal: ${refused}`,
    );
  } finally {
    client?.close();
    await server.stop();
    await binder.stop();
    await pki.remove();
  }
});
