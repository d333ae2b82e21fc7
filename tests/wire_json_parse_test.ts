/**
 * wire/json_parse.ts: parseJson is JSON.parse with every object key as
 * written, whatever was parsed before in the process (V8 in Deno 2.9.6
 * reads an escaped key as an earlier key holding a backslash:
 * docs/v8_json_keys.md). Checked against the value a text was written
 * from (JSON.parse itself is not a trustworthy oracle once a key with a
 * backslash has been parsed), with keys of backslashes, escapes, control
 * characters, surrogates and `__proto__`, escapes and whitespace written
 * at random; and against JSON.parse's verdict on byte mutants of them.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { parseJson as libraryParseJson } from "../clients/mod.ts";
import { hasEscapedKey, jsonCodec, MAX_DEPTH, parseJson } from "../wire/mod.ts";

/** A value to write: objects as entry lists, so duplicate keys can be written. */
type Gen = null | boolean | number | string | Gen[] | { entries: [string, Gen][] };

/** The value JSON.parse's definition gives for `g`: later duplicates win, in the first's place. */
function expected(g: Gen): unknown {
  if (Array.isArray(g)) return g.map(expected);
  if (g === null || typeof g !== "object") return g;
  const o: Record<string, unknown> = {};
  for (const [k, v] of g.entries) {
    Object.defineProperty(o, k, {
      value: expected(v),
      writable: true,
      enumerable: true,
      configurable: true,
    });
  }
  return o;
}

const SHORT: Record<string, string> = {
  '"': '\\"',
  "\\": "\\\\",
  "\b": "\\b",
  "\f": "\\f",
  "\n": "\\n",
  "\r": "\\r",
  "\t": "\\t",
};

/** A random writer of JSON text: escapes and whitespace where JSON allows a choice. */
class Writer {
  escapedKey = false;
  constructor(readonly rand: () => number) {}

  #space(): string {
    return this.rand() < 0.15 ? [" ", "\n", "\t", "\r\n  ", "  "][Math.floor(this.rand() * 5)] : "";
  }

  #hex(c: number): string {
    const h = c.toString(16).padStart(4, "0");
    return "\\u" + (this.rand() < 0.5 ? h : h.toUpperCase());
  }

  string(s: string, isKey: boolean): string {
    let out = '"';
    for (let i = 0; i < s.length; i++) {
      const ch = s[i];
      const c = s.charCodeAt(i);
      let part: string;
      if (c < 0x20 || ch === '"' || ch === "\\") {
        part = SHORT[ch] !== undefined && this.rand() < 0.7 ? SHORT[ch] : this.#hex(c);
      } else if (this.rand() < 0.1) part = ch === "/" && this.rand() < 0.5 ? "\\/" : this.#hex(c);
      else part = ch;
      if (isKey && part.length > 1) this.escapedKey = true;
      out += part;
    }
    return out + '"';
  }

  number(n: number): string {
    if (Object.is(n, -0)) return "-0";
    const r = this.rand();
    if (r < 0.6) return JSON.stringify(n);
    const e = n.toExponential();
    return r < 0.8 ? e : e.toUpperCase().replace("E+", this.rand() < 0.5 ? "E" : "E+");
  }

  value(g: Gen): string {
    const s = () => this.#space();
    if (g === null || typeof g === "boolean") return JSON.stringify(g);
    if (typeof g === "number") return this.number(g);
    if (typeof g === "string") return this.string(g, false);
    if (Array.isArray(g)) {
      return `[${s()}${g.map((v) => this.value(v)).join(`${s()},${s()}`)}${s()}]`;
    }
    const members = g.entries.map(([k, v]) =>
      `${this.string(k, true)}${s()}:${s()}${this.value(v)}`
    );
    return `{${s()}${members.join(`${s()},${s()}`)}${s()}}`;
  }
}

/** Characters that make keys interesting here. */
const keyUnit = fc.oneof(
  fc.constantFrom("\\", "\n", '"', "/", "\u0000", "\u001f", "\u2028", "\ud800", "\udc00", "é", "0"),
  fc.constantFrom("a", "b", "x", "u", "n", "t", "中", "😀"),
);
const key = fc.oneof(
  { weight: 6, arbitrary: fc.string({ unit: keyUnit, maxLength: 4 }) },
  { weight: 1, arbitrary: fc.constantFrom("__proto__", "constructor", "toString", "1", "") },
);
const { gen } = fc.letrec<{ gen: Gen }>((tie) => ({
  gen: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.integer({ min: -(2 ** 53), max: 2 ** 53 }),
    fc.string({ unit: keyUnit, maxLength: 6 }),
    fc.array(tie("gen"), { maxLength: 4 }),
    fc.array(fc.tuple(key, tie("gen")), { maxLength: 5 }).map((entries) => ({ entries })),
  ),
}));

/**
 * Parses, with JSON.parse, an object like each of `g`'s with an escaped key
 * K but holding the key V8 mistakes K's raw text for (its first |K|
 * characters): the bug's precondition, so the check below meets it.
 */
function poison(g: Gen, w: Writer): void {
  if (Array.isArray(g)) return g.forEach((v) => poison(v, w));
  if (g === null || typeof g !== "object") return;
  const before: string[] = [];
  for (const [k, v] of g.entries) {
    const raw = w.string(k, false).slice(1, -1);
    if (raw !== k) {
      const members = [...before, `${JSON.stringify(raw.slice(0, k.length))}:0`];
      JSON.parse(`{${members.join(",")}}`);
    }
    before.push(`${JSON.stringify(k)}:0`);
    poison(v, w);
  }
}

Deno.test("parseJson() reads each one-escape key as written after a `\\` key (V8 bug repro)", () => {
  const victims = ['"\\n"', '"\\u001f"', '"\\u005c"', '"\\t"', '"\\""', '"\\/"', '"\\u00e9"'];
  for (const v of victims) {
    const k = `k${Math.random().toString(36).slice(2)}`;
    JSON.parse(`{"${k}":1,"\\\\":0}`); // the poison: a key that is one backslash
    const text = `{"${k}":1,${v}:0}`;
    const want = JSON.parse(v) as string;
    assert.deepEqual(Object.keys(parseJson(text) as object), [k, want], text);
    assert.deepEqual(Object.keys(libraryParseJson(text) as object), [k, want], text);
    assert.deepEqual(Object.keys(jsonCodec.decode(new TextEncoder().encode(text)) as object), [
      k,
      want,
    ]);
  }
  // The same inside arrays and nested objects, and keys longer than one escape.
  JSON.parse('{"p1":{"q":1,"ab\\\\":0}}');
  assert.deepEqual(parseJson('[{"q":1,"ab\\n":0},{"q":2,"ab\\t":1}]'), [{ q: 1, "ab\n": 0 }, {
    q: 2,
    "ab\t": 1,
  }]);
});

Deno.test("parseJson() equals the value written, for random values, escapes and layouts", () => {
  let careful = 0;
  fc.assert(
    fc.property(gen, fc.integer(), (g, seed) => {
      let x = seed >>> 0 || 1;
      const rand = () => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) / 2 ** 32);
      const w = new Writer(rand);
      const text = w.value(g);
      poison(g, new Writer(rand));
      assert.equal(hasEscapedKey(text), w.escapedKey, text);
      if (w.escapedKey) careful++;
      const got = parseJson(text);
      assert.deepEqual(got, expected(g), text);
      assert.deepEqual(Object.keys(got ?? {}), Object.keys(expected(g) ?? {}), text);
      if (got !== null && typeof got === "object" && !Array.isArray(got)) {
        assert.equal(Object.getPrototypeOf(got), Object.prototype);
      }
    }),
    { numRuns: 3000 },
  );
  assert.ok(careful > 300, `only ${careful} texts had an escaped key`);
});

/** JSON.parse's keys, where they can be trusted: the bug's wrong key always holds a backslash. */
function sameAsJsonParse(mine: unknown, theirs: unknown, where: string): void {
  if (typeof theirs !== "object" || theirs === null) {
    assert.ok(Object.is(mine, theirs), where);
    return;
  }
  assert.equal(Array.isArray(mine), Array.isArray(theirs), where);
  const a = Object.entries(mine as object);
  const b = Object.entries(theirs);
  // Where JSON.parse made a key holding a backslash the bug may have struck, and with a key written
  // twice (`"\\""` then `"\\u0022"`) it also moves values between keys (seen once in CI): its object
  // is no oracle then (the generator's own values check parseJson on such texts, above).
  if (b.some(([k]) => k.includes("\\"))) return;
  assert.equal(a.length, b.length, where);
  for (let i = 0; i < a.length; i++) {
    assert.equal(a[i][0], b[i][0], where);
    sameAsJsonParse(a[i][1], b[i][1], where);
  }
}

Deno.test("parseJson() throws exactly when JSON.parse does, on byte mutants", () => {
  const pieces = ["\\", '"', ":", ",", "{", "}", "[", "]", " ", "u", "0", "-", ".", "e", "\u0001"];
  fc.assert(
    fc.property(gen, fc.integer(), fc.array(fc.nat(), { minLength: 3, maxLength: 3 }), (
      g,
      seed,
      [at, piece, how],
    ) => {
      let x = seed >>> 0 || 1;
      const w = new Writer(() => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) / 2 ** 32));
      const text = w.value(g);
      const i = at % (text.length + 1);
      const p = pieces[piece % pieces.length];
      const mutant = how % 3 === 0
        ? text.slice(0, i) + p + text.slice(i)
        : how % 3 === 1
        ? text.slice(0, i) + text.slice(i + 1)
        : text.slice(0, i) + p + text.slice(i + 1);
      // Alone, and as the value of an escaped key (so the careful parser reads it).
      for (const t of [mutant, `{"\\n":${mutant}}`]) {
        let theirs: unknown;
        let threw = false;
        try {
          theirs = JSON.parse(t);
        } catch {
          threw = true;
        }
        if (threw) assert.throws(() => parseJson(t), SyntaxError, t);
        else sameAsJsonParse(parseJson(t), theirs, t);
      }
    }),
    { numRuns: 10_000 },
  );
});

Deno.test("parseJson() takes the texts JSON.parse takes at their edges", () => {
  const deep = (n: number) => '{"\\n":' + "[".repeat(n) + "]".repeat(n) + "}";
  assert.equal(JSON.stringify(parseJson(deep(100_000))).length, deep(100_000).length);
  assert.ok(Object.is((parseJson('{"\\n":-0}') as Record<string, number>)["\n"], -0));
  assert.deepEqual(parseJson('{"\\n":[1e400,-1e400,5e-324,2.2250738585072011e-308]}'), {
    "\n": [Infinity, -Infinity, 5e-324, 2.2250738585072011e-308],
  });
  const proto = parseJson('{"\\n":1,"__proto__":{"polluted":true}}') as Record<string, unknown>;
  assert.equal(Object.getPrototypeOf(proto), Object.prototype);
  assert.deepEqual(Object.keys(proto), ["\n", "__proto__"]);
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
  const bads = ["", " ", '{"\\n"}', '{"\\n":}', '{"\\n":1,}', '{"\\n":[1,]}', '{"\\n":01}'];
  for (const bad of [...bads, '{"\\n":.5}', '{"\\n":1}x', '{"\\n":"\\x"}', '{"\\n":tru}']) {
    assert.throws(() => parseJson(bad), SyntaxError, bad);
  }
  // The codec keeps refusing nesting past MAX_DEPTH before any parse.
  const tooDeep = '{"\\n":' + "[".repeat(MAX_DEPTH + 1) + "]".repeat(MAX_DEPTH + 1) + "}";
  assert.throws(() => jsonCodec.decode(new TextEncoder().encode(tooDeep)), /deeper than/);
});
