/**
 * The operations a server and a worker answer (`echo`, `add` … `sleep`, `eval`),
 * and the lab's Italian aliases. Params are an object (`{a, b}`), a
 * positional array (`[3, 4]`) or, for a one-argument operation, the bare
 * value (`"hi"`); each parser reads all three.
 */
import { describe, DistError } from "../../wire/errors.ts";
import { finite, type Parse, str } from "../../wire/check.ts";
import { type Contract, type Method, method } from "../../wire/contract.ts";

/** Longest `sleep` a request may ask for (ms). */
export const MAX_SLEEP_MS = 60_000;

/** Params of `add`, `sub`, `mul`, `div`. */
export interface Operands {
  /** The first operand. */
  a: number;
  /** The second operand. */
  b: number;
}

/** Reads argument `key` (object form), position `index` (array form) or the bare value. */
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

const echoParams: Parse<{ text: string }> = (params) => {
  // The object form is the common one (and the benchmark's): taken as it is.
  if (params !== null && typeof params === "object" && !Array.isArray(params)) {
    if (typeof (params as { text?: unknown }).text === "string") return params as { text: string };
  }
  const text = arg(params, "text", 0);
  if (typeof text !== "string") throw new DistError("BAD_REQUEST", 'echo takes a string "text"');
  return { text };
};

const operands: Parse<Operands> = (params) => {
  if (Array.isArray(params) && params.length !== 2) {
    throw new DistError("BAD_REQUEST", `Expected 2 numbers, got ${params.length}`);
  }
  return { a: num(params, "a", 0), b: num(params, "b", 1) };
};

const sumParams: Parse<{ values: number[] }> = (params) => {
  let values: unknown = Array.isArray(params) ? params : arg(params, "values", 0);
  if (typeof values === "string") values = values.split(",").map((s) => s.trim());
  if (!Array.isArray(values)) {
    throw new DistError("BAD_REQUEST", 'sum takes a list of numbers ("values")');
  }
  return {
    values: values.map((v) => {
      const n = typeof v === "string" && v !== "" ? Number(v) : v;
      if (typeof n !== "number" || !Number.isFinite(n)) {
        throw new DistError("BAD_REQUEST", `sum: not a number: ${describe(v)}`);
      }
      return n;
    }),
  };
};

const sleepParams: Parse<{ ms: number }> = (params) => {
  const ms = num(params, "ms", 0);
  if (ms < 0 || ms > MAX_SLEEP_MS) {
    throw new DistError("BAD_REQUEST", `sleep takes 0 to ${MAX_SLEEP_MS} ms, got ${ms}`);
  }
  return { ms };
};

const evalParams: Parse<{ expr: string }> = (params) => {
  const expr = arg(params, "expr", 0);
  if (typeof expr !== "string") {
    throw new DistError("BAD_REQUEST", 'eval takes an expression "expr" (text, e.g. "2*pi")');
  }
  return { expr };
};

const BAD = ["BAD_REQUEST"] as const;
/** An operation on two numbers. */
export type Arithmetic<N extends string> = Method<N, Operands, number>;

/** The operations of a server or a worker. */
export interface OpsContract extends Contract {
  /** The service's name. */
  readonly service: "ops";
  /** Its methods, by short name. */
  readonly methods: {
    /** Returns `text`. */
    readonly echo: Method<"echo", { text: string }, string>;
    /** a + b (alias `somma`). */
    readonly add: Arithmetic<"add">;
    /** a - b (alias `sottrazione`). */
    readonly sub: Arithmetic<"sub">;
    /** a × b (alias `moltiplicazione`). */
    readonly mul: Arithmetic<"mul">;
    /** a ÷ b (alias `divisione`); b = 0 is BAD_REQUEST. */
    readonly div: Arithmetic<"div">;
    /** The sum of a list (or of a comma string: `"1,2,3"`). */
    readonly sum: Method<"sum", { values: number[] }, number>;
    /** Waits `ms` (at most MAX_SLEEP_MS), returns it: for load tests. */
    readonly sleep: Method<"sleep", { ms: number }, number>;
    /** Computes an expression (`2*pi`, `sqrt(2)*max(1,3)`); a bad one is BAD_REQUEST. */
    readonly eval: Method<"eval", { expr: string }, number>;
  };
  /** It sends no events. */
  readonly events: Record<never, never>;
  /** The lab's Italian names: `somma` is `add`. */
  readonly aliases: Readonly<Record<string, string>>;
}

const arithmetic = <const N extends string>(name: N): Arithmetic<N> =>
  method(name, { params: operands, result: finite, errors: BAD });

/** The operations, shared by `dist server` and `dist worker`. */
export const ops: OpsContract = {
  service: "ops",
  prefix: "",
  methods: {
    echo: method("echo", { params: echoParams, result: str, errors: BAD }),
    add: arithmetic("add"),
    sub: arithmetic("sub"),
    mul: arithmetic("mul"),
    div: arithmetic("div"),
    sum: method("sum", { params: sumParams, result: finite, errors: BAD }),
    sleep: method("sleep", { params: sleepParams, result: finite, errors: BAD }),
    eval: method("eval", { params: evalParams, result: finite, errors: BAD }),
  },
  events: {},
  aliases: { somma: "add", sottrazione: "sub", moltiplicazione: "mul", divisione: "div" },
};
