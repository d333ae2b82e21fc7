/**
 * HeldTexts (clients/held_texts.ts): the JSON bytes of deliveries waiting
 * for an iterator, decoded a run at a time. Every value comes back as its
 * own text, in order, whatever it holds: non-ASCII text, a broken broker's
 * NUL or invalid UTF-8, runs longer than one decode, and adds between takes.
 */
import assert from "node:assert/strict";
import { HeldTexts } from "../clients/held_texts.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

Deno.test("HeldTexts gives back each value's text in order, across runs and interleaved adds", () => {
  const held = new HeldTexts();
  const values: Uint8Array[] = [];
  for (let i = 0; i < 3000; i++) {
    const text = JSON.stringify({ n: i, unit: "°C", s: "日本".repeat(i % 7), e: "😀" });
    values.push(encoder.encode(text));
  }
  // A reused view, as a read buffer is: add copies.
  const scratch = new Uint8Array(1024);
  const add = (v: Uint8Array) => {
    scratch.set(v);
    held.add(scratch.subarray(0, v.length));
    scratch.fill(0x7b);
  };
  let taken = 0;
  for (let i = 0; i < values.length; i++) {
    add(values[i]);
    // Take some now and then: the rest wait across runs and buffer moves.
    if (i % 5 === 4) {
      for (let k = 0; k < 3; k++) assert.equal(held.take(), decoder.decode(values[taken++]));
    }
  }
  assert.equal(held.size, values.length - taken);
  while (held.size > 0) assert.equal(held.take(), decoder.decode(values[taken++]));
  assert.equal(taken, values.length);
});

Deno.test("HeldTexts: a value holding a NUL or invalid UTF-8 (a broken broker's) does not shift the others", () => {
  const held = new HeldTexts();
  const values = [
    encoder.encode('"a"'),
    new Uint8Array([0x22, 0x62, 0x00, 0x63, 0x22]), // "b\0c"
    new Uint8Array([0x22, 0xe2, 0x82, 0x22]), // a cut 3-byte sequence
    encoder.encode('"d"'),
    new Uint8Array([0x00]),
    encoder.encode('{"e":"°"}'),
  ];
  for (const v of values) held.add(v);
  for (const v of values) assert.equal(held.take(), decoder.decode(v));
  assert.equal(held.size, 0);
  // Empty again, it takes more from its start.
  held.add(encoder.encode("[1]"));
  assert.equal(held.take(), "[1]");
});
