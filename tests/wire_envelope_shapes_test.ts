/**
 * The envelope scanner of byte pass-through (wire/json_envelope.ts) on
 * messages as other encoders write them: scanJson's in-place read of the
 * usual layouts must find exactly what the member-by-member scan finds
 * (or leave the frame to it), for every value shape (objects, arrays,
 * unicode, escapes, huge numbers, whitespace, any member order), and a
 * request or answer passed through keeps its values byte for byte.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  Envelope,
  jsonCodec,
  OutBuffer,
  scanJson,
  writeAnswerAs,
  writeRequestAs,
} from "../wire/mod.ts";
import { scanMembers } from "../wire/json_envelope.ts";
import { prng } from "./helpers/raw.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const FIELDS = [
  "id",
  "idStart",
  "idEnd",
  "method",
  "methodStart",
  "methodEnd",
  "paramsStart",
  "paramsEnd",
  "resultStart",
  "resultEnd",
  "errorStart",
  "errorEnd",
  "byStart",
  "byEnd",
  "idempotent",
] as const;

/** scanJson and scanMembers agree on `text`: both refuse it, or both find the same spans. */
function agree(text: string | Uint8Array): boolean {
  const b = typeof text === "string" ? encoder.encode(text) : text;
  const fast = new Envelope();
  const slow = new Envelope();
  const took = scanJson(b, fast);
  const shown = decoder.decode(b);
  assert.equal(took, scanMembers(b, slow), shown);
  if (!took) return false;
  assert.equal(fast.payload, b);
  for (const f of FIELDS) assert.equal(fast[f], slow[f], `${f} of ${shown}`);
  return true;
}

/** Value texts JSON.stringify never writes: other encoders' numbers, escapes, spacing. */
const FOREIGN_VALUES = [
  "1e400",
  "-1E+2",
  "12345678901234567890123",
  "1.5e-300",
  "-0",
  "0.0000001",
  `"\\u00e9\\u65e5\\ud83d\\ude00"`,
  `"\\/\\b\\f\\n\\r\\t\\"\\\\"`,
  `"\\ud800"`,
  `"é日😀"`,
  `[ 1 , { "a" : [ true , null ] } ]`,
  `{"b":2,"a":1}`,
  `{}`,
  `[]`,
  `"${"x".repeat(300)}"`,
  `tru`,
  `[1,]`,
  `"\u0001"`,
];

const IDS = [
  "7",
  "0",
  "-12",
  "123456789012345",
  "1234567890123456",
  "01",
  "1.5",
  "1e3",
  "null",
  `"a-1"`,
  `""`,
  `"\\u0061"`,
  `"é"`,
  `"${"i".repeat(256)}"`,
  `"${"i".repeat(257)}"`,
];

const METHODS = [`"echo"`, `"add"`, `"e\\u0063ho"`, `"ß"`, `""`, `"${"m".repeat(257)}"`, `7`];

const pick = <T>(random: () => number, xs: readonly T[]): T => xs[Math.floor(random() * xs.length)];

/** A message's members as texts, in the order given, with spacing from `random` or none. */
function message(members: [string, string][], random: () => number, spaced: boolean): string {
  const ws = () => spaced && random() < 0.5 ? pick(random, [" ", "\n", "\t", "\r\n  "]) : "";
  return `${ws()}{${ws()}${
    members.map(([k, v]) => `${ws()}"${k}"${ws()}:${ws()}${v}${ws()}`).join(",")
  }${ws()}}${ws()}`;
}

Deno.test("scanJson() finds what the member-by-member scan finds, for any encoder's layout", () => {
  const random = prng(35);
  let plain = 0;
  let taken = 0;
  fc.assert(
    fc.property(
      fc.jsonValue({ maxDepth: 4 }),
      fc.nat(1000),
      (value, roll) => {
        const v = roll % 4 === 0 ? pick(random, FOREIGN_VALUES) : JSON.stringify(value);
        const id = roll % 3 === 0 ? pick(random, IDS) : String(roll);
        const request = roll % 2 === 0;
        const members: [string, string][] = request
          ? [["id", id], ["method", roll % 5 === 0 ? pick(random, METHODS) : `"echo"`]]
          : [["id", id], [roll % 3 === 1 ? "error" : "result", v]];
        if (request && roll % 7 !== 0) members.push(["params", v]);
        if (!request && roll % 3 !== 2) members.push(["by", roll % 11 === 0 ? v : `"s-1"`]);
        if (roll % 13 === 0) members.push([pick(random, ["idem", "x", "id", "by"]), "false"]);
        // Half as JSON.stringify lays them out; the rest reordered, or spaced, or both.
        const layout = roll % 8;
        if (layout >= 4 && layout !== 7) members.sort(() => random() - 0.5);
        const text = message(members, random, layout >= 6);
        if (layout < 4) plain++;
        if (agree(text)) taken++;
      },
    ),
    { numRuns: 6000, seed: 35 },
  );
  assert.ok(plain > 2000 && taken > 2000, `plain layouts ${plain}, taken ${taken}`);
});

Deno.test("scanJson() agrees with the member-by-member scan on byte mutants of plain layouts", () => {
  const random = prng(36);
  const seeds = [
    '{"id":12,"method":"echo","params":{"text":"héllo ✓ 日本語 😀","n":-7.5e3}}',
    '{"id":"r-9","method":"add","params":[1,2]}',
    '{"id":3,"method":"sys.ping"}',
    '{"id":5,"result":"xxxxxxxxxxxxxxxx","by":"s1"}',
    '{"id":6,"error":{"code":"BAD_REQUEST","message":"a \\"q\\""},"by":"w-2"}',
    '{"id":7,"result":{"a":[true,null,{"b":"\\ud83d\\ude00"}]}}',
  ];
  let taken = 0;
  for (let round = 0; round < 30_000; round++) {
    const b = encoder.encode(seeds[round % seeds.length]);
    for (let k = 1 + Math.floor(random() * 2); k > 0; k--) {
      const at = Math.floor(random() * b.length);
      const tricky = [0x22, 0x5c, 0x7b, 0x7d, 0x5b, 0x5d, 0x2c, 0x3a, 0x20, 0x30, 0x2d, 0x80];
      b[at] = random() < 0.6 ? pick(random, tricky) : Math.floor(random() * 256);
    }
    if (agree(b)) taken++;
  }
  assert.ok(taken > 3000, `mutants taken ${taken}`);
});

const SHAPES: unknown[] = [
  "x".repeat(64),
  { id: 18223, name: "sensor-12", ok: true, temp: 21.5, unit: "C", tags: ["a", "b"] },
  { a: { b: [1, 2, { c: [true, null, 3.25] }] }, d: [[1, 2], [3, [4, [5]]]], e: { f: {} } },
  { text: "héllo wörld ✓ 日本語 😀", "clé": 'naïve café "q" \\ \n', n: -7, big: 1.5e300 },
  [0, -0.5, 12345678901234, 2 ** 53 - 1, false, null, "", [], {}, "\u0001\u2028"],
];

/** The frame in `out` as text. */
function payloadOf(out: OutBuffer): string {
  const len = new DataView(out.bytes.buffer).getUint32(0);
  return decoder.decode(out.bytes.subarray(4, 4 + len));
}

Deno.test("a request and its answer passed through keep every value shape byte for byte", () => {
  const random = prng(37);
  for (const shape of SHAPES) {
    const text = JSON.stringify(shape);
    // As JSON.stringify writes it, reordered, and spaced by another encoder.
    const requests = [
      `{"id":41,"method":"echo","params":${text}}`,
      `{"params":${text},"method":"echo","id":"c-41"}`,
      message([["method", '"echo"'], ["id", "41"], ["params", text]], random, true),
    ];
    for (const request of requests) {
      const env = new Envelope();
      assert.ok(scanJson(encoder.encode(request), env), request);
      const out = new OutBuffer(64);
      writeRequestAs(out, env, 9, 1 << 20);
      const sent = payloadOf(out);
      assert.ok(sent.includes(`"params":${text}`), `params bytes kept: ${sent}`);
      assert.deepEqual(jsonCodec.decode(encoder.encode(sent)), {
        id: 9,
        method: "echo",
        params: shape,
      });
      const answers = [
        `{"id":9,"result":${text},"by":"s-1"}`,
        `{ "by" : "s-1", "result" : ${text}, "id" : 9 }`,
      ];
      for (const answer of answers) {
        const a = new Envelope();
        assert.ok(scanJson(encoder.encode(answer), a), answer);
        const back = new OutBuffer(64);
        writeAnswerAs(back, a, env, 1 << 20);
        const got = payloadOf(back);
        assert.ok(got.includes(`"result":${text}`), `result bytes kept: ${got}`);
        assert.deepEqual(jsonCodec.decode(encoder.encode(got)), {
          id: env.id,
          result: shape,
          by: "s-1",
        });
      }
    }
  }
});
