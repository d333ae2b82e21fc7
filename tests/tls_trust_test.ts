/**
 * A dialer given --tls-ca trusts that CA and nothing else (issue 15): not
 * the root store Deno would otherwise add `caCerts` to. The test makes the
 * impostor CA a trusted root of the process's store (`DENO_TLS_CA_STORE=system`
 * with `SSL_CERT_FILE` naming it), checks that a plain Deno TLS dial in that
 * environment does trust a listener the impostor signed, and then that
 * `dist client --tls-ca` (our CA) in the same environment refuses it.
 */
import assert from "node:assert/strict";
import { listen, type Listener } from "../wire/mod.ts";
import { runDist } from "./helpers/dist.ts";
import { makePki, type Pki } from "./helpers/pki.ts";

const pki: Pki = await makePki();
globalThis.addEventListener("unload", () => Deno.removeSync(pki.dir, { recursive: true }));

/** An environment whose TLS root store holds the impostor CA and nothing else. */
const IMPOSTOR_ROOTS = { DENO_TLS_CA_STORE: "system", SSL_CERT_FILE: pki.otherCa };

function impostorListener(): Listener {
  return listen({
    port: 0,
    role: "server",
    name: "impostor",
    tls: { cert: pki.impostor.certPem, key: pki.impostor.keyPem },
    onRequest: (method, params) => method === "echo" ? (params as { text: string }).text : null,
  });
}

/** Dials with Deno's own TLS and the process's root store, in a child with `env`. */
async function plainDenoDial(port: number, env: Record<string, string>): Promise<boolean> {
  const script = `const c = await Deno.connectTls({ hostname: "127.0.0.1", port: ${port} });
    await c.handshake(); c.close();`;
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["eval", script],
    env,
    stdout: "null",
    stderr: "null",
  }).output();
  return r.success;
}

Deno.test("--tls-ca is a dialer's only trust: a root the process's store trusts is refused", async () => {
  const listener = impostorListener();
  try {
    const port = listener.addr.port;
    // The setup holds: in this environment Deno's store trusts the impostor.
    assert.equal(await plainDenoDial(port, IMPOSTOR_ROOTS), true, "the store trusts the impostor");
    assert.equal(await plainDenoDial(port, {}), false, "Mozilla's roots do not");
    const r = await runDist(
      ["client", "--connect", `127.0.0.1:${port}`, "--tls-ca", pki.ca, "echo", "hi"],
      { env: IMPOSTOR_ROOTS },
    );
    assert.notEqual(r.code, 0, r.stdout);
    assert.doesNotMatch(r.stdout, /\bhi\b/);
    assert.match(r.stderr, /is not signed by a CA of --tls-ca/);
  } finally {
    await listener.close(0);
  }
});

Deno.test("the same dialer accepts its own CA's listener in that environment", async () => {
  const listener = listen({
    port: 0,
    role: "server",
    name: "ours",
    tls: { cert: pki.server.certPem, key: pki.server.keyPem },
    onRequest: (method, params) => method === "echo" ? (params as { text: string }).text : null,
  });
  try {
    const r = await runDist(
      ["client", "--connect", `127.0.0.1:${listener.addr.port}`, "--tls-ca", pki.ca, "echo", "hi"],
      { env: IMPOSTOR_ROOTS },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /hi/);
  } finally {
    await listener.close(0);
  }
});
