/**
 * The operations' arithmetic, shared by the server and the worker roles
 * (their params are checked by the ops contract of clients/contracts/), and
 * the parser that turns a command line such as `add 3 4` into a request.
 */
import { didYouMean } from "../config/mod.ts";
import { DistError, parseJson, type ServiceHandlers } from "../wire/mod.ts";
import { ops } from "../clients/contracts/mod.ts";
import { evaluate } from "./expression.ts";

/** A result no codec can carry (1e308 + 1e308) is the caller's problem, said plainly. */
function finite(result: number): number {
  if (!Number.isFinite(result)) {
    throw new DistError("BAD_REQUEST", `Result out of range: ${result}`);
  }
  return result;
}

/** The operations, by method name: params checked by the contract, results plain values. */
export const OPERATIONS: ServiceHandlers<[typeof ops]> = {
  echo: (p) => p.text,
  add: (p) => finite(p.a + p.b),
  sub: (p) => finite(p.a - p.b),
  mul: (p) => finite(p.a * p.b),
  div: (p) => {
    if (p.b === 0) throw new DistError("BAD_REQUEST", "Division by zero");
    return finite(p.a / p.b);
  },
  sum: (p) => finite(p.values.reduce((total, v) => total + v, 0)),
  sleep: (p) => new Promise((resolve) => setTimeout(() => resolve(p.ms), p.ms)),
  eval: (p) => evaluate(p.expr),
};

/** The operation names a user may type, with the lab's Italian aliases. */
const NAMES = [...Object.keys(ops.methods), ...Object.keys(ops.aliases)];
const ALIASES = ops.aliases;

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
  const whole = rest.length > 0 && Object.hasOwn(ops.methods, method)
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
  const hint = method.includes(".") ? "" : didYouMean(method, NAMES);
  if (hint !== "") throw new DistError("BAD_REQUEST", `Unknown operation "${method}"${hint}`);
  if (rest.length === 0) return { method };
  const text = rest.join(" ");
  try {
    return { method, params: parseJson(text) };
  } catch {
    const known = Object.keys(ops.methods).join(", ");
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
    const params = parseJson(word);
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
