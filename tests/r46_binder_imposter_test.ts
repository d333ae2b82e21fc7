/**
 * review r46 R4 (of hostile46c F5/F5b's fix): the binder's report_down
 * check now takes any TCP connection accepted at the instance's address as
 * a live process when the hello failed UNAVAILABLE. With `--tls-ca` that
 * includes a TLS handshake the binder refused for the certificate: a
 * process another CA vouches for holds the dead instance's port, and the
 * instance stays in every lookup (for its lease, up to 1 h as the
 * registrant asks). Before, the failed handshake removed it; README's Limits
 * name "a local process that takes a dead instance's port" as stopped by
 * dialers that verify TLS certificates. A live server refusing at its limit
 * closes before the handshake: a certificate refused is not that.
 */
import assert from "node:assert/strict";
import { dial, type Peer } from "../wire/mod.ts";
import { startDist } from "./helpers/dist.ts";
import { makePki } from "./helpers/pki.ts";

Deno.test("binder --tls-ca: report_down removes an instance whose address answers with another CA's certificate (r46 R4)", async () => {
  const pki = await makePki();
  const other = await makePki();
  const binder = await startDist(["binder", "--port", "0", "--tls-ca", pki.ca]);
  // The dead server's port, now held by a TLS process whose certificate another CA signed.
  const imposter = await startDist([
    "server",
    "--port",
    "0",
    "--tls-cert",
    other.server.cert,
    "--tls-key",
    other.server.key,
  ]);
  let client: Peer | undefined;
  try {
    const [bhost, bport] = binder.address.split(":");
    const [host, port] = imposter.address.split(":");
    client = await dial({ host: bhost, port: Number(bport) }, { role: "client", name: "t" });
    const { id } = await client.call("binder.register", {
      service: "compute",
      host,
      port: Number(port),
      ttl_ms: 3_600_000,
    }) as { id: string };
    const answer = await client.call("binder.report_down", { id }, { timeout: 10_000 }) as {
      alive: boolean;
      removed: boolean;
    };
    assert.deepEqual(
      { alive: answer.alive, removed: answer.removed },
      { alive: false, removed: true },
      "an address whose TLS certificate the binder's CA did not sign was kept as a live instance",
    );
  } finally {
    client?.close();
    await imposter.stop();
    await binder.stop();
    await pki.remove();
    await other.remove();
  }
});
