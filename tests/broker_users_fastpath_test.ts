/**
 * Under `--users`, publishes take the byte path as everyone's do (README:
 * "read as bytes whatever its value"): a JSON subscriber gets the value as
 * the bytes it was published in, and a publish to a topic outside the
 * user's grant is refused by its topic with the same answer as the decoded
 * path gives (hostile34 Z3: every frame of a user was decoded, so a
 * retained value was kept as objects and the fast path was off).
 */
import assert from "node:assert/strict";
import { dial, DistError, msgpackCodec } from "../wire/mod.ts";
import { parseAddress } from "../config/mod.ts";
import { ALICE, USERS, usersBroker } from "./helpers/users_broker.ts";
import { frame, HELLO, jsonFrame, RawReader, writeAll } from "./helpers/raw.ts";

const decoder = new TextDecoder();

/** A raw JSON connection holding alice's token, past its welcome. */
async function rawAlice(address: string): Promise<{ conn: Deno.Conn; reader: RawReader }> {
  const { host, port } = parseAddress(address);
  const conn = await Deno.connect({ hostname: host, port });
  const reader = new RawReader(conn);
  await writeAll(conn, jsonFrame({ ...HELLO, token: ALICE }));
  const welcome = await reader.json();
  assert.equal(welcome?.op, "welcome", JSON.stringify(welcome));
  return { conn, reader };
}

/** The next frame that answers `id` (deliveries and others skipped). */
async function answerTo(reader: RawReader, id: unknown): Promise<Record<string, unknown>> {
  for (let i = 0; i < 20; i++) {
    const msg = await reader.json(5000);
    if (msg === null) throw new Error("closed");
    if (msg.id === id) return msg;
  }
  throw new Error(`no answer to ${id}`);
}

/** The next delivery's text (topic announcements skipped). */
async function delivery(reader: RawReader): Promise<string> {
  for (let i = 0; i < 20; i++) {
    const text = decoder.decode((await reader.frame(5000))!);
    if (text.includes('"broker.message"')) return text;
  }
  throw new Error("no delivery");
}

Deno.test("broker --users: a user's publish takes the byte path, its value delivered as the bytes it came in", async () => {
  const b = await usersBroker(USERS, []);
  const sub = await rawAlice(b.address);
  const pub = await rawAlice(b.address);
  try {
    await writeAll(
      sub.conn,
      jsonFrame({ id: 1, method: "broker.subscribe", params: { topic: "/a" } }),
    );
    assert.ok((await answerTo(sub.reader, 1)).result);
    // Spacing and a trailing zero the decoder would not write back.
    const value = '{ "b" : 1.50, "c": [ true ,null ] }';
    await writeAll(
      pub.conn,
      frame(`{"id":7,"method":"broker.publish","params":{"topic":"/a/x","value":${value}}}`),
    );
    assert.deepEqual((await answerTo(pub.reader, 7)).result, { topic: "/a/x", deliveries: 1 });
    const live = await delivery(sub.reader);
    assert.ok(live.includes(`"value":${value}`), live);
    // Retained: a later subscriber gets the same bytes.
    await writeAll(
      sub.conn,
      jsonFrame({ id: 2, method: "broker.subscribe", params: { topic: "/a/x" } }),
    );
    assert.ok((await answerTo(sub.reader, 2)).result);
    const retained = await delivery(sub.reader);
    assert.ok(
      retained.includes(`"value":${value}`) && retained.includes('"retained":true'),
      retained,
    );
  } finally {
    sub.conn.close();
    pub.conn.close();
    await b.stop();
  }
});

Deno.test("broker --users: a publish outside the grant is refused on the byte path as on the decoded one", async () => {
  const b = await usersBroker(USERS, []);
  const pub = await rawAlice(b.address);
  try {
    // Byte path (an object's params) and decoded path (positional params), confirmed.
    await writeAll(
      pub.conn,
      frame('{"id":1,"method":"broker.publish","params":{"topic":"/m/x","value":1}}'),
    );
    const fast = await answerTo(pub.reader, 1);
    await writeAll(pub.conn, jsonFrame({ id: 2, method: "broker.publish", params: ["/m/x", 1] }));
    const decoded = await answerTo(pub.reader, 2);
    assert.deepEqual(fast.error, decoded.error);
    assert.equal((fast.error as { code: string }).code, "UNAUTHORIZED");
    assert.match((fast.error as { message: string }).message, /alice.*publish \/m\/x/);
    // Fire-and-forget: the error frame the decoded path sends, the same.
    await writeAll(
      pub.conn,
      frame('{"method":"broker.publish","params":{"topic":"m/y","value":2}}'),
    );
    const fastNote = await answerTo(pub.reader, null);
    await writeAll(pub.conn, jsonFrame({ method: "broker.publish", params: ["m/y", 2] }));
    const decodedNote = await answerTo(pub.reader, null);
    assert.deepEqual(fastNote.error, decodedNote.error);
    assert.equal((fastNote.error as { code: string }).code, "UNAUTHORIZED");
    // A topic within the grant, but written so it is normalised (checked as the topic it names).
    await writeAll(
      pub.conn,
      frame('{"id":3,"method":"broker.publish","params":{"topic":"a/ok/","value":3}}'),
    );
    assert.deepEqual((await answerTo(pub.reader, 3)).result, { topic: "/a/ok", deliveries: 0 });
    // MessagePack, on its own byte path.
    const mp = await dial(parseAddress(b.address), {
      role: "client",
      name: "mp",
      codec: msgpackCodec,
      credentials: { token: ALICE },
    });
    try {
      await assert.rejects(
        mp.call("broker.publish", { topic: "/m/z", value: { k: 1 } }),
        (err) => err instanceof DistError && err.code === "UNAUTHORIZED",
      );
      assert.deepEqual(await mp.call("broker.publish", { topic: "/a/z", value: { k: 1 } }), {
        topic: "/a/z",
        deliveries: 0,
      });
    } finally {
      mp.close();
    }
  } finally {
    pub.conn.close();
    await b.stop();
  }
});
