/**
 * The broker's conversions of kept values between its codecs, as bytes
 * (roles/broker/json_to_msgpack.ts, wire/msgpack_to_json.ts): every value shape
 * arrives equal to what decoding and encoding it made (the old way), with
 * JSON text in any layout; what they do not write is refused, for the
 * caller to decode instead.
 */
import assert from "node:assert/strict";
import { decode } from "@msgpack/msgpack";
import { jsonReplacer, toMsgpack } from "../wire/mod.ts";
import { jsonToMsgpack } from "../roles/broker/json_to_msgpack.ts";
import { msgpackToJson } from "../wire/msgpack_to_json.ts";
import { RawJson, RawMsgpack } from "../roles/broker/raw_json.ts";
import { conversions } from "../roles/broker/conversion.ts";
import { SHAPES } from "./helpers/shapes.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

const EXTRA: Record<string, unknown> = {
  ...SHAPES,
  ints: [
    0,
    127,
    128,
    255,
    256,
    65535,
    65536,
    2 ** 32 - 1,
    2 ** 32,
    2 ** 53 - 1,
    -1,
    -32,
    -33,
    -128,
    -129,
    -32768,
    -32769,
    -(2 ** 31),
    -(2 ** 31) - 1,
    -(2 ** 53) + 1,
  ],
  floats: [0.1, -1.25e-300, 1e21, 2 ** 60, 3.4028234663852886e38, 5e-324],
  escapes: 'q"b\\c\n\t\r\b\f\u0001\u001f\u007f/',
  long: ["x".repeat(31), "y".repeat(32), "z".repeat(255), "w".repeat(256), "v".repeat(70_000)],
  containers: [
    [],
    {},
    Array.from({ length: 16 }, (_, i) => i),
    Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`k${i}`, [i]])),
    Array.from({ length: 70_000 }, () => ({})),
  ],
  deep: JSON.parse("[".repeat(40) + "]".repeat(40)),
};

Deno.test("transcode: JSON text to MessagePack gives the bytes encoding the parsed value gives", () => {
  for (const [name, value] of Object.entries(EXTRA)) {
    for (const text of [JSON.stringify(value), JSON.stringify(value, null, 2)]) {
      const got = jsonToMsgpack(enc.encode(text));
      assert.deepEqual(got, toMsgpack(JSON.parse(text)), name);
      assert.deepEqual(decode(got), JSON.parse(text), name);
    }
  }
  // Escapes of any kind, a surrogate pair among them; numbers in any notation.
  const text =
    ' { "a\\u00e9\\ud83d\\ude00" : [ 1.0 , 1e2 , -0.5E+1 , 12345678901234567890 ] , "b" : "\\/" } ';
  assert.deepEqual(decode(jsonToMsgpack(enc.encode(text))), JSON.parse(text));
});

Deno.test("transcode: MessagePack to JSON text gives the value decoding and JSON.stringify give", () => {
  const values: Record<string, unknown> = { ...EXTRA, binary: new Uint8Array([0, 1, 2, 250, 255]) };
  for (const [name, value] of Object.entries(values)) {
    const bytes = toMsgpack(value);
    const got = JSON.parse(dec.decode(msgpackToJson(bytes)));
    assert.deepEqual(got, JSON.parse(JSON.stringify(decode(bytes), jsonReplacer)), name);
  }
  // float32, integer keys.
  assert.equal(dec.decode(msgpackToJson(Uint8Array.of(0xca, 0x3f, 0xc0, 0, 0))), "1.5");
  assert.deepEqual(JSON.parse(dec.decode(msgpackToJson(Uint8Array.of(0x81, 0x05, 0xa1, 0x78)))), {
    5: "x",
  });
  // Not written here (the caller decodes instead): dates, truncated input, text not UTF-8.
  assert.throws(() => msgpackToJson(toMsgpack(new Date(0))));
  assert.throws(() => msgpackToJson(Uint8Array.of(0x92, 0x01)));
  assert.throws(() => msgpackToJson(Uint8Array.of(0xa2, 0xff, 0xfe)));
  // A __proto__ key is a JSON key like any other (hostile35 H8).
  const proto = Uint8Array.of(0x81, 0xa9, ...enc.encode("__proto__"), 0x01);
  assert.equal(dec.decode(msgpackToJson(proto)), '{"__proto__":1}');
});

Deno.test("transcode: kept values convert per call, keep nothing decoded, and are metered", () => {
  const text = JSON.stringify([{ a: 1 }, "x", [true]]);
  const kept = RawJson.borrow(enc.encode(text)).detach();
  const before = conversions.bytes;
  assert.deepEqual(decode(kept.msgpack()), JSON.parse(text));
  assert.notEqual(kept.decode(), kept.decode(), "a kept value is parsed anew for each caller");
  assert.equal(conversions.bytes - before, 3 * text.length);

  const mp = RawMsgpack.borrow(toMsgpack({ b: [1, 2] }));
  const first = mp.decode();
  assert.equal(mp.decode(), first, "a borrowed value is decoded once for every front end");
  const held = mp.detach();
  assert.notEqual(held.decode(), first, "its detached copy carries no decoded form");
  assert.deepEqual(JSON.parse(dec.decode(held.json()!)), { b: [1, 2] });
  assert.equal(
    RawMsgpack.kept(toMsgpack(new Date(0))).json(),
    undefined,
    "a date: decoded instead",
  );
});
