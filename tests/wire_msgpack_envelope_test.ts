/**
 * The MessagePack request envelope reader (wire/msgpack_envelope.ts), with
 * which the balancer forwards MessagePack requests as bytes (hostile34
 * Z7), against the decoder and the classifier: what it reads, they read
 * the same (id, method, idem, and the params' bytes decode to the params);
 * what it leaves, it says why; no input makes it throw.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { encode } from "@msgpack/msgpack";
import { msgpackCodec, MsgpackRequest, scanMsgpackRequest } from "../wire/mod.ts";
import { classify } from "../wire/classify.ts";
import { prng } from "./helpers/raw.ts";

const request = new MsgpackRequest();
const scan = (b: Uint8Array) => scanMsgpackRequest(b, request);
const paramsOf = (r: MsgpackRequest) =>
  r.paramsStart < 0
    ? undefined
    : msgpackCodec.decode(r.payload.subarray(r.paramsStart, r.paramsEnd));

/** `n` arrays nested in one another. */
function nested(n: number): unknown {
  let v: unknown = 1;
  for (let i = 0; i < n; i++) v = [v];
  return v;
}

Deno.test("scanMsgpackRequest() reads id, method, idem and the params' bytes, in any order", () => {
  const params = { a: [1, "two", { three: 3.5 }], bin: new Uint8Array([1, 2]) };
  assert.ok(scan(encode({ id: 7, method: "echo", params })));
  assert.deepEqual([request.id, request.method, request.idempotent], [7, "echo", true]);
  assert.deepEqual(paramsOf(request), msgpackCodec.decode(encode(params)));
  assert.ok(scan(encode({ params: [1, 2], idem: false, other: { x: 1 }, method: "é✓", id: "ab" })));
  assert.deepEqual([request.id, request.method, request.idempotent], ["ab", "é✓", false]);
  assert.deepEqual(paramsOf(request), [1, 2]);
  assert.ok(scan(encode({ id: 2 ** 40, method: "m" })));
  assert.deepEqual([request.id, request.paramsStart], [2 ** 40, -1]);
  assert.ok(scan(encode({ id: "é".repeat(256), method: "m", params: null })));
  assert.equal(request.id, "é".repeat(256));
});

Deno.test("scanMsgpackRequest() leaves to the decoder what is not a request, and a bad id or method", () => {
  for (
    const v of [
      { method: "m", params: [1] }, // a notification
      { id: 1, result: 2 }, // an answer
      [1, 2],
      "text",
      { id: null, method: "m" },
      { id: 1.5, method: "m" },
      { id: "x".repeat(257), method: "m" },
      { id: 1, method: 2 },
      { id: 1, method: "m".repeat(257) },
    ]
  ) {
    assert.equal(scan(encode(v)), false, JSON.stringify(v));
    assert.equal(request.problem, "", JSON.stringify(v));
  }
});

Deno.test("scanMsgpackRequest() says why it does not take a request's params", () => {
  const cases: [unknown, RegExp, boolean][] = [
    [{ id: 1, method: "m", params: nested(70) }, /nesting deeper/, true],
    [{ id: 1, method: "m", params: [new Date(0)] }, /extension/, false],
    [{ id: 1, method: "m", params: [NaN] }, /NaN/, false],
  ];
  for (const [v, problem, invalid] of cases) {
    assert.equal(scan(encode(v)), false, String(v));
    assert.match(request.problem, problem);
    assert.equal(request.invalid, invalid, request.problem);
    assert.equal(request.id, 1);
  }
  // Lengths that lie: an array of 2^32-1 elements in a few bytes, a string past the end.
  const head = encode({ id: 1, method: "m" });
  const lying = (tail: number[]) =>
    Uint8Array.of(0x83, ...head.subarray(1), 0xa6, ...encode("params").subarray(1), ...tail);
  for (const tail of [[0xdd, 0xff, 0xff, 0xff, 0xff, 0x01], [0xdb, 0, 0, 0x10, 0, 0x61], [0xc1]]) {
    assert.equal(scan(lying(tail)), false);
    assert.equal(request.invalid, true, request.problem);
    assert.match(request.problem, /past the end/);
  }
  // A map key that is not a string: {1: "a"}.
  assert.equal(scan(lying([0x81, 0x01, 0xa1, 0x61])), false);
  assert.match(request.problem, /map key/);
  assert.equal(request.invalid, false);
  // A 64-bit integer past 2^53 (encoders write such a number as a float).
  assert.equal(scan(lying([0xcf, 0x10, 0, 0, 0, 0, 0, 0, 0])), false);
  assert.match(request.problem, /2\^53/);
  // What the decoder reads otherwise, before the id and the method: stepped over, the id still read.
  for (const params of [[new Date(0), "x"], { a: [1, new Date(0)] }, [NaN, 1]]) {
    assert.equal(scan(encode({ params, other: 1, id: 9, method: "m" })), false);
    assert.deepEqual([request.id, request.method, request.invalid], [9, "m", false]);
    assert.match(request.problem, /extension|NaN/);
  }
  const keyFirst = Uint8Array.of(
    0x83,
    0xa6,
    ...encode("params").subarray(1),
    0x81,
    0x01,
    0x90,
    ...head.subarray(1),
  );
  assert.equal(scan(keyFirst), false);
  assert.deepEqual([request.id, request.problem], [
    1,
    "a map key that is not a string (or is __proto__)",
  ]);
  // A member twice: the decoder would keep the last.
  const twice = Uint8Array.of(0x83, ...head.subarray(1), 0xa2, 0x69, 0x64, 0x02);
  assert.equal(scan(twice), false);
  assert.match(request.problem, /twice/);
});

Deno.test("scanMsgpackRequest() reads requests as the decoder and the classifier do (fuzz)", () => {
  fc.assert(
    fc.property(
      fc.oneof(fc.integer(), fc.string({ maxLength: 20 })),
      fc.string({ minLength: 1, maxLength: 30 }),
      fc.option(fc.jsonValue({ maxDepth: 5 }), { nil: undefined }),
      fc.boolean(),
      (id, method, params, idem) => {
        const message: Record<string, unknown> = { id, method };
        if (params !== undefined) message.params = params;
        if (!idem) message.idem = false;
        const b = encode(message);
        const m = classify(msgpackCodec.decode(b));
        assert.ok(scan(b), request.problem);
        assert.equal(m.kind, "request");
        assert.deepEqual([request.id, request.method, request.idempotent], [
          m.id,
          m.method,
          m.idempotent,
        ]);
        assert.deepEqual(paramsOf(request), m.params);
      },
    ),
    { numRuns: 2000, seed: 35 },
  );
});

Deno.test("scanMsgpackRequest() never throws on truncated or mutated frames, and takes only what decodes", () => {
  const random = prng(36);
  const seeds = [
    encode({ id: 1, method: "echo", params: { text: "hé", list: [1, 2.5, null, true], m: {} } }),
    encode({ method: "add", id: "req-9", params: [1, 2], idem: false }),
    encode({ id: 300, method: "sum", params: Array.from({ length: 40 }, (_, i) => ({ i })) }),
  ];
  let taken = 0;
  for (const s of seeds) {
    for (let n = 0; n < s.length; n++) assert.equal(scan(s.subarray(0, n)), false);
  }
  for (let round = 0; round < 30_000; round++) {
    const b = seeds[round % seeds.length].slice();
    for (let k = 1 + Math.floor(random() * 3); k > 0; k--) {
      b[Math.floor(random() * b.length)] = Math.floor(random() * 256);
    }
    if (!scan(b)) continue;
    taken++;
    const m = classify(msgpackCodec.decode(b));
    assert.equal(m.kind, "request", String(Array.from(b)));
    assert.deepEqual([request.id, request.method], [m.id, m.method]);
    assert.deepEqual(paramsOf(request), m.params);
  }
  assert.ok(taken > 1_000, `mutants taken: ${taken}`);
});
