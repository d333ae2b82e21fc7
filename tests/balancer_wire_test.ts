/** The wire additions the balancer relies on: the non-idempotent mark. */
import assert from "node:assert/strict";
import type { RequestMeta } from "../wire/mod.ts";
import { connect, server } from "./helpers/rpc.ts";
import { jsonFrame, rawHandshake, RawReader, writeAll } from "./helpers/raw.ts";

Deno.test('Peer.call({idempotent: false}) sends "idem": false and the handler sees it', async () => {
  const seen: boolean[] = [];
  const l = server({
    onRequest: (_m, _p, _peer, meta: RequestMeta) => seen.push(meta.idempotent),
  });
  const peer = await connect(l);
  try {
    await peer.call("x", {}, { idempotent: false });
    await peer.call("x", {});
    await peer.call("x", {}, { idempotent: true });
    assert.deepEqual(seen, [false, true, true]);
  } finally {
    peer.close();
    await l.close(0);
  }
});

Deno.test('Peer treats only a literal "idem": false as non-idempotent', async () => {
  const seen: boolean[] = [];
  const l = server({ onRequest: (_m, _p, _peer, meta) => seen.push(meta.idempotent) });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: l.addr.port });
  try {
    const reader = new RawReader(conn);
    await rawHandshake(conn, reader);
    for (const idem of [false, "false", 0, null, true]) {
      await writeAll(conn, jsonFrame({ id: 1, method: "x", idem }));
      assert.ok((await reader.json())?.result !== undefined);
    }
    assert.deepEqual(seen, [false, true, true, true, true]);
  } finally {
    conn.close();
    await l.close(0);
  }
});
