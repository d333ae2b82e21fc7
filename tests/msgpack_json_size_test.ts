/**
 * wire/msgpack_json_size.ts counts what wire/msgpack_to_json.ts writes,
 * byte for byte, without writing it, and stops past its bound (hostile46a
 * G8: the balancer wrote 5.4 MB of `\u0001` to learn that 900 KB of
 * MessagePack did not fit a frame as JSON).
 */
import assert from "node:assert/strict";
import { encode } from "@msgpack/msgpack";
import { msgpackJsonSize } from "../wire/msgpack_json_size.ts";
import { msgpackToJson } from "../wire/msgpack_to_json.ts";

/** A deterministic pseudo-random value of every kind the converter writes. */
function valueOf(seed: number, depth = 0): unknown {
  let x = seed;
  const next = () => (x = (x * 1103515245 + 12345) % 2147483648) / 2147483648;
  const pick = (): unknown => {
    const k = Math.floor(next() * (depth > 3 ? 9 : 11));
    switch (k) {
      case 0:
        return null;
      case 1:
        return next() < 0.5;
      case 2:
        return Math.floor(next() * 300) - 150; // fixints, int8, uint8
      case 3:
        return Math.floor((next() - 0.5) * 2 ** 40); // int32..int64
      case 4:
        return (next() - 0.5) * 10 ** Math.floor(next() * 40 - 20); // floats
      case 5:
        return String.fromCharCode(
          ...Array.from({ length: Math.floor(next() * 40) }, () => Math.floor(next() * 0x80)),
        );
      case 6:
        return 'é✓\u2028\u0001"\\ ' + "x".repeat(Math.floor(next() * 300));
      case 7:
        return new Uint8Array(Math.floor(next() * 50)).map(() => next() * 256);
      case 8:
        return -0;
      case 9:
        return Array.from(
          { length: Math.floor(next() * 6) },
          (_, i) => valueOf(seed + i + 1, depth + 1),
        );
      default:
        return Object.fromEntries(
          Array.from(
            { length: Math.floor(next() * 6) },
            (_, i) => [`k${i}\n"`, valueOf(seed * 7 + i, depth + 1)],
          ),
        );
    }
  };
  return pick();
}

Deno.test("msgpackJsonSize is the length of msgpackToJson's text, for values of every kind", () => {
  for (let seed = 1; seed <= 3000; seed++) {
    const bytes = encode(valueOf(seed));
    const text = msgpackToJson(bytes).length;
    assert.equal(msgpackJsonSize(bytes, Infinity), text, `seed ${seed}`);
    assert.equal(msgpackJsonSize(bytes, text), text);
    if (text > 0) assert.equal(msgpackJsonSize(bytes, text - 1), -1, `seed ${seed}`);
  }
  // Integer keys (written quoted) and 64-bit integers, which encode() above does not make.
  const intKeys = new Uint8Array([0x83, 0x05, 0xc0, 0xe0, 0xc3, 0xd1, 0xff, 0x00, 0x90]);
  assert.equal(msgpackJsonSize(intKeys, Infinity), msgpackToJson(intKeys).length);
  const u64 = new Uint8Array([0xcf, 0, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
  assert.equal(msgpackJsonSize(u64, Infinity), msgpackToJson(u64).length);
});

Deno.test("msgpackJsonSize stops past its bound: 900 KB of U+0001 is 5.4 MB as JSON", () => {
  const bytes = encode({ text: "\u0001".repeat(900_000) });
  assert.equal(msgpackJsonSize(bytes, Infinity), 9 + 5_400_002);
  assert.equal(msgpackJsonSize(bytes, 1 << 20), -1);
  // What the converter does not write throws here too.
  assert.throws(
    () => msgpackJsonSize(new Uint8Array([0xd6, 0xff, 0, 0, 0, 0]), Infinity),
    /not written/,
  );
  assert.throws(() =>
    msgpackJsonSize(new Uint8Array([0xcb, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0]), Infinity)
  );
  assert.throws(() => msgpackJsonSize(new Uint8Array([0x92, 0x01]), Infinity), /truncated/);
});

Deno.test("both walkers refuse an array or map counting more values than bytes follow, at its head", () => {
  for (
    const head of [[0xdd, 0xff, 0xff, 0xff, 0xff], [0xdf, 0xff, 0xff, 0xff, 0xff], [0x83, 0x01]]
  ) {
    const bytes = new Uint8Array([...head, 0x01, 0x02]);
    assert.throws(() => msgpackJsonSize(bytes, Infinity), /truncated/);
    assert.throws(() => msgpackToJson(bytes), /truncated/);
  }
  // A map of one pair with a 64-bit negative key and a float32 value, as a decoder reads it.
  const bytes = new Uint8Array([
    0x81,
    0xd3,
    0xff,
    0xff,
    0xff,
    0xff,
    0xff,
    0xff,
    0xff,
    0xfe,
    0xca,
    0x3f,
    0xc0,
    0,
    0,
  ]);
  assert.equal(new TextDecoder().decode(msgpackToJson(bytes)), '{"-2":1.5}');
  assert.equal(msgpackJsonSize(bytes, Infinity), 10);
});
