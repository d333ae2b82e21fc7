/**
 * The `eval` operation's parser (roles/expression.ts): arithmetic only,
 * positions in every syntax error, bounded length and depth, finite results,
 * and names found only among its own constants and functions.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { DistError } from "../wire/mod.ts";
import { evaluate, MAX_EXPRESSION_DEPTH, MAX_EXPRESSION_LENGTH } from "../roles/expression.ts";
import { parseOperation } from "../roles/ops.ts";

function refused(source: string, message: RegExp | string): void {
  assert.throws(() => evaluate(source), (err: unknown) => {
    assert.ok(err instanceof DistError, `a DistError for ${JSON.stringify(source.slice(0, 40))}`);
    assert.equal(err.code, "BAD_REQUEST");
    if (typeof message === "string") assert.equal(err.message, message);
    else assert.match(err.message, message);
    return true;
  });
}

Deno.test("evaluate() computes arithmetic with the usual precedence", () => {
  const cases: [string, number][] = [
    ["2*pi", 2 * Math.PI],
    ["2*math.pi", 6.283185307179586],
    ["1 + 2 * 3", 7],
    ["(1 + 2) * 3", 9],
    ["7 % 4", 3],
    ["2^10", 1024],
    ["2**10", 1024],
    ["2^3^2", 512], // right-associative
    ["-2^2", -4], // ^ binds tighter than unary minus (Python, mathematics)
    ["(-2)^2", 4],
    ["2^-1", 0.5],
    ["--3", 3],
    ["+3", 3],
    ["1e3 + .5", 1000.5],
    ["sqrt(16) + abs(-2)", 6],
    ["max(1, 5, 3) - min(4, 2)", 3],
    ["log(e)", 1],
    ["ln(e^2)", 2],
    ["log(8, 2)", 3],
    ["log10(1000)", 3],
    ["floor(2.7) + ceil(2.1) + round(2.5) + round(-2.5)", 2 + 3 + 3 - 3],
    ["sin(0) + cos(0) + tan(0)", 1],
    ["exp(0)", 1],
    ["math.sqrt(2)^2", 2.0000000000000004],
    ["  1\t+\n1 ", 2],
  ];
  for (const [source, expected] of cases) assert.equal(evaluate(source), expected, source);
});

Deno.test("evaluate() points at the position of a syntax error", () => {
  refused("1+(2*3))", 'Unexpected ")" at 7');
  refused("(1+2", "Unexpected end of expression at 4");
  refused("1 +", "Unexpected end of expression at 3");
  refused("1 2", 'Unexpected "2" at 2');
  refused("2 * 'x'", `Unexpected "'" at 4`);
  refused("min()", 'Unexpected ")" at 4');
  refused("a = 1", /^Unknown name "a" at 0/);
  refused("2 × 3", "Unexpected U+00D7 at 2");
  refused("", "Empty expression");
  refused("   ", "Empty expression");
});

Deno.test("evaluate() knows only its own names: no prototype, no globals, no code", () => {
  for (
    const source of [
      "constructor",
      "__proto__",
      "toString(1)",
      "valueOf()",
      "hasOwnProperty",
      "process.exit()",
      "Deno.exit(1)",
      "globalThis",
      "this",
      "constructor.constructor",
      "math.constructor",
      "eval(1)",
      "Function(1)",
    ]
  ) {
    refused(source, /^Unknown name "[^"]+" at 0/);
  }
  // Anything else a JavaScript parser would take stops at its first character.
  refused(`constructor["constructor"]("return 1")()`, /^Unknown name "constructor" at 0/);
  refused("[1].map(x => x)", 'Unexpected "[" at 0');
  refused("`${1}`", 'Unexpected "`" at 0');
  refused("sqr(2)", 'Unknown name "sqr" at 0 (did you mean "sqrt"?)');
  refused("pi(2)", "pi is a constant, not a function, at 0");
  refused("sqrt", "sqrt is a function: write sqrt(…) at 0");
  refused("sqrt(1, 2)", "sqrt takes 1 argument, got 2, at 0");
  refused("atan2(1)", "atan2 takes 2 arguments, got 1, at 0");
});

Deno.test("evaluate() bounds length and depth", () => {
  const deep = (n: number) => "(".repeat(n) + "1" + ")".repeat(n);
  assert.equal(evaluate(deep(MAX_EXPRESSION_DEPTH)), 1);
  refused(deep(MAX_EXPRESSION_DEPTH + 1), `Expression nested deeper than 64 levels at 64`);
  refused("-".repeat(500) + "1", /^Expression nested deeper than 64 levels at 64$/);
  refused("2^".repeat(300) + "1", /^Expression nested deeper than 64 levels/);
  refused("sqrt(".repeat(100) + "1" + ")".repeat(100), /^Expression nested deeper than 64/);
  // Deep parentheses within the length: refused at the depth, without a stack overflow.
  refused(deep(499), /^Expression nested deeper than 64 levels at 64$/);
  const long = "1+".repeat(50_000) + "1";
  const t0 = performance.now();
  refused(long, `Expression of 100001 characters: at most ${MAX_EXPRESSION_LENGTH} are accepted`);
  refused("(".repeat(100_000), /^Expression of 100000 characters/);
  assert.ok(performance.now() - t0 < 100, "refused before being read");
  assert.equal(evaluate("1+".repeat(499) + "1"), 500); // 999 characters: accepted
});

Deno.test("evaluate() refuses results that are not finite numbers, where they arise", () => {
  refused("1/0", "Division by zero at 1");
  refused("5 % 0", "Division by zero at 2");
  refused("sqrt(-1)", "sqrt(-1) at 0 is not a number");
  refused("1e999", "1e999 at 0 is out of range");
  refused("10^400", "Result of ^ at 2 is out of range");
  refused("1e308 + 1e308", "Result of + at 6 is out of range");
  refused("exp(1000)", "exp(1000) at 0 is out of range");
});

/** A random expression as a tree, to compare the parser with a direct computation. */
type Tree = number | { op: "+" | "-" | "*" | "^"; l: Tree; r: Tree } | { neg: Tree };

const tree: fc.Arbitrary<Tree> = fc.letrec<{ t: Tree }>((tie) => ({
  t: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.integer({ min: 0, max: 9 }),
    fc.record({ op: fc.constantFrom("+", "-", "*"), l: tie("t"), r: tie("t") }),
    fc.record({
      op: fc.constant("^"),
      l: fc.integer({ min: 0, max: 3 }),
      r: fc.integer({ min: 0, max: 3 }),
    }),
    fc.record({ neg: tie("t") }),
  ),
})).t as fc.Arbitrary<Tree>;

function compute(t: Tree): number {
  if (typeof t === "number") return t;
  if ("neg" in t) return -compute(t.neg);
  const l = compute(t.l);
  const r = compute(t.r);
  return t.op === "+" ? l + r : t.op === "-" ? l - r : t.op === "*" ? l * r : l ** r;
}

/** Fully parenthesised, with random spaces: the parser must not care. */
function render(t: Tree, space: () => string): string {
  if (typeof t === "number") return String(t);
  if ("neg" in t) return `-(${render(t.neg, space)})`;
  return `(${render(t.l, space)}${space()}${t.op}${space()}${render(t.r, space)})`;
}

Deno.test("evaluate() agrees with a direct computation on random expressions", () => {
  fc.assert(
    fc.property(tree, fc.integer(), (t, seed) => {
      let s = seed;
      const space = () => ((s = (s * 1103515245 + 12345) & 0x7fffffff) % 3 === 0 ? " " : "");
      const text = render(t, space);
      fc.pre(text.length <= MAX_EXPRESSION_LENGTH);
      let depth = 0;
      let most = 0;
      for (const c of text) {
        if (c === "(") most = Math.max(most, ++depth);
        if (c === ")") depth--;
      }
      fc.pre(most < MAX_EXPRESSION_DEPTH / 2); // each -( is two levels: the sign and the group
      const expected = compute(t);
      fc.pre(Number.isFinite(expected));
      assert.equal(evaluate(text), expected, text);
    }),
    { numRuns: 500 },
  );
});

Deno.test("parseOperation() sends eval's words as one expression, and takes JSON params whole", () => {
  assert.deepEqual(parseOperation(["eval", "2", "*", "pi"]), {
    method: "eval",
    params: { expr: "2 * pi" },
  });
  assert.deepEqual(parseOperation(["eval", '{"expr":"1+1"}']), {
    method: "eval",
    params: { expr: "1+1" },
  });
  assert.deepEqual(parseOperation(["add", '{"a":3,"b":4}']), {
    method: "add",
    params: { a: 3, b: 4 },
  });
  assert.deepEqual(parseOperation(["add", "[3,4]"]), { method: "add", params: [3, 4] });
  assert.deepEqual(parseOperation(["sum", '{"values":[1,2,3]}']), {
    method: "sum",
    params: { values: [1, 2, 3] },
  });
  // The shell splits at spaces: the words are one JSON text again.
  assert.deepEqual(parseOperation(["add", '{"a":', "3,", '"b":', "4}"]), {
    method: "add",
    params: { a: 3, b: 4 },
  });
  assert.deepEqual(parseOperation(["echo", "{hi}"]), { method: "echo", params: { text: "{hi}" } });
  assert.deepEqual(parseOperation(["echo", "[1]"]), { method: "echo", params: { text: "[1]" } });
  assert.throws(() => parseOperation(["add", "{a:3}"]), /Parameters are not valid JSON: \{a:3\}/);
  assert.throws(() => parseOperation(["eval"]), /eval takes an expression/);
});
