/**
 * What a Peer does with messages that are well-formed frames but wrong as
 * RPC, from either side: it answers or fails the call, never hangs or
 * crashes.
 */
import assert from "node:assert/strict";
import { CloseReason, dial, type Peer } from "../wire/mod.ts";
import {
  closeQuietly,
  jsonFrame,
  rawHandshake,
  RawReader,
  WELCOME,
  within,
  writeAll,
} from "./helpers/raw.ts";
import { echo, HOST, isCode, rawClient, server } from "./helpers/rpc.ts";

const decoder = new TextDecoder();

/**
 * A fake listener that does the handshake, then answers the first request
 * with `answer(id)` as a raw JSON frame.
 */
function fakeServer(answer: (id: number) => unknown) {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  const served = (async () => {
    const conn = await listener.accept();
    const reader = new RawReader(conn);
    try {
      await reader.frame(); // hello
      await writeAll(conn, jsonFrame(WELCOME));
      const request = JSON.parse(decoder.decode((await reader.frame())!));
      await writeAll(conn, jsonFrame(answer(request.id)));
      await reader.frame(5000).catch(() => null); // until the client hangs up
    } finally {
      closeQuietly(conn);
    }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    async close() {
      closeQuietly(listener);
      await served.catch(() => {});
    },
  };
}

async function callFake(answer: (id: number) => unknown): Promise<unknown> {
  const fake = fakeServer(answer);
  let p: Peer | undefined;
  try {
    p = await dial({ host: HOST, port: fake.port }, { role: "test", name: "test" });
    return await within(
      p.call("echo", "x", { timeout: 2000 }).then((v) => ({ value: v }), (e) => ({ error: e })),
      3000,
      "the call to settle",
    );
  } finally {
    p?.close(CloseReason.Local);
    await fake.close();
  }
}

Deno.test("Peer.call() rejects an error answer whose code is not a string, without hanging", async () => {
  const out = await callFake((id) => ({ id, error: { code: { toString: 1 }, message: 5 } })) as {
    error: unknown;
  };
  assert.ok(isCode("INTERNAL")(out.error));
});

Deno.test("Peer.call() rejects an answer with neither result nor error as INTERNAL", async () => {
  const out = await callFake((id) => ({ id })) as { error: unknown };
  assert.ok(isCode("INTERNAL")(out.error), String(out.error));
});

Deno.test("Peer answers BAD_REQUEST, with the id, to a request whose method is not a string", async () => {
  const l = server({ onRequest: echo });
  const { conn, reader } = await rawClient(l);
  try {
    await rawHandshake(conn, reader);
    for (const [id, msg] of [[7, { id: 7, method: 5 }], [9, { id: 9, method: null }]] as const) {
      await writeAll(conn, jsonFrame(msg));
      const answer = JSON.parse(decoder.decode((await reader.frame())!));
      assert.equal(answer.id, id);
      assert.equal(answer.error.code, "BAD_REQUEST");
    }
    // An id that is not a safe integer or a string cannot be echoed: id null.
    await writeAll(conn, jsonFrame({ id: 1.5, method: "echo", params: "x" }));
    const answer = JSON.parse(decoder.decode((await reader.frame())!));
    assert.equal(answer.id, null);
    assert.equal(answer.error.code, "BAD_REQUEST");
  } finally {
    closeQuietly(conn);
    await l.close(500);
  }
});

Deno.test("Peer answers an error too large to send with its code alone", async () => {
  const l = server({
    maxFrame: 4096,
    onRequest: () => {
      throw new Error("x".repeat(10_000));
    },
  });
  let p: Peer | undefined;
  try {
    p = await dial({ host: HOST, port: l.addr.port }, { role: "test", name: "test" });
    await assert.rejects(p.call("boom", null, { timeout: 2000 }), isCode("INTERNAL"));
  } finally {
    p?.close();
    await l.close(500);
  }
});

Deno.test("Peer.call() fails at once with UNAVAILABLE when its own send closes a slow consumer", async () => {
  const l = server({ onRequest: echo });
  let p: Peer | undefined;
  try {
    p = await dial({ host: HOST, port: l.addr.port }, {
      role: "test",
      name: "test",
      maxOutbound: 1000,
    });
    const t0 = performance.now();
    await assert.rejects(
      p.call("echo", "x".repeat(2000), { timeout: 3000 }),
      isCode("UNAVAILABLE"),
    );
    assert.ok(performance.now() - t0 < 1000);
  } finally {
    p?.close();
    await l.close(500);
  }
});
