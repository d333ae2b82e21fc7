/**
 * The operation table shared by the server and the worker roles, and the
 * parser that turns a command line such as `add 3 4` into a request.
 */
import { didYouMean } from "../config/mod.ts";
import { describe, DistError } from "../wire/mod.ts";
import { evaluate } from "./expression.ts";

/** Longest `sleep` a request may ask for (ms). */
export const MAX_SLEEP_MS = 60_000;

type Op = (params: unknown) => unknown;

/** Reads argument `key` (object form) or position `index` (array form). */
function arg(params: unknown, key: string, index: number): unknown {
  if (Array.isArray(params)) return params[index];
  if (params !== null && typeof params === "object") {
    return (params as Record<string, unknown>)[key];
  }
  return index === 0 ? params : undefined;
}

function num(params: unknown, key: string, index: number): number {
  const v = arg(params, key, index);
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw new DistError(
      "BAD_REQUEST",
      v === undefined
        ? `Missing number "${key}"`
        : `"${key}" must be a finite number, got ${describe(v)}`,
    );
  }
  return v;
}

/** A result no codec can carry (1e308 + 1e308) is the caller's problem, said plainly. */
function finite(result: number): number {
  if (!Number.isFinite(result)) {
    throw new DistError("BAD_REQUEST", `Result out of range: ${result}`);
  }
  return result;
}

function binary(f: (a: number, b: number) => number): Op {
  return (params) => {
    const count = Array.isArray(params) ? params.length : undefined;
    if (count !== undefined && count !== 2) {
      throw new DistError("BAD_REQUEST", `Expected 2 numbers, got ${count}`);
    }
    return finite(f(num(params, "a", 0), num(params, "b", 1)));
  };
}

function sumOf(params: unknown): number {
  let values: unknown = Array.isArray(params) ? params : arg(params, "values", 0);
  if (typeof values === "string") values = values.split(",").map((s) => s.trim());
  if (!Array.isArray(values)) {
    throw new DistError("BAD_REQUEST", 'sum takes a list of numbers ("values")');
  }
  let total = 0;
  for (const v of values) {
    const n = typeof v === "string" && v !== "" ? Number(v) : v;
    if (typeof n !== "number" || !Number.isFinite(n)) {
      throw new DistError("BAD_REQUEST", `sum: not a number: ${describe(v)}`);
    }
    total += n;
  }
  return finite(total);
}

function sleep(params: unknown): Promise<number> {
  const ms = num(params, "ms", 0);
  if (ms < 0 || ms > MAX_SLEEP_MS) {
    throw new DistError("BAD_REQUEST", `sleep takes 0 to ${MAX_SLEEP_MS} ms, got ${ms}`);
  }
  return new Promise((resolve) => setTimeout(() => resolve(ms), ms));
}

function evalOf(params: unknown): number {
  const expr = arg(params, "expr", 0);
  if (typeof expr !== "string") {
    throw new DistError("BAD_REQUEST", 'eval takes an expression "expr" (text, e.g. "2*pi")');
  }
  return evaluate(expr);
}

/** The operations, by method name; results are plain values. */
export const OPERATIONS: Readonly<Record<string, Op>> = {
  echo: (params) => {
    const text = arg(params, "text", 0);
    if (typeof text !== "string") throw new DistError("BAD_REQUEST", 'echo takes a string "text"');
    return text;
  },
  add: binary((a, b) => a + b),
  sub: binary((a, b) => a - b),
  mul: binary((a, b) => a * b),
  div: binary((a, b) => {
    if (b === 0) throw new DistError("BAD_REQUEST", "Division by zero");
    return a / b;
  }),
  sum: sumOf,
  sleep,
  eval: evalOf,
};

/** The original lab's Italian names. */
export const ALIASES: Readonly<Record<string, string>> = {
  somma: "add",
  sottrazione: "sub",
  moltiplicazione: "mul",
  divisione: "div",
};

/** One line per operation, for help texts. */
export const OPERATION_HELP: readonly string[] = [
  "echo TEXT        returns TEXT",
  "add A B          A + B   (alias somma)",
  "sub A B          A - B   (alias sottrazione)",
  "mul A B          A × B   (alias moltiplicazione)",
  "div A B          A ÷ B   (alias divisione; B = 0 is an error)",
  "sum 1,2,3        the sum of a list (also: sum 1 2 3)",
  "sleep MS         waits MS milliseconds, returns MS",
  "eval EXPR        computes EXPR: 2*pi, -2^2, sqrt(2)*max(1,3) (+ - * / % ^, pi e tau,",
  "                 sqrt abs sin cos tan log ln exp floor ceil round min max ...)",
];

/**
 * Finds the operation for a method name or alias.
 * @returns undefined when there is none.
 */
export function findOperation(method: string): Op | undefined {
  return Object.hasOwn(OPERATIONS, method)
    ? OPERATIONS[method]
    : Object.hasOwn(ALIASES, method)
    ? OPERATIONS[ALIASES[method]]
    : undefined;
}

/** A request as the client sends it. */
export interface Operation {
  method: string;
  params?: unknown;
}

function parseNumber(word: string): number {
  const n = Number(word);
  if (word.trim() === "" || !Number.isFinite(n)) {
    throw new DistError("BAD_REQUEST", `Not a number: ${word}`);
  }
  return n;
}

/**
 * Turns words typed by a user (`add 3 4`, `echo hi there`, `sum 1,2,3`,
 * `sys.stats`, or `method {"json":"params"}`) into a request.
 * @throws {DistError} BAD_REQUEST naming what is wrong.
 */
export function parseOperation(words: readonly string[]): Operation {
  if (words.length === 0) throw new DistError("BAD_REQUEST", "No operation given");
  const [first, ...rest] = words;
  const method = Object.hasOwn(ALIASES, first) ? ALIASES[first] : first;
  // One JSON object (or, but for echo and eval, whose argument is text, one
  // JSON array) is the params as they are: add '{"a":3,"b":4}', sum '[1,2,3]'.
  // (In the shell, words are split at spaces: they are joined again.)
  const whole = rest.length > 0 && Object.hasOwn(OPERATIONS, method)
    ? jsonParams(rest.join(" "), method === "echo" || method === "eval")
    : undefined;
  if (whole !== undefined) return { method, params: whole };
  switch (method) {
    case "echo":
      return { method, params: { text: rest.join(" ") } };
    case "add":
    case "sub":
    case "mul":
    case "div":
      if (rest.length !== 2) {
        throw new DistError("BAD_REQUEST", `${first} takes 2 numbers, got ${rest.length}`);
      }
      return { method, params: { a: parseNumber(rest[0]), b: parseNumber(rest[1]) } };
    case "sum": {
      const values = rest.join(",").split(",").filter((s) => s.trim() !== "").map(parseNumber);
      return { method, params: { values } };
    }
    case "sleep":
      if (rest.length !== 1) throw new DistError("BAD_REQUEST", "sleep takes 1 number (ms)");
      return { method, params: { ms: parseNumber(rest[0]) } };
    case "eval":
      if (rest.length === 0) {
        throw new DistError("BAD_REQUEST", 'eval takes an expression: eval "2*pi"');
      }
      return { method, params: { expr: rest.join(" ") } };
  }
  // A word that is not an operation but close to one is a typo ("ad", "ADD"),
  // not a method to send; namespaced methods (sys.stats) are sent as typed.
  const hint = method.includes(".")
    ? ""
    : didYouMean(method, [...Object.keys(OPERATIONS), ...Object.keys(ALIASES)]);
  if (hint !== "") throw new DistError("BAD_REQUEST", `Unknown operation "${method}"${hint}`);
  if (rest.length === 0) return { method };
  const text = rest.join(" ");
  try {
    return { method, params: JSON.parse(text) };
  } catch {
    const known = Object.keys(OPERATIONS).join(", ");
    throw new DistError(
      "BAD_REQUEST",
      method.includes(".")
        ? `Parameters of ${method} must be JSON: ${text}`
        : `Unknown operation "${method}" (operations: ${known}; any other method takes JSON parameters)`,
    );
  }
}

/**
 * `word` as params when it is a JSON object (or array, unless `textual`);
 * else undefined. The argument of echo and eval is text: `echo {hi}` echoes it.
 * @throws {DistError} BAD_REQUEST for broken JSON given to a numeric operation
 */
function jsonParams(word: string, textual: boolean): unknown {
  const start = word.trimStart()[0];
  if (start !== "{" && (textual || start !== "[")) return undefined;
  try {
    const params = JSON.parse(word);
    return params !== null && typeof params === "object" ? params : undefined;
  } catch {
    if (textual) return undefined;
    throw new DistError("BAD_REQUEST", `Parameters are not valid JSON: ${word}`);
  }
}

/** A random arithmetic request, as the original lab's client made them. */
export function randomOperation(random: () => number = Math.random): Operation {
  const methods = ["add", "sub", "mul", "div", "sum"] as const;
  const method = methods[Math.floor(random() * methods.length)];
  const n = () => Math.floor(random() * 201) - 100;
  if (method === "sum") {
    return { method, params: { values: Array.from({ length: 2 + Math.floor(random() * 4) }, n) } };
  }
  const a = n();
  let b = n();
  // The random batch exercises the servers, not their error path: no b = 0 for div.
  while (method === "div" && b === 0) b = n();
  return { method, params: { a, b } };
}

/** Shows a request the way a user would type it. */
export function formatOperation(op: Operation): string {
  const p = op.params as Record<string, unknown> | undefined;
  if (p && typeof p === "object" && !Array.isArray(p)) {
    if ("a" in p && "b" in p) return `${op.method} ${p.a} ${p.b}`;
    if ("values" in p && Array.isArray(p.values)) return `${op.method} ${p.values.join(",")}`;
    if ("text" in p) return `${op.method} ${p.text}`;
    if ("ms" in p) return `${op.method} ${p.ms}`;
    if ("expr" in p) return `${op.method} ${p.expr}`;
  }
  return op.params === undefined ? op.method : `${op.method} ${JSON.stringify(op.params)}`;
}
