/**
 * hostile46c F5: a binder's `report_down` check takes any answer for a live
 * process, so a plain server at its connection limit (OVERLOADED at the
 * hello) is kept. A TLS listener refuses a connection past its limit before
 * TLS, where nothing can be said: it closes it, the check reads that as
 * dead, and the live server is removed from every binder. With TLS
 * everywhere and `--max-connections-per-source 4`, an attacker on the
 * binder's host holding 4 connections to the server (pinging) and reporting
 * it every 100 ms made 93–94 % of other clients' lookups find no instance,
 * against 0 % unattacked (the server registering again at each renewal).
 * A TCP connection a listener accepted is a process: the check must keep
 * the instance.
 */
import assert from "node:assert/strict";
import { dial, type Peer } from "../wire/mod.ts";
import { startDist } from "./helpers/dist.ts";
import { makePki } from "./helpers/pki.ts";

Deno.test("hostile46c F5: a TLS server at its per-source connection limit is alive to report_down", async () => {
  const pki = await makePki();
  const binder = await startDist(["binder", "--port", "0", "--tls-ca", pki.ca]);
  const server = await startDist([
    "server",
    "--port",
    "0",
    "--tls-cert",
    pki.server.cert,
    "--tls-key",
    pki.server.key,
    "--max-connections-per-source",
    "2",
  ]);
  const held: Peer[] = [];
  let client: Peer | undefined;
  try {
    const [host, port] = server.address.split(":");
    const [bhost, bport] = binder.address.split(":");
    client = await dial({ host: bhost, port: Number(bport) }, { role: "client", name: "t" });
    const { id } = await client.call("binder.register", {
      service: "compute",
      host,
      port: Number(port),
      ttl_ms: 60_000,
    }) as { id: string };
    // Two clients of the binder's host (127.0.0.1) hold the server's bound for their source.
    for (let i = 0; i < 2; i++) {
      held.push(
        await dial({ host, port: Number(port) }, {
          role: "client",
          name: `hold-${i}`,
          tls: { ca: pki.caPem },
        }),
      );
    }
    const answer = await client.call("binder.report_down", { id }, { timeout: 10_000 }) as {
      alive: boolean;
      removed: boolean;
    };
    assert.deepEqual(
      { alive: answer.alive, removed: answer.removed },
      { alive: true, removed: false },
      "a live TLS server whose source bound is reached was taken for dead and removed",
    );
    const found = await client.call("binder.lookup", { service: "compute" }) as { id: string };
    assert.equal(found.id, id);
  } finally {
    for (const p of held) p.close();
    client?.close();
    await server.stop();
    await binder.stop();
    await pki.remove();
  }
});

Deno.test("hostile46c F5b: a TLS binder without --tls-ca does not take a live TLS server for dead", async () => {
  // A binder with no peers dials nothing but its checks, so its operator gives it a certificate
  // and no --tls-ca; its check then dialed the TLS server in plain TCP, got a TLS alert (a live
  // process) and removed it.
  const pki = await makePki();
  const binder = await startDist([
    "binder",
    "--port",
    "0",
    "--tls-cert",
    pki.server.cert,
    "--tls-key",
    pki.server.key,
  ]);
  const server = await startDist([
    "server",
    "--port",
    "0",
    "--tls-cert",
    pki.server.cert,
    "--tls-key",
    pki.server.key,
  ]);
  let client: Peer | undefined;
  try {
    const [host, port] = server.address.split(":");
    const [bhost, bport] = binder.address.split(":");
    client = await dial({ host: bhost, port: Number(bport) }, {
      role: "client",
      name: "t",
      tls: { ca: pki.caPem },
    });
    const { id } = await client.call("binder.register", {
      service: "compute",
      host,
      port: Number(port),
      ttl_ms: 60_000,
    }) as { id: string };
    const answer = await client.call("binder.report_down", { id }, { timeout: 10_000 }) as {
      alive: boolean;
      removed: boolean;
    };
    assert.deepEqual(
      { alive: answer.alive, removed: answer.removed },
      { alive: true, removed: false },
      "a live TLS server (it answered the check's plain hello with a TLS alert) was removed",
    );
  } finally {
    client?.close();
    await server.stop();
    await binder.stop();
    await pki.remove();
  }
});
