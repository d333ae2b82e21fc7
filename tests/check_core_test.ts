/**
 * wire/check.ts: each parser as a table of what it accepts (and returns)
 * and what it refuses (and the message a peer reads).
 */
import assert from "node:assert/strict";
import {
  arrayOf,
  bool,
  DistError,
  finite,
  int,
  literal,
  maybe,
  obj,
  oneOf,
  opt,
  type Parse,
  record,
  refine,
  str,
  text,
} from "../wire/mod.ts";

type Row = [parser: Parse<unknown>, value: unknown, expected: unknown | RegExp];

function check(rows: Row[]): void {
  for (const [parse, value, expected] of rows) {
    if (expected instanceof RegExp) {
      assert.throws(() => parse(value, "f"), (err: unknown) => {
        assert.ok(err instanceof DistError, `${err}`);
        assert.equal(err.code, "BAD_REQUEST");
        assert.match(err.message, expected);
        return true;
      }, `${JSON.stringify(value)} refused`);
    } else {
      assert.deepEqual(parse(value, "f"), expected, `${JSON.stringify(value)} accepted`);
    }
  }
}

Deno.test("leaf parsers accept their type and name the field when they refuse", () => {
  check([
    [str, "", ""],
    [str, 1, /^"f" must be a string, got 1$/],
    [text(3), "abc", "abc"],
    [text(3), "", /"f" must be a string of 1 to 3 characters, got $/],
    [text(3), "abcd", /1 to 3 characters/],
    [bool, false, false],
    [bool, "true", /^"f" must be true or false, got true$/],
    [int(1, 10), 10, 10],
    [int(1, 10), 0, /^"f" must be an integer 1-10, got 0$/],
    [int(1, 10), 1.5, /an integer 1-10, got 1.5/],
    [int(1, 10), "2", /an integer 1-10, got 2/],
    [finite, -0.5, -0.5],
    [finite, Infinity, /a finite number, got Infinity/],
    [finite, NaN, /a finite number/],
    [record, { a: 1 }, { a: 1 }],
    [record, [], /^"f" must be an object, got an array$/],
    [record, null, /an object, got null/],
    [literal(true), true, true],
    [literal(true), 1, /^"f" must be true, got 1$/],
    [oneOf(["a", "b"]), "b", "b"],
    [oneOf(["a", "b"]), "c", /^"f" must be one of a, b, got c$/],
    [maybe(int(0, 1)), null, undefined],
    [maybe(int(0, 1)), 2, /integer 0-1/],
    [refine(str, (s) => s.startsWith("/"), "a path"), "/x", "/x"],
    [refine(str, (s) => s.startsWith("/"), "a path"), "x", /^"f" must be a path, got x$/],
  ]);
});

Deno.test("arrayOf() checks the length, then each item by its index", () => {
  const ints = arrayOf(int(0, 9), 3);
  check([
    [ints, [1, 2, 3], [1, 2, 3]],
    [ints, [1, 2, 3, 4], /^"f" must be an array of at most 3, got an array$/],
    [ints, [1, "x"], /^"f\[1\]" must be an integer 0-9, got x$/],
    [ints, "1,2", /an array of at most 3/],
  ]);
});

Deno.test("obj() parses each field in order, optional ones absent or null", () => {
  const p = obj({ a: int(0, 9), b: opt(str) });
  check([
    [p, { a: 1 }, { a: 1 }],
    [p, { a: 1, b: "x" }, { a: 1, b: "x" }],
    [p, { a: 1, b: null }, { a: 1, b: undefined }],
    [p, { a: 10, b: 1 }, /^"a" must be an integer 0-9, got 10$/], // the first bad field
    [p, { b: "x" }, /^"a" must be an integer 0-9, got undefined$/],
    [p, [1, "x"], /^"f" must be an object, got an array$/],
    [p, undefined, /an object, got undefined/],
  ]);
});

Deno.test("obj() keeps members it does not know and returns the input when nothing changed", () => {
  const p = obj({ a: int(0, 9) });
  const input = { a: 1, extra: { deep: true } };
  assert.equal(p(input), input);
  const nulled = { a: 1, b: null, c: 2 };
  const out = obj({ a: int(0, 9), b: opt(str) })(nulled);
  assert.notEqual(out, nulled, "a null optional is a change: copied, the input left alone");
  assert.deepEqual(out, { a: 1, b: undefined, c: 2 });
  assert.equal(nulled.b, null);
});

Deno.test("obj() options: positional arrays, omittable params and the messages of a method", () => {
  const p = obj({ topic: str, retain: opt(bool) }, {
    positional: true,
    omittable: true,
    notObject: (v) => `Params must be an object, not ${typeof v}`,
    missing: (key) => `m needs a ${key}`,
  });
  check([
    [p, ["/a", false], { topic: "/a", retain: false }],
    [p, ["/a"], { topic: "/a" }],
    [p, undefined, /^m needs a topic$/],
    [p, null, /^m needs a topic$/],
    [p, 7, /^Params must be an object, not number$/],
    [p, { retain: true }, /^m needs a topic$/],
  ]);
});

Deno.test("obj() never reads the prototype: a field named like Object's members is absent", () => {
  const p = obj({ constructor: opt(str), toString: opt(str) });
  assert.deepEqual(p({}), {});
  assert.throws(() => p({ constructor: 1 }), /"constructor" must be a string/);
});
