/**
 * hostile46c F8: an application that asks the library for TLS and gives a
 * credential — `connect({ binders, service }, { tls: { ca }, credentials })`,
 * as README's Library section shows the `tls` option — had its binders
 * dialed in plain TCP: `connect` hands the binder client its `wire` settings
 * and credentials but not `tls`. So its first bytes to a binder were the dist
 * hello with the token in clear, to whatever listens at the binder's address
 * (a process that took the port, anyone on the path), every redial. An app
 * that asks for TLS must speak TLS to every address it dials for it, binders
 * included, or fail.
 */
import assert from "node:assert/strict";
import { connect } from "../clients/mod.ts";
import { makePki } from "./helpers/pki.ts";

Deno.test("hostile46c F8: connect({binders, service}, {tls}) never sends the hello in plain TCP", async () => {
  const pki = await makePki();
  // Where the binder should be: a plain listener that keeps the first bytes it is sent.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const first = (async () => {
    const conn = await listener.accept();
    const buf = new Uint8Array(4096);
    const n = await Promise.race([
      conn.read(buf),
      new Promise<null>((r) => setTimeout(() => r(null), 5000)),
    ]);
    conn.close();
    return n === null ? new Uint8Array() : buf.subarray(0, n);
  })();
  const token = "app-secret-token-0123456789";
  try {
    const attempt = connect(
      { binders: [`127.0.0.1:${(listener.addr as Deno.NetAddr).port}`], service: "compute" },
      { tls: { ca: pki.caPem }, credentials: { token }, connectTimeout: 2000 },
    ).then((c) => c.close(), () => {});
    const bytes = await first;
    await attempt;
    const text = new TextDecoder().decode(bytes);
    assert.ok(
      !text.includes(token),
      `the app asked for TLS, and its binder was sent in clear: ${
        JSON.stringify(text.slice(0, 200))
      }`,
    );
    assert.equal(bytes[0], 0x16, "a TLS handshake record (ClientHello) comes first");
  } finally {
    listener.close();
    await pki.remove();
  }
});
