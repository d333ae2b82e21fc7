/**
 * PublishMemo: a publish frame that differs from one its publisher sent
 * before only where its value may change is taken without reading it.
 * Taken means valid: every value it takes, the scanner and the decoder take
 * too. Here the frames are values alone (the value is the whole frame).
 */
import assert from "node:assert/strict";
import { jsonCodec } from "../wire/mod.ts";
import { skipValue } from "../wire/json_scan.ts";
import { MEMO_MAX_BYTES, PublishMemo } from "../wire/publish_memo.ts";
import { prng } from "./helpers/raw.ts";
import { SHAPES } from "./helpers/shapes.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
/** The nesting of a publish's value (its parent, params, is at depth 2). */
const DEPTH = 2;

/** What a reader read in a frame that is the value `b` alone. */
const whole = (b: Uint8Array) => ({ valueStart: 0, valueEnd: b.length, topic: "/t", retain: true });

/** A memo that has kept `text` (checked in full first, as the reader does). */
function kept(text: string): PublishMemo {
  const b = encoder.encode(text);
  assert.equal(skipValue(b, 0, DEPTH), b.length, `valid: ${text}`);
  const memo = new PublishMemo();
  memo.checked(b, whole(b), false);
  assert.ok(memo.match(b), "kept");
  return memo;
}

/** Whether `memo` takes `text`, a view in the middle of a larger buffer. */
function takes(memo: PublishMemo, text: string): boolean {
  const b = encoder.encode(text);
  const buf = new Uint8Array(b.length + 11).fill(0x31);
  buf.set(b, 5);
  const read = memo.match(buf.subarray(5, 5 + b.length));
  if (read !== undefined) assert.deepEqual(read.valueEnd, b.length);
  return read !== undefined;
}

/** What the decoder makes of `text` as a publish's value; undefined when it refuses it. */
function decoded(text: string): unknown {
  try {
    const frame = `{"method":"broker.publish","params":{"topic":"/t","value":${text}}}`;
    return (jsonCodec.decode(encoder.encode(frame)) as { params: { value: unknown } }).params;
  } catch {
    return undefined;
  }
}

Deno.test("PublishMemo.match() takes the frame kept and frames with digits changed where they may be", () => {
  const memo = kept('{"id":18223,"t":21.5,"at":"2026-12-04T20:00:00Z","n":-7,"z":0,"a":[1,2]}');
  assert.ok(
    takes(memo, '{"id":18223,"t":21.5,"at":"2026-12-04T20:00:00Z","n":-7,"z":0,"a":[1,2]}'),
  );
  assert.ok(
    takes(memo, '{"id":99001,"t":20.0,"at":"2026-12-04T20:00:59Z","n":-0,"z":9,"a":[0,9]}'),
  );
  // A leading zero: "09001" is no JSON number.
  assert.ok(
    !takes(memo, '{"id":09001,"t":21.5,"at":"2026-12-04T20:00:00Z","n":-7,"z":0,"a":[1,2]}'),
  );
  assert.ok(
    !takes(memo, '{"id":18223,"t":01.5,"at":"2026-12-04T20:00:00Z","n":-7,"z":0,"a":[1,2]}'),
  );
  // Anything but a digit where a digit was, or a change elsewhere.
  assert.ok(
    !takes(memo, '{"id":1822a,"t":21.5,"at":"2026-12-04T20:00:00Z","n":-7,"z":0,"a":[1,2]}'),
  );
  assert.ok(
    !takes(memo, '{"id":18223,"t":21.5,"at":"2026-12-04T20:00:00Z","n":-7,"z":0,"a":[1 2]}'),
  );
  assert.ok(
    !takes(memo, '{"id":18223,"t":21.5,"at":"2026-12-04T20:00:00Z","n":-7,"z":0,"b":[1,2]}'),
  );
  assert.ok(
    !takes(memo, '{"id":18223,"t":21.5,"at":"2026-12-04T20:00:00Z","n":-7,"z":0,"a":[1,2] '),
  );
  // Another length: not this memo's (the reader scans it).
  assert.ok(
    !takes(memo, '{"id":1822,"t":21.5,"at":"2026-12-04T20:00:00Z","n":-7,"z":0,"a":[1,2]}'),
  );
});

Deno.test("PublishMemo.match() takes every digit and nothing else at each place a digit may change, at every offset", () => {
  // Compared eight bytes at a time, then four, then one: each place of a
  // frame and each offset of its view in the buffer goes through each.
  for (let pad = 0; pad < 9; pad++) {
    const text = `{"s":"${"x".repeat(pad)}123456789","n":[1234567,8.25,-31]}`;
    const memo = kept(text);
    const b = encoder.encode(text);
    for (let p = 0; p < b.length; p++) {
      const digit = b[p] >= 0x30 && b[p] <= 0x39;
      for (let c = 0; c < 256; c++) {
        if (c === b[p]) continue;
        const mutant = b.slice();
        mutant[p] = c;
        for (const at of [0, 1, 3, 6]) {
          const buf = new Uint8Array(mutant.length + 16);
          buf.set(mutant, at);
          const taken = memo.match(buf.subarray(at, at + mutant.length)) !== undefined;
          // Any digit where there was one, but a number's leading digit is never 0 (`1234567`, `-31`).
          const leading = p === text.indexOf("[1234567") + 1 || p === text.indexOf("-31") + 1;
          const may = digit && c >= 0x30 && c <= 0x39 && !(c === 0x30 && leading);
          assert.equal(taken, may, `${text} with ${c} at ${p}, view at ${at}`);
          if (taken) assert.deepEqual(decoded(decoder.decode(mutant)) !== undefined, true);
        }
      }
    }
  }
});

Deno.test("PublishMemo.match() tells eight zero bytes from a negative zero's (MessagePack)", () => {
  // [0 × 15]: bytes 8–15 are zero, as a double +0; with 0x80 (an empty map, not a fixint) at 15 they are −0.
  const b = Uint8Array.of(0x9f, ...new Array(15).fill(0));
  const memo = new PublishMemo();
  memo.checked(b, { valueStart: 0, valueEnd: b.length, topic: "/t", retain: true }, true);
  assert.ok(memo.match(b.slice()));
  const mutant = b.slice();
  mutant[15] = 0x80;
  assert.equal(memo.match(mutant), undefined);
  mutant[15] = 0x7f;
  assert.ok(memo.match(mutant), "a fixint may change within its kind");
});

Deno.test("PublishMemo.match() leaves exponents, escapes and very long numbers to the scanner", () => {
  // 1e100 -> 1e900 would pass a double; \u escapes' digits can break a surrogate pair.
  assert.ok(!takes(kept("[1e100]"), "[1e900]"));
  assert.ok(!takes(kept("[2.5E+10]"), "[2.5E+99]"));
  assert.ok(!takes(kept('["\\ud83d\\ude00"]'), '["\\ud03d\\ude00"]'));
  assert.ok(!takes(kept('["\\u0041"]'), '["\\u0049"]'));
  const long = "1" + "0".repeat(305);
  assert.ok(!takes(kept(`[${long}]`), `[9${"9".repeat(305)}]`));
  // Digits outside escapes in the same strings may change.
  assert.ok(takes(kept('["a1\\n2\\u0041"]'), '["a9\\n7\\u0041"]'));
});

Deno.test("PublishMemo.checked() keeps frames up to MEMO_MAX_BYTES, of four lengths, the one used longest ago replaced", () => {
  const big = encoder.encode(`"${"7".repeat(MEMO_MAX_BYTES - 2)}"`);
  const memo = new PublishMemo();
  memo.checked(big, whole(big), false);
  assert.ok(memo.match(big));
  const tooBig = encoder.encode(`"${"7".repeat(MEMO_MAX_BYTES - 1)}"`);
  memo.checked(tooBig, whole(tooBig), false);
  assert.equal(memo.match(tooBig), undefined);
  // Four lengths kept at once (a reading of 21.9, then 22, then 21.95 …).
  const values = ["[1]", "[12]", "[123]", "[1234]"].map((t) => encoder.encode(t));
  const four = new PublishMemo();
  for (const v of values) four.checked(v, whole(v), false);
  for (const v of values) assert.ok(four.match(v));
  assert.ok(takes(four, "[98]"));
  // A fifth: in place of the one used longest ago ([1], matched first above).
  const fifth = encoder.encode("[12345]");
  four.checked(fifth, whole(fifth), false);
  assert.ok(four.match(fifth));
  assert.equal(four.match(values[0]), undefined);
  for (const v of values.slice(1)) assert.ok(four.match(v));
  // Another value of a kept length replaces that one.
  const other = encoder.encode("[true]");
  assert.equal(four.match(other), undefined);
  four.checked(other, whole(other), false);
  assert.ok(four.match(other));
  assert.equal(four.match(encoder.encode("[1234]")), undefined);
});

Deno.test("PublishMemo.checked() keeps ever fewer frames while none matches, and matches again once one does", () => {
  const memo = new PublishMemo();
  for (let i = 0; i < 1000; i++) {
    // Every frame another layout: never matched before it is checked.
    // (Lengths repeat every 300 frames, with another letter: no digit to change.)
    const v = encoder.encode(`["${"a".repeat(i % 300)}","${"bcdef"[Math.floor(i / 300)]}"]`);
    assert.equal(memo.match(v), undefined);
    memo.checked(v, whole(v), false);
  }
  // The first 8, then the 16th, 32nd, …, 256th, 512th and 768th.
  assert.equal(memo.stored, 15);
  // One layout again: kept within 256 frames, then every frame after it matches.
  const stable = encoder.encode('{"reading":21.5}');
  let first = -1;
  for (let i = 0; i < 300; i++) {
    if (memo.match(stable) !== undefined) {
      if (first < 0) first = i;
    } else {
      assert.equal(first, -1, "once matched, always");
      memo.checked(stable, whole(stable), false);
    }
  }
  assert.ok(first > 0 && first <= 256, `matched from frame ${first}`);
});

/** A random JSON value's text: every kind of token, escapes and non-ASCII text among them. */
function randomJson(rand: () => number, depth = 0): string {
  const pick = rand();
  if (depth < 5 && pick < 0.2) {
    const n = Math.floor(rand() * 4);
    return `[${Array.from({ length: n }, () => randomJson(rand, depth + 1)).join(",")}]`;
  }
  if (depth < 5 && pick < 0.4) {
    const n = Math.floor(rand() * 4);
    const members = Array.from(
      { length: n },
      () => `${randomString(rand)}:${randomJson(rand, depth + 1)}`,
    );
    return `{${members.join(",")}}`;
  }
  if (pick < 0.75) return randomNumber(rand);
  if (pick < 0.93) return randomString(rand);
  return ["true", "false", "null"][Math.floor(rand() * 3)];
}

function randomNumber(rand: () => number): string {
  const digits = (n: number) => Array.from({ length: n }, () => Math.floor(rand() * 10)).join("");
  const whole = rand() < 0.3
    ? "0"
    : `${1 + Math.floor(rand() * 9)}${digits(Math.floor(rand() * 6))}`;
  const fraction = rand() < 0.4 ? `.${digits(1 + Math.floor(rand() * 4))}` : "";
  const exponent = rand() < 0.15
    ? `e${rand() < 0.5 ? "-" : "+"}${digits(1 + Math.floor(rand() * 3))}`
    : "";
  return `${rand() < 0.3 ? "-" : ""}${whole}${fraction}${exponent}`;
}

const PIECES = [
  "a",
  "7",
  "42",
  " ",
  "\\n",
  "\\\\",
  '\\"',
  "\\u0041",
  "\\ud83d\\ude00",
  "é",
  "日",
  "😀",
  "x9",
];
function randomString(rand: () => number): string {
  const n = Math.floor(rand() * 6);
  return `"${
    Array.from({ length: n }, () => PIECES[Math.floor(rand() * PIECES.length)]).join("")
  }"`;
}

Deno.test("PublishMemo.match() takes only valid values: random values, digits and bytes changed (fuzz)", () => {
  const rand = prng(1717);
  let taken = 0;
  let digitsOnly = 0;
  const texts = [...Object.values(SHAPES).map((v) => JSON.stringify(v))];
  for (let i = 0; i < 3000; i++) texts.push(randomJson(rand));
  for (const text of texts) {
    const bytes = encoder.encode(text);
    if (skipValue(bytes, 0, DEPTH) !== bytes.length || bytes.length > MEMO_MAX_BYTES) continue;
    const memo = new PublishMemo();
    memo.checked(bytes, whole(bytes), false);
    for (let m = 0; m < 30; m++) {
      const v = bytes.slice();
      const digitMutant = m % 2 === 0;
      for (let k = 1 + Math.floor(rand() * 4); k > 0; k--) {
        const at = Math.floor(rand() * v.length);
        if (digitMutant) {
          if (v[at] >= 0x30 && v[at] <= 0x39) v[at] = 0x30 + Math.floor(rand() * 10);
        } else {
          v[at] = rand() < 0.5 ? Math.floor(rand() * 256) : 0x30 + Math.floor(rand() * 10);
        }
      }
      if (!memo.match(v)) continue;
      taken++;
      const mutant = decoder.decode(v);
      // Taken: the scanner takes it to the same end, and the decoder reads it.
      assert.equal(skipValue(v, 0, DEPTH), v.length, `${text} -> ${mutant}`);
      assert.notEqual(decoded(mutant), undefined, `${text} -> ${mutant}`);
      if (digitMutant && mutant !== text) digitsOnly++;
    }
  }
  assert.ok(taken > 20_000, `values taken: ${taken}`);
  assert.ok(digitsOnly > 5_000, `values with changed digits taken: ${digitsOnly}`);
});

/** A random value for MessagePack: every type the broker's reader takes, floats and binary among them. */
function randomValue(rand: () => number, depth = 0): unknown {
  const pick = rand();
  if (depth < 4 && pick < 0.15) {
    return Array.from({ length: Math.floor(rand() * 4) }, () => randomValue(rand, depth + 1));
  }
  if (depth < 4 && pick < 0.3) {
    const o: Record<string, unknown> = {};
    for (let k = Math.floor(rand() * 4); k > 0; k--) {
      o[`k${Math.floor(rand() * 100)}`] = randomValue(rand, depth + 1);
    }
    return o;
  }
  const ints = [
    0,
    5,
    127,
    128,
    255,
    256,
    65535,
    65536,
    2 ** 31,
    2 ** 32 + 1,
    2 ** 52,
    -1,
    -32,
    -33,
    -200,
    -40000,
    -(2 ** 31),
    -(2 ** 40),
  ];
  if (pick < 0.5) {
    return ints[Math.floor(rand() * ints.length)] + (rand() < 0.3 ? Math.floor(rand() * 9) : 0);
  }
  if (pick < 0.6) return (rand() - 0.5) * 10 ** Math.floor(rand() * 40);
  if (pick < 0.7) return rand() < 0.5;
  if (pick < 0.75) return null;
  if (pick < 0.8) {
    return Uint8Array.from({ length: Math.floor(rand() * 6) }, () => Math.floor(rand() * 256));
  }
  return randomString(rand).slice(1, -1) + "12";
}

Deno.test("PublishMemo.match() takes only valid MessagePack: random values, bytes changed (fuzz)", async () => {
  const { encode, decode } = await import("@msgpack/msgpack");
  const { skipMsgpack } = await import("../wire/msgpack_scan.ts");
  const rand = prng(2929);
  let taken = 0;
  let changed = 0;
  for (let i = 0; i < 3000; i++) {
    const bytes = encode(randomValue(rand), { forceFloat32: i % 3 === 0 });
    if (skipMsgpack(bytes, 0, DEPTH) !== bytes.length || bytes.length > MEMO_MAX_BYTES) continue;
    const memo = new PublishMemo();
    memo.checked(bytes, whole(bytes), true);
    for (let m = 0; m < 30; m++) {
      const v = bytes.slice();
      for (let k = 1 + Math.floor(rand() * 3); k > 0; k--) {
        const at = Math.floor(rand() * v.length);
        const r = rand();
        // Any byte; a NaN's or Infinity's exponent in a float; a digit.
        v[at] = r < 0.5
          ? Math.floor(rand() * 256)
          : r < 0.7
          ? v[at] | 0x7f
          : r < 0.85
          ? 0xff
          : 0x30 + Math.floor(rand() * 10);
      }
      if (!memo.match(v)) continue;
      taken++;
      if (v.some((x, j) => x !== bytes[j])) changed++;
      // Taken: the reader's scanner takes it to the same end, and the decoder reads it.
      assert.equal(skipMsgpack(v, 0, DEPTH), v.length, Array.from(v).join(","));
      assert.ok(allFinite(decode(v)), Array.from(v).join(","));
    }
  }
  assert.ok(taken > 10_000, `values taken: ${taken}`);
  assert.ok(changed > 3_000, `values with changed bytes taken: ${changed}`);
});

/** Whether every number in `v` is finite (the decoder refuses NaN and ±Infinity). */
function allFinite(v: unknown): boolean {
  if (typeof v === "number") return Number.isFinite(v);
  if (Array.isArray(v)) return v.every(allFinite);
  if (v !== null && typeof v === "object" && !(v instanceof Uint8Array)) {
    return Object.values(v).every(allFinite);
  }
  return true;
}

Deno.test("PublishMemo costs a connection that never publishes nothing, and one that does about three times its frames", async () => {
  const { TopicCache } = await import("../wire/mod.ts");
  const used = () => {
    const m = Deno.memoryUsage();
    return m.heapUsed + m.external;
  };
  const before = used();
  const caches = Array.from({ length: 20_000 }, () => new TopicCache());
  // Every subscriber's connection has one: a few hundred bytes each, not the memo's room.
  assert.ok(used() - before < 20 * 1024 * 1024, `${((used() - before) / 2 ** 20).toFixed(1)} MiB`);
  const memo = caches[0].memo;
  for (const len of [100, 200, 300, 400, 500, 600]) {
    const v = encoder.encode(`"${"7".repeat(len)}"`);
    memo.checked(v, whole(v), false);
  }
  assert.ok(memo.match(encoder.encode(`"${"7".repeat(600)}"`)));
  assert.equal(
    memo.match(encoder.encode(`"${"7".repeat(100)}"`)),
    undefined,
    "four lengths at most",
  );
});
