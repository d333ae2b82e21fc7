/**
 * The JSON value scanner (wire/json_scan.ts skipValue, which the broker's
 * publish reader and the balancer's envelope scanner use) against the
 * strict decoder: a text is taken whole exactly when the decoder reads it
 * (and its numbers are finite), for random values written compactly and
 * with whitespace anywhere JSON allows it, and for byte mutants of them.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { jsonCodec } from "../wire/mod.ts";
import { PLAIN, plainEnd, skipString, skipValue } from "../wire/json_scan.ts";
import { prng } from "./helpers/raw.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Whether the strict decoder reads `b` as one value with finite numbers only. */
function decoderTakes(b: Uint8Array): boolean {
  let value: unknown;
  try {
    value = jsonCodec.decode(b);
  } catch {
    return false;
  }
  const finite = (v: unknown): boolean =>
    typeof v === "number"
      ? Number.isFinite(v)
      : Array.isArray(v)
      ? v.every(finite)
      : typeof v === "object" && v !== null
      ? Object.values(v).every(finite)
      : true;
  return finite(value);
}

/** Whether skipValue takes all of `b` as one value (depth 0: up to MAX_DEPTH containers). */
function scannerTakes(b: Uint8Array): boolean {
  return skipValue(b, 0, 0) === b.length;
}

const SPACES = [" ", "\n", "\t", "\r", "  ", " \n "];

/** `value` as JSON with whitespace between tokens (from `random`). */
function spaced(value: unknown, random: () => number): string {
  const ws = () => random() < 0.4 ? SPACES[Math.floor(random() * SPACES.length)] : "";
  const write = (v: unknown): string => {
    if (Array.isArray(v)) {
      return `[${ws()}${v.map((x) => `${ws()}${write(x)}${ws()}`).join(",")}${ws()}]`;
    }
    if (typeof v === "object" && v !== null) {
      const members = Object.entries(v).map(([k, x]) =>
        `${ws()}${JSON.stringify(k)}${ws()}:${ws()}${write(x)}${ws()}`
      );
      return `{${ws()}${members.join(",")}${ws()}}`;
    }
    return JSON.stringify(v);
  };
  return write(value);
}

const SEEDS: unknown[] = [
  { id: 18223, name: "sensor-12", ok: true, temp: 21.5, unit: "C", tags: ["a", "b"] },
  { a: { b: [1, 2, { c: [true, null, 3.25] }] }, d: [[1, 2], [3, [4, [5]]]], e: { f: {} } },
  { text: "héllo ✓ 日本語 😀", "clé": 'naïve "q" \\ \n /', n: -7, big: 1.5e300, small: -2e-7 },
  [0, -0.5, 12345678901234, 2 ** 40, -(2 ** 40), false, null, "", [], {}, "\u0001\u001f\u2028"],
];

Deno.test("skipValue() takes a text whole exactly when the strict decoder reads it (random values, any spacing)", () => {
  const random = prng(41);
  fc.assert(
    fc.property(fc.jsonValue({ maxDepth: 6 }), fc.boolean(), (value, space) => {
      const text = space ? spaced(value, random) : JSON.stringify(value);
      const b = encoder.encode(text);
      assert.equal(scannerTakes(b), decoderTakes(b), text);
      // Inside a frame, followed by more: the value's end, not the frame's.
      const framed = encoder.encode(`${text}}}`);
      if (decoderTakes(b)) assert.equal(skipValue(framed, 0, 2), b.length, text);
    }),
    { numRuns: 3000, seed: 41 },
  );
});

Deno.test("skipValue() agrees with the strict decoder on byte mutants of every value shape", () => {
  const random = prng(42);
  const seeds = SEEDS.flatMap((v) => [JSON.stringify(v), spaced(v, random)]);
  let taken = 0;
  let refused = 0;
  for (let round = 0; round < 40_000; round++) {
    const b = encoder.encode(seeds[round % seeds.length]);
    for (let k = Math.floor(random() * 3); k > 0; k--) {
      const at = Math.floor(random() * b.length);
      // Structural and tricky bytes more often than plain random ones.
      const tricky = [0x22, 0x5c, 0x7b, 0x7d, 0x5b, 0x5d, 0x2c, 0x3a, 0x20, 0x2e, 0x65, 0x2d, 0x75];
      b[at] = random() < 0.5
        ? tricky[Math.floor(random() * tricky.length)]
        : Math.floor(random() * 256);
    }
    const expected = decoderTakes(b);
    assert.equal(scannerTakes(b), expected, decoder.decode(b));
    if (expected) taken++;
    else refused++;
  }
  assert.ok(taken > 10_000 && refused > 10_000, `both kinds met (${taken} taken, ${refused} not)`);
});

Deno.test("skipValue() and skipString() refuse what the decoder refuses at the edges", () => {
  const refused = [
    '"\\ud800"', // a lone surrogate escape
    '"\\udc00\\ud800"',
    '"\\ud800\\u0041"',
    '"\\x"',
    '"\\u12g4"',
    '"a\u0001"', // a raw control character
    "1e400", // past a double
    "-",
    "01",
    "1.",
    ".5",
    "1e",
    "[1,]",
    '{"a":1,}',
    '{"a" 1}',
    "[1 2]",
    "tru",
    "nul",
    "falsey",
    " 1", // a value's own first byte is never a space
    "{",
    '"abc',
  ];
  for (const text of refused) {
    assert.ok(!scannerTakes(encoder.encode(text)), text);
    assert.ok(!decoderTakes(encoder.encode(text)) || text === " 1", text);
  }
  // Invalid UTF-8: overlong forms, surrogates, a cut sequence, a stray continuation byte.
  for (
    const bytes of [[0xc0, 0x80], [0xe0, 0x80, 0x80], [0xed, 0xa0, 0x80], [0xe6, 0x97], [0x80]]
  ) {
    const b = Uint8Array.of(0x22, ...bytes, 0x22);
    assert.equal(skipString(b, 0), -1, String(bytes));
    assert.equal(skipValue(b, 0, 0), -1, String(bytes));
  }
  const ok = [
    '"\\ud83d\\ude00"',
    '"é✓😀"',
    "-0.5e-3",
    "[ ]",
    "{ }",
    '{ "a" : [ 1 , { } ] }',
    "1E+2",
  ];
  for (const text of ok) assert.ok(scannerTakes(encoder.encode(text)), text);
  // Nesting: MAX_DEPTH containers from depth 0, not one more.
  assert.ok(scannerTakes(encoder.encode("[".repeat(64) + "]".repeat(64))));
  assert.ok(!scannerTakes(encoder.encode("[".repeat(65) + "]".repeat(65))));
  assert.ok(!scannerTakes(encoder.encode('{"a":'.repeat(65) + "1" + "}".repeat(65))));
});

Deno.test("a long plain run read four bytes at a time ends where the byte loop ends, at any offset and alignment", () => {
  const next = prng(46);
  const pick = (n: number) => Math.floor(next() * n);
  // Each byte that ends a run (or looks close to one), beside plain ones.
  const specials = [0x22, 0x5c, 0x1f, 0x00, 0x7f, 0x80, 0xff, 0x20, 0x7e, 0x21, 0x23, 0x5b, 0xc3];
  let words = 0;
  for (let t = 0; t < 20_000; t++) {
    // A fresh buffer most times, the same small one (its view kept) the others; one past 64 KiB now and then.
    const size = t % 500 === 0 ? 70_000 : 200 + pick(400);
    const bytes = new Uint8Array(size);
    for (let i = 0; i < size; i++) bytes[i] = 0x20 + pick(0x5f);
    for (let k = pick(4); k > 0; k--) bytes[pick(size)] = specials[pick(specials.length)];
    const off = pick(8);
    const b = new Uint8Array(bytes.buffer, off, size - off - pick(8));
    const from = pick(60);
    let end = from;
    while (PLAIN[b[end]] === 1) end++;
    assert.equal(plainEnd(b, from), end, `offset ${off}, from ${from}`);
    if (end - from > 100) words++;
  }
  // Long runs were there to read by words.
  assert.ok(words > 1000, String(words));
});
