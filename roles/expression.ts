/**
 * Arithmetic expressions for the `eval` operation (the broker lab's remote
 * `conn.eval('2*math.pi')`), safe by construction: the text is read by this
 * parser and computed as it is read. Nothing is ever handed to `eval`,
 * `Function` or a property lookup: names are found in two Maps of our own,
 * so `constructor`, `__proto__` or `process.exit()` are unknown names.
 *
 * Why not a library (checked on npm, 2026-12): `@hapi/formula` finds
 * constants through the prototype (`constructor` is `{}`), reads `2^3^2` as
 * 64 and gives no positions; `fparser` answers `toString(1)` and `valueOf()`
 * from Object.prototype; `expr-eval` had a prototype-pollution CVE and is
 * unmaintained; `mathjs` evaluates a whole language (assignments, function
 * definitions, matrices) with a history of sandbox escapes; `jsep` is well
 * kept and only parses, but it parses all of JavaScript's expressions
 * (members, strings, arrays, ternaries) to be refused afterwards, its
 * configuration is global, and its unary minus binds tighter than `^`
 * (`-2^2` = 4). The grammar here is twenty lines.
 *
 * Grammar (precedence low to high; `^` and `**` are right-associative and
 * bind tighter than unary minus, so `-2^2` = -4 and `2^-1` = 0.5, as in
 * Python and mathematics):
 *
 *     sum     = product (("+" | "-") product)*
 *     product = unary (("*" | "/" | "%") unary)*
 *     unary   = ("-" | "+") unary | power
 *     power   = atom (("^" | "**") unary)?
 *     atom    = NUMBER | NAME | NAME "(" sum ("," sum)* ")" | "(" sum ")"
 *
 * A NAME may carry the lab's `math.` prefix (`math.pi`, `math.sqrt(2)`).
 */
import { didYouMean } from "../config/mod.ts";
import { DistError } from "../wire/mod.ts";

/** Longest expression accepted (characters). */
export const MAX_EXPRESSION_LENGTH = 1000;
/** Deepest nesting accepted (parentheses, calls, signs and powers inside each other). */
export const MAX_EXPRESSION_DEPTH = 64;

export const CONSTANTS: ReadonlyMap<string, number> = new Map([
  ["pi", Math.PI],
  ["e", Math.E],
  ["tau", 2 * Math.PI],
]);

interface Fn {
  min: number;
  max: number;
  f: (...args: number[]) => number;
}

const one = (f: (x: number) => number): Fn => ({ min: 1, max: 1, f });
/** Rounds half away from zero (2.5 → 3, -2.5 → -3), as people and Python's round-half-up expect. */
const roundHalfAway = (x: number) => Math.sign(x) * Math.round(Math.abs(x));

export const FUNCTIONS: ReadonlyMap<string, Fn> = new Map<string, Fn>([
  ["sqrt", one(Math.sqrt)],
  ["cbrt", one(Math.cbrt)],
  ["abs", one(Math.abs)],
  ["sin", one(Math.sin)],
  ["cos", one(Math.cos)],
  ["tan", one(Math.tan)],
  ["asin", one(Math.asin)],
  ["acos", one(Math.acos)],
  ["atan", one(Math.atan)],
  ["atan2", { min: 2, max: 2, f: Math.atan2 }],
  // log is the natural logarithm, as Python's math.log and JavaScript's Math.log;
  // log(x, b) is to base b.
  ["log", {
    min: 1,
    max: 2,
    f: (x, b) => b === undefined ? Math.log(x) : Math.log(x) / Math.log(b),
  }],
  ["ln", one(Math.log)],
  ["log10", one(Math.log10)],
  ["log2", one(Math.log2)],
  ["exp", one(Math.exp)],
  ["floor", one(Math.floor)],
  ["ceil", one(Math.ceil)],
  ["round", one(roundHalfAway)],
  ["trunc", one(Math.trunc)],
  ["sign", one(Math.sign)],
  ["pow", { min: 2, max: 2, f: Math.pow }],
  ["hypot", { min: 1, max: Infinity, f: Math.hypot }],
  ["min", { min: 1, max: Infinity, f: Math.min }],
  ["max", { min: 1, max: Infinity, f: Math.max }],
]);

type Kind = "number" | "name" | "op" | "(" | ")" | "," | "end";

interface Token {
  kind: Kind;
  text: string;
  pos: number;
  value?: number;
}

const NUMBER = /(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?/y;
const NAME = /[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*/y;
const OPERATOR = /\*\*|[-+*/%^]/y;
const SPACE = /\s+/y;

function bad(message: string): DistError {
  return new DistError("BAD_REQUEST", message);
}

/** A character as the error shows it: `")"`, or its code for an invisible one. */
function shown(text: string): string {
  return /^[\x21-\x7e]+$/.test(text)
    ? JSON.stringify(text)
    : `U+${text.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0")}`;
}

/**
 * Reads the text one token at a time and computes as it goes (no tree is
 * built). Tokens are read only as the grammar needs them, so the first
 * mistake from the left is the one reported.
 */
class Reader {
  #source: string;
  #pos = 0;
  #peeked: Token | undefined;
  #depth = 0;

  constructor(source: string) {
    this.#source = source;
  }

  /** The token at the read position, read now. */
  #lex(): Token {
    const source = this.#source;
    const at = (re: RegExp) => {
      re.lastIndex = this.#pos;
      return re.exec(source)?.[0];
    };
    const space = at(SPACE);
    if (space !== undefined) this.#pos += space.length;
    const pos = this.#pos;
    if (pos >= source.length) return { kind: "end", text: "", pos };
    const c = source[pos];
    let token: Token;
    let text: string | undefined;
    if ((text = at(NUMBER)) !== undefined) {
      token = { kind: "number", text, pos, value: Number(text) };
    } else if ((text = at(NAME)) !== undefined) {
      token = { kind: "name", text, pos };
    } else if ((text = at(OPERATOR)) !== undefined) {
      token = { kind: "op", text, pos };
    } else if (c === "(" || c === ")" || c === ",") {
      token = { kind: c, text: c, pos };
    } else {
      throw bad(`Unexpected ${shown(String.fromCodePoint(source.codePointAt(pos)!))} at ${pos}`);
    }
    this.#pos += token.text.length;
    return token;
  }

  get #next(): Token {
    return this.#peeked ??= this.#lex();
  }

  #take(): Token {
    const token = this.#next;
    this.#peeked = undefined;
    return token;
  }

  #unexpected(token: Token): DistError {
    return token.kind === "end"
      ? bad(`Unexpected end of expression at ${token.pos}`)
      : bad(`Unexpected ${shown(token.text)} at ${token.pos}`);
  }

  #expect(kind: Kind): Token {
    const token = this.#take();
    if (token.kind !== kind) throw this.#unexpected(token);
    return token;
  }

  /** Enters one level of nesting; past the limit, the expression is refused. */
  #enter(token: Token): void {
    if (++this.#depth > MAX_EXPRESSION_DEPTH) {
      throw bad(`Expression nested deeper than ${MAX_EXPRESSION_DEPTH} levels at ${token.pos}`);
    }
  }

  whole(): number {
    const value = this.#sum();
    if (this.#next.kind !== "end") throw this.#unexpected(this.#next);
    return value;
  }

  #sum(): number {
    let value = this.#product();
    while (this.#next.kind === "op" && (this.#next.text === "+" || this.#next.text === "-")) {
      const op = this.#take();
      const right = this.#product();
      value = finite(op.text === "+" ? value + right : value - right, op, `Result of ${op.text}`);
    }
    return value;
  }

  #product(): number {
    let value = this.#unary();
    while (this.#next.kind === "op" && "*/%".includes(this.#next.text)) {
      const op = this.#take();
      const right = this.#unary();
      if (op.text !== "*" && right === 0) throw bad(`Division by zero at ${op.pos}`);
      value = finite(
        op.text === "*" ? value * right : op.text === "/" ? value / right : value % right,
        op,
        `Result of ${op.text}`,
      );
    }
    return value;
  }

  #unary(): number {
    const token = this.#next;
    if (token.kind === "op" && (token.text === "-" || token.text === "+")) {
      this.#take();
      this.#enter(token);
      const value = this.#unary();
      this.#depth--;
      return token.text === "-" ? -value : value;
    }
    return this.#power();
  }

  #power(): number {
    const base = this.#atom();
    const op = this.#next;
    if (op.kind !== "op" || (op.text !== "^" && op.text !== "**")) return base;
    this.#take();
    this.#enter(op);
    const exponent = this.#unary(); // right-associative: 2^3^2 = 2^9
    this.#depth--;
    return finite(base ** exponent, op, `Result of ${op.text}`);
  }

  #atom(): number {
    const token = this.#take();
    switch (token.kind) {
      case "number":
        return finite(token.value!, token);
      case "(": {
        this.#enter(token);
        const value = this.#sum();
        this.#expect(")");
        this.#depth--;
        return value;
      }
      case "name":
        return this.#name(token);
      default:
        throw this.#unexpected(token);
    }
  }

  #name(token: Token): number {
    const name = token.text.startsWith("math.") ? token.text.slice(5) : token.text;
    const fn = FUNCTIONS.get(name);
    const constant = CONSTANTS.get(name);
    if (fn === undefined && constant === undefined) {
      const hint = didYouMean(name, [...CONSTANTS.keys(), ...FUNCTIONS.keys()]);
      throw bad(
        `Unknown name ${JSON.stringify(token.text)} at ${token.pos}` +
          (hint !== "" ? hint : ` (names: ${[...CONSTANTS.keys()].join(", ")}; functions: ` +
            `${[...FUNCTIONS.keys()].join(", ")})`),
      );
    }
    const called = this.#next.kind === "(";
    if (constant !== undefined) {
      if (called) throw bad(`${name} is a constant, not a function, at ${token.pos}`);
      return constant;
    }
    if (!called) throw bad(`${name} is a function: write ${name}(…) at ${token.pos}`);
    const open = this.#take();
    this.#enter(open);
    const args = [this.#sum()];
    while (this.#next.kind === ",") {
      this.#take();
      args.push(this.#sum());
    }
    this.#expect(")");
    this.#depth--;
    const { min, max, f } = fn!;
    if (args.length < min || args.length > max) {
      const wanted = min === max
        ? `${min}`
        : max === Infinity
        ? `at least ${min}`
        : `${min} or ${max}`;
      throw bad(
        `${name} takes ${wanted} argument${
          wanted === "1" ? "" : "s"
        }, got ${args.length}, at ${token.pos}`,
      );
    }
    return finite(f(...args), token, `${name}(${args.join(", ")})`);
  }
}

/** A value checked at the token that made it: NaN and ±Infinity are refused where they arise. */
function finite(value: number, token: Token, what = token.text): number {
  if (Number.isFinite(value)) return value;
  throw bad(`${what} at ${token.pos} is ${Number.isNaN(value) ? "not a number" : "out of range"}`);
}

/**
 * Computes an arithmetic expression (`2*pi`, `sqrt(2)^2`, `-2^2`).
 * @throws {DistError} BAD_REQUEST with the position (0-based) of what is wrong:
 *   `Unexpected ")" at 7`, an unknown name, too long or too deep, a result
 *   that is not a finite number.
 */
export function evaluate(source: string): number {
  if (source.length > MAX_EXPRESSION_LENGTH) {
    throw bad(
      `Expression of ${source.length} characters: at most ${MAX_EXPRESSION_LENGTH} are accepted`,
    );
  }
  if (source.trim() === "") throw bad("Empty expression");
  return new Reader(source).whole();
}
