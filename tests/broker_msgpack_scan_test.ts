/**
 * The MessagePack value scanner of the broker's publish reader
 * (wire/msgpack_scan.ts skipMsgpack) against the decoder: every value an
 * application may send is taken whole; whatever it takes of byte mutants
 * the decoder reads, as the same bytes; what the decoder would refuse or
 * read as something else (extensions, NaN, integers past 2^53, keys that
 * are not strings or set a prototype, nesting past MAX_DEPTH) it leaves.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { encode } from "@msgpack/msgpack";
import { MAX_DEPTH, msgpackCodec } from "../wire/mod.ts";
import { skipMsgpack } from "../wire/msgpack_scan.ts";
import { prng } from "./helpers/raw.ts";

const whole = (b: Uint8Array, depth = 0) => skipMsgpack(b, 0, depth) === b.length;

Deno.test("skipMsgpack() takes every JSON-like value whole, and ends it inside more bytes", () => {
  fc.assert(
    fc.property(fc.jsonValue({ maxDepth: 6 }), (value) => {
      const b = encode(value);
      assert.ok(whole(b), JSON.stringify(value));
      const framed = new Uint8Array(b.length + 3);
      framed.set(b);
      assert.equal(skipMsgpack(framed, 0, 2), b.length);
    }),
    { numRuns: 3000, seed: 43 },
  );
  const shapes = [
    { text: "héllo wörld ✓ 日本語 😀", "clé": 'naïve "q" \\ \n', n: -7, big: 2 ** 52, f: 1.5 },
    { bin: new Uint8Array(300), long: "x".repeat(70_000), neg: -(2 ** 40), u32: 2 ** 31 },
    Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`, [i, { i }]])),
    Array.from({ length: 70_000 }, (_, i) => i % 3),
  ];
  for (const v of shapes) assert.ok(whole(encode(v)));
});

Deno.test("skipMsgpack() takes of byte mutants only what the decoder reads", () => {
  const random = prng(44);
  const seeds: Uint8Array[] = [];
  fc.assert(
    fc.property(fc.jsonValue({ maxDepth: 4 }), (v) => void seeds.push(encode(v))),
    { numRuns: 500, seed: 45 },
  );
  seeds.push(encode({ id: 18223, name: "sensor-12", ok: true, temp: 21.5, tags: ["a", "b"] }));
  seeds.push(encode({ a: { b: [1, 2, { c: [true, null, 3.25] }] }, d: [[1, 2], [3, [4, [5]]]] }));
  let taken = 0;
  for (let round = 0; round < 60_000; round++) {
    const b = seeds[round % seeds.length].slice();
    for (let k = 1 + Math.floor(random() * 3); k > 0; k--) {
      b[Math.floor(random() * b.length)] = Math.floor(random() * 256);
    }
    const end = skipMsgpack(b, 0, 0);
    if (end < 0) continue;
    taken++;
    assert.ok(end <= b.length);
    // The decoder reads exactly those bytes as one value (it throws on anything else).
    assert.doesNotThrow(() => msgpackCodec.decode(b.subarray(0, end)), String(Array.from(b)));
  }
  assert.ok(taken > 5_000, `mutants taken: ${taken}`);
});

Deno.test("skipMsgpack() leaves what the decoder refuses or reads as something else", () => {
  const refused = [
    Uint8Array.of(0xd6, 0xff, 0, 0, 0, 0), // an extension (a timestamp)
    Uint8Array.of(0xc1), // never used
    Uint8Array.of(0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0), // NaN
    Uint8Array.of(0xca, 0x7f, 0x80, 0, 0), // Infinity (float 32)
    Uint8Array.of(0xcf, 0, 0x20, 0, 0, 0, 0, 0, 0), // 2^53 as uint 64
    Uint8Array.of(0xd3, 0xff, 0xd0, 0, 0, 0, 0, 0, 0), // below -2^53
    Uint8Array.of(0x81, 0x01, 0x02), // a key that is not a string
    Uint8Array.of(0x81, 0xa9, ...new TextEncoder().encode("__proto__"), 0x01), // sets a prototype
    Uint8Array.of(0x92, 0x01), // an array cut short
    Uint8Array.of(0xdd, 0x7f, 0xff, 0xff, 0xff, 0x01), // claims more items than there are bytes
    Uint8Array.of(0xcb, 0x40), // a float cut short
    Uint8Array.of(0xa3, 0x61, 0xc3, 0x28), // invalid UTF-8
    Uint8Array.of(0xa3, 0xed, 0xa0, 0x80), // a surrogate
    Uint8Array.of(0xa2, 0x61), // a string cut short
    Uint8Array.of(0xc4, 0x05, 0x01), // bytes cut short
  ];
  for (const b of refused) assert.equal(skipMsgpack(b, 0, 0), -1, String(Array.from(b)));
  // Nesting: MAX_DEPTH containers below depth 0, not one more (empty ones count too).
  const nest = (k: number, inner: number) => Uint8Array.of(...new Array(k - 1).fill(0x91), inner);
  assert.ok(whole(nest(MAX_DEPTH, 0x90)));
  assert.equal(skipMsgpack(nest(MAX_DEPTH + 1, 0x90), 0, 0), -1);
  assert.equal(skipMsgpack(nest(MAX_DEPTH, 0x80), 0, 1), -1);
});
