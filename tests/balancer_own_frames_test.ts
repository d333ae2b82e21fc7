/**
 * hostile41a W9's rest: after the handshake, a frame the balancer parses
 * itself (a `sys.stats` whose params it never uses) could be `--max-frame`
 * (1 MiB) long, and one of keys written with escapes cost its event loop
 * ~200 ms. Now what the balancer reads for itself is bounded at 4 KiB
 * (roles/balancer/own_frames.ts): such a request is refused FRAME_TOO_LARGE
 * by its id, and a forwarded request of any size up to `--max-frame` goes
 * as before.
 */
import assert from "node:assert/strict";
import { dial, DistError, msgpackCodec } from "../wire/mod.ts";
import { startBalancer, startServers, stopAll } from "./helpers/balancer.ts";
import {
  closeQuietly,
  frame,
  jsonFrame,
  rawHandshake,
  RawReader,
  writeAll,
} from "./helpers/raw.ts";

/** A JSON object of `n` keys written with escapes (the slow path of a JSON parser). */
function escapedKeys(n: number): string {
  return "{" + Array.from({ length: n }, (_, i) => `"\\u0061${i}":1`).join(",") + "}";
}

for (const passthrough of [true, false]) {
  Deno.test(`balancer: its own methods read frames of 4 KiB at most, forwarded ones --max-frame${passthrough ? "" : " (--no-passthrough)"}`, async () => {
    const servers = await startServers(1);
    const balancer = await startBalancer(servers, passthrough ? [] : ["--no-passthrough"]);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: balancer.port });
    const reader = new RawReader(conn);
    try {
      await rawHandshake(conn, reader, { role: "client" });
      const big = escapedKeys(12_000); // ~130 KB
      const t0 = performance.now();
      await writeAll(conn, frame(`{"id":1,"method":"sys.stats","params":${big}}`));
      const refused = await reader.json(5000);
      const ms = performance.now() - t0;
      assert.equal(refused?.id, 1, JSON.stringify(refused));
      assert.equal((refused?.error as { code: string })?.code, "FRAME_TOO_LARGE");
      assert.match((refused?.error as { message: string }).message, /4096/);
      // Members in another order: still refused by its id.
      await writeAll(conn, frame(`{"params":${big},"method":"balancer.backends","id":"b"}`));
      const second = await reader.json(5000);
      assert.equal(second?.id, "b");
      assert.equal((second?.error as { code: string })?.code, "FRAME_TOO_LARGE");
      // The connection goes on; a small one of its own methods is answered.
      await writeAll(conn, jsonFrame({ id: 2, method: "sys.ping" }));
      const pong = await reader.json(5000);
      assert.equal(pong?.id, 2);
      assert.ok(pong?.error === undefined, JSON.stringify(pong));
      // A forwarded request of the same size is forwarded as before.
      const value = "x".repeat(200_000);
      await writeAll(conn, jsonFrame({ id: 3, method: "echo", params: { text: value } }));
      const echoed = await reader.json(5000);
      assert.equal(echoed?.id, 3);
      assert.ok(
        JSON.stringify(echoed?.result ?? "").length > 200_000,
        JSON.stringify(echoed).slice(0, 300),
      );
      console.log(`own frame refused in ${ms.toFixed(1)} ms`);
    } finally {
      closeQuietly(conn);
      await stopAll([balancer, ...servers]);
    }
  });
}

Deno.test("balancer: a MessagePack request over 4 KiB to its own methods is refused by its id, one forwarded is not", async () => {
  const servers = await startServers(1);
  const balancer = await startBalancer(servers);
  const client = await dial({ host: "127.0.0.1", port: balancer.port }, {
    role: "client",
    name: "mp",
    codec: msgpackCodec,
  });
  try {
    const params = Object.fromEntries(Array.from({ length: 12_000 }, (_, i) => [`a${i}`, i]));
    await assert.rejects(
      client.call("sys.stats", params),
      (err: DistError) => err.code === "FRAME_TOO_LARGE" && /4096/.test(err.message),
    );
    const text = "y".repeat(100_000);
    assert.ok(JSON.stringify(await client.call("echo", { text })).includes(text), "echoed whole");
    assert.equal(typeof await client.call("sys.ping"), "object");
  } finally {
    client.close();
    await stopAll([balancer, ...servers]);
  }
});
