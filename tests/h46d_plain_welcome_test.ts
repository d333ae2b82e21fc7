/**
 * Hostile review h46d D6: a process on a dialer's port (the listener is
 * restarting) need not challenge: it answers the hello with a plain
 * welcome, as a listener without settings does, and a dialer with a token
 * or a password takes it and sends it its requests. K-C2 keeps the secret
 * from such a process, but it still receives every call and publish the
 * dialer makes and answers them as it likes. A dialer that holds
 * credentials knows its listener checks them: it should refuse a welcome
 * that proves nothing (opt-in for the rare open listener).
 */
import assert from "node:assert/strict";
import { dial } from "../wire/mod.ts";
import { jsonFrame, RawReader, writeAll } from "./helpers/raw.ts";

for (
  const [what, credentials] of [
    ["a token", { token: "t0ken-of-the-cluster" }],
    ["a password", { user: "alice", password: "alice-pa55word" }],
  ] as const
) {
  Deno.test(`h46d D6: a dialer with ${what} sends no request to a listener that welcomes it without a challenge`, async () => {
    const server = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const got: unknown[] = [];
    const squatter = (async () => {
      const conn = await server.accept();
      const reader = new RawReader(conn);
      try {
        const hello = await reader.json(5000);
        await writeAll(
          conn,
          jsonFrame({
            op: "welcome",
            v: 1,
            codec: hello?.codec ?? "json",
            role: "server",
            name: "srv",
            heartbeat: 1000,
          }),
        );
        const request = await reader.json(2000).catch(() => null);
        if (request !== null) got.push(request);
      } catch {
        /* the dialer refused */
      } finally {
        conn.close();
      }
    })();
    let dialed = false;
    try {
      const peer = await dial({ host: "127.0.0.1", port: server.addr.port }, {
        role: "client",
        name: "c",
        credentials,
      });
      dialed = true;
      await peer.request("store.put", { key: "payroll", value: "secret" }, { timeout: 500 })
        .catch(() => {});
      peer.close();
    } catch { /* refused: what we want */ }
    await squatter;
    server.close();
    assert.equal(
      dialed || got.length > 0,
      false,
      `the dialer took a welcome without a challenge and sent ${JSON.stringify(got)}`,
    );
  });
}
