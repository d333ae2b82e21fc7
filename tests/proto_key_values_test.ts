/**
 * `__proto__` is a legal JSON key, and a value with one arrives to every
 * subscriber, JSON or MessagePack, equal to JSON.parse's reading of it: an
 * own property, no prototype set (hostile35 H8: the MessagePack decoder
 * refused it, so MessagePack subscribers silently lost such values).
 */
import assert from "node:assert/strict";
import { encode as mpEncode } from "@msgpack/msgpack";
import { connect } from "../clients/mod.ts";
import { msgpackCodec, toMsgpack } from "../wire/mod.ts";
import { jsonToMsgpack } from "../roles/broker/json_to_msgpack.ts";
import { msgpackToJson } from "../wire/msgpack_to_json.ts";
import { startBroker } from "./helpers/broker.ts";
import { frame, HELLO, jsonFrame, RawReader, within, writeAll } from "./helpers/raw.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const TEXT = '{"a":1,"__proto__":{"x":1,"__proto__":[{"__proto__":null}]},"b":[{"c":2}]}';

/** `v` is JSON.parse(TEXT) in value and in form, and no prototype was touched. */
function isText(v: unknown, what: string): void {
  assert.equal(JSON.stringify(v), JSON.stringify(JSON.parse(TEXT)), what);
  assert.deepEqual(v, JSON.parse(TEXT), what);
  const o = v as Record<string, unknown>;
  assert.ok(Object.hasOwn(o, "__proto__"), what);
  assert.equal(Object.getPrototypeOf(o), Object.prototype, what);
  assert.equal((o as { x?: unknown }).x, undefined, what);
  assert.equal(({} as { x?: unknown }).x, undefined, what);
}

Deno.test("MessagePack: a __proto__ key decodes as an own property, both ways of transcoding", () => {
  isText(msgpackCodec.decode(jsonToMsgpack(enc.encode(TEXT))), "JSON text → MessagePack → decoded");
  isText(msgpackCodec.decode(toMsgpack(JSON.parse(TEXT))), "encoded → decoded");
  assert.equal(dec.decode(msgpackToJson(jsonToMsgpack(enc.encode(TEXT)))), TEXT);
  // Among other members and in messages, any string form of the key.
  const str8 = Uint8Array.of(0x81, 0xd9, 9, ...enc.encode("__proto__"), 0x01);
  assert.equal(JSON.stringify(msgpackCodec.decode(str8)), '{"__proto__":1}');
  // What the decoder refused for other reasons it still refuses.
  assert.throws(() => msgpackCodec.decode(Uint8Array.of(0x81, 0xa9, ...enc.encode("__proto__"))));
  assert.throws(() =>
    msgpackCodec.decode(Uint8Array.of(0x81, 0xa9, ...enc.encode("__proto__"), 0xc1))
  );
});

Deno.test("broker: a value with a __proto__ key reaches JSON and MessagePack subscribers, live and retained", async () => {
  const b = await startBroker();
  const json = await connect(b.address);
  const msgpack = await connect(b.address, { codec: "msgpack" });
  const raw = await Deno.connect({ hostname: "127.0.0.1", port: b.port });
  const reader = new RawReader(raw);
  try {
    const subs = { json: await json.subscribe("/p"), msgpack: await msgpack.subscribe("/p") };
    // A raw JSON publisher sends the text itself (JSON.stringify of an object writes the same).
    await writeAll(raw, jsonFrame(HELLO));
    assert.equal((await reader.json())?.op, "welcome");
    const publish =
      `{"id":1,"method":"broker.publish","params":{"topic":"/p/json","value":${TEXT},"retain":true}}`;
    await writeAll(raw, frame(publish));
    assert.equal((await reader.json())?.error, undefined);
    // A MessagePack publisher, through the library, and by hand (the broker's byte reader).
    await msgpack.publish("/p/lib", JSON.parse(TEXT), { retain: true });
    const mp = await Deno.connect({ hostname: "127.0.0.1", port: b.port });
    const mpReader = new RawReader(mp);
    try {
      await writeAll(mp, frame(JSON.stringify({ ...HELLO, codec: "msgpack" })));
      assert.equal((await mpReader.json())?.op, "welcome");
      const params = { topic: "/p/mp", value: JSON.parse(TEXT), retain: true };
      await writeAll(mp, frame(mpEncode({ method: "broker.publish", params })));
      await json.publish("/p/end", 0);
      for (const [name, sub] of Object.entries(subs)) {
        const got: Record<string, unknown> = {};
        await within(
          (async () => {
            for await (const m of sub) if ((got[m.topic] = m.value, m.topic === "/p/end")) break;
          })(),
          5000,
          `${name} subscriber`,
        );
        assert.deepEqual(Object.keys(got).sort(), ["/p/end", "/p/json", "/p/lib", "/p/mp"], name);
        for (const t of ["/p/json", "/p/lib", "/p/mp"]) isText(got[t], `${t} → ${name}`);
      }
      // Retained: a late subscriber of each codec gets all three.
      for (const conn of [json, msgpack]) {
        const late = await conn.subscribe("/p");
        const got: Record<string, unknown> = {};
        await within(
          (async () => {
            for await (const m of late) {
              if ((got[m.topic] = m.value, Object.keys(got).length === 3)) break;
            }
          })(),
          5000,
          "retained",
        );
        for (const t of ["/p/json", "/p/lib", "/p/mp"]) isText(got[t], `${t} retained`);
      }
    } finally {
      mp.close();
    }
  } finally {
    raw.close();
    json.close();
    msgpack.close();
    await b.stop();
  }
});
