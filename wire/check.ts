/**
 * Parsers of untrusted values: what a peer sends is checked here before
 * anything uses it, on both sides (a request's params where it is served, a
 * result where it was called). A {@link Parse} returns the value typed or
 * throws a BAD_REQUEST naming the field; the combinators build the parsers
 * of the contracts (clients/contracts/) out of a few leaves.
 */
import { describe, DistError } from "./errors.ts";

/**
 * Checks an untrusted value and returns it typed.
 * @param field the name of the value in messages (`"port" must be …`)
 * @throws {DistError} BAD_REQUEST naming the field
 */
export type Parse<T> = (value: unknown, field?: string) => T;

/** The type a parser returns. */
export type Parsed<P> = P extends Parse<infer T> ? T : never;

/** `"field" must be WHAT, got VALUE`, a BAD_REQUEST. */
export function mustBe(field: string | undefined, what: string, value: unknown): DistError {
  const name = field === undefined ? "Value" : `"${field}"`;
  return new DistError("BAD_REQUEST", `${name} must be ${what}, got ${describe(value)}`);
}

/** Any string. */
export const str: Parse<string> = (v, field): string => {
  if (typeof v !== "string") throw mustBe(field, "a string", v);
  return v;
};

/** A string of 1 to `max` UTF-16 units. */
export function text(max: number): Parse<string> {
  return (v, field) => {
    if (typeof v !== "string" || v.length === 0 || v.length > max) {
      throw mustBe(field, `a string of 1 to ${max} characters`, v);
    }
    return v;
  };
}

/** true or false. */
export const bool: Parse<boolean> = (v, field): boolean => {
  if (typeof v !== "boolean") throw mustBe(field, "true or false", v);
  return v;
};

/** An integer in [min, max]. */
export function int(min: number, max: number): Parse<number> {
  return (v, field) => {
    if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
      throw mustBe(field, `an integer ${min}-${max}`, v);
    }
    return v;
  };
}

/** A non-negative safe integer (counters, sizes, times in ms). */
export const count: Parse<number> = int(0, Number.MAX_SAFE_INTEGER);

/** A finite number. */
export const finite: Parse<number> = (v, field): number => {
  if (typeof v !== "number" || !Number.isFinite(v)) throw mustBe(field, "a finite number", v);
  return v;
};

/** Anything: the codec has refused what no codec carries (a published value, a pass-through). */
export const any: Parse<unknown> = (v): unknown => v;

/** Nothing in particular: params of a method that takes none (any given are ignored). */
export const none: Parse<undefined> = (): undefined => undefined;

/** A plain object (not null, not an array), its members unchecked. */
export const record: Parse<Record<string, unknown>> = (v, field): Record<string, unknown> => {
  if (v === null || typeof v !== "object" || Array.isArray(v)) throw mustBe(field, "an object", v);
  return v as Record<string, unknown>;
};

/** Exactly `l` (`{pong: true}`, `{removed: true}`). */
export function literal<const L extends string | number | boolean>(l: L): Parse<L> {
  return (v, field) => {
    if (v !== l) throw mustBe(field, JSON.stringify(l), v);
    return l;
  };
}

/** One of `choices`. */
export function oneOf<const C extends readonly string[]>(choices: C): Parse<C[number]> {
  return (v, field) => {
    if (typeof v !== "string" || !choices.includes(v)) {
      throw mustBe(field, `one of ${choices.join(", ")}`, v);
    }
    return v as C[number];
  };
}

/** An array of at most `max` items, each parsed (named `field[i]` in messages). */
export function arrayOf<T>(item: Parse<T>, max: number): Parse<T[]> {
  return (v, field) => {
    if (!Array.isArray(v) || v.length > max) throw mustBe(field, `an array of at most ${max}`, v);
    let out: T[] | undefined;
    for (let i = 0; i < v.length; i++) {
      const x = item(v[i], `${field ?? "value"}[${i}]`);
      if (x !== v[i]) (out ??= v.slice())[i] = x;
    }
    return (out ?? v) as T[];
  };
}

/** An optional field of {@link obj}: absent or null is undefined. */
export interface Optional<T> {
  /** The field's parser, when the field is there. */
  readonly optional: Parse<T>;
}

/** Marks a field of {@link obj} optional. */
export function opt<T>(parse: Parse<T>): Optional<T> {
  return { optional: parse };
}

/** The fields of an object parser: a parser each, or an optional one. */
export type Shape = Record<string, Parse<unknown> | Optional<unknown>>;

/** The required fields of shape S, typed. */
export type RequiredPart<S extends Shape> = {
  [K in keyof S as S[K] extends Optional<unknown> ? never : K]: S[K] extends Parse<infer T> ? T
    : never;
};
/** The optional fields of shape S, typed. */
export type OptionalPart<S extends Shape> = {
  [K in keyof S as S[K] extends Optional<unknown> ? K : never]?: S[K] extends Optional<infer T> ? T
    : never;
};
/** T with its intersections merged (for readable types). */
export type Flat<T> = { [K in keyof T]: T[K] };
/** The type an object parser of shape S returns. */
export type ObjectOf<S extends Shape> = Flat<RequiredPart<S> & OptionalPart<S>>;

/** How {@link obj} reads its input besides the shape. */
export interface ObjectOptions {
  /** A positional array is read in the order of the shape (DESIGN: params may be one). */
  positional?: boolean;
  /** Also takes undefined and null (as `{}`): a method whose params may be left out. */
  omittable?: boolean;
  /** The message when the value is not an object (default: `"field" must be an object`). */
  notObject?: (value: unknown, field: string | undefined) => string;
  /** The message when a required field is absent (default: `"key" must be …, got undefined`). */
  missing?: (key: string) => string;
}

interface Field {
  key: string;
  parse: Parse<unknown>;
  optional: boolean;
  /** A name Object.prototype has (`constructor`): read as an own member only. */
  inherited: boolean;
}

/**
 * An object with the fields of `shape`, each parsed in the shape's order
 * (so the first bad field is the one named). Members not in the shape are
 * kept as they are, unchecked and untyped: a newer peer may send more, and
 * the input object is returned without a copy unless a field changed
 * (a null optional becomes undefined, a positional array an object).
 */
export function obj<const S extends Shape>(
  shape: S,
  options: ObjectOptions = {},
): Parse<ObjectOf<S>> {
  const fields: Field[] = Object.keys(shape).map((key) => {
    const f = shape[key];
    const inherited = key in Object.prototype;
    return typeof f === "function"
      ? { key, parse: f, optional: false, inherited }
      : { key, parse: f.optional, optional: true, inherited };
  });
  const { positional, omittable, notObject, missing } = options;
  return (v, field) => {
    let src: Record<string, unknown>;
    let out: Record<string, unknown> | undefined;
    if (v !== null && typeof v === "object" && !Array.isArray(v)) {
      src = v as Record<string, unknown>;
    } else if (positional && Array.isArray(v)) {
      src = out = {};
      for (let i = 0; i < fields.length && i < v.length; i++) src[fields[i].key] = v[i];
    } else if (omittable && (v === undefined || v === null)) {
      src = out = {};
    } else {
      const message = notObject?.(v, field);
      throw message === undefined
        ? mustBe(field, "an object", v)
        : new DistError("BAD_REQUEST", message);
    }
    for (let i = 0; i < fields.length; i++) {
      const f = fields[i];
      const x = f.inherited && !Object.hasOwn(src, f.key) ? undefined : src[f.key];
      if (x === undefined || (x === null && f.optional)) {
        if (f.optional) {
          if (x === null) (out ??= { ...src })[f.key] = undefined;
          continue;
        }
        // The field's own message for a missing value, unless the shape has one.
        if (missing !== undefined) throw new DistError("BAD_REQUEST", missing(f.key));
      }
      const parsed = f.parse(x, f.key);
      if (parsed !== x) (out ??= { ...src })[f.key] = parsed;
    }
    return (out ?? src) as ObjectOf<S>;
  };
}

/** A parser that also takes undefined (and null) as undefined: an optional value alone. */
export function maybe<T>(parse: Parse<T>): Parse<T | undefined> {
  return (v, field) => (v === undefined || v === null ? undefined : parse(v, field));
}

/** A parser whose value is then checked by `test`; `what` says what it must be. */
export function refine<T>(parse: Parse<T>, test: (v: T) => boolean, what: string): Parse<T> {
  return (v, field) => {
    const x = parse(v, field);
    if (!test(x)) throw mustBe(field, what, v);
    return x;
  };
}

/** Longest topic accepted, in UTF-16 units (the broker's contract). */
export const MAX_TOPIC_LENGTH = 1024;

/**
 * The characters of {@link UNPRINTABLE_CLASS} past the C0 controls: DEL, C1,
 * the line and paragraph separators, the bidirectional controls, and the
 * invisible format characters (soft hyphen, zero-width space and joiners,
 * word joiner, BOM: `w1` + U+200B printed as `w1` beside the real one,
 * hostile46a G6).
 */
const BEYOND_C0 = "\\u007f-\\u009f\\u00ad\\u061c\\u200b-\\u200f\\u2028\\u2029" +
  "\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\ufeff";
/**
 * Characters that must never reach a terminal or a line-based reader raw:
 * C0 and C1 controls (newlines, escapes), DEL, the line and paragraph
 * separators, and the bidirectional controls (which reorder what is shown).
 */
export const UNPRINTABLE_CLASS: string = "[\\u0000-\\u001f" + BEYOND_C0 + "]";
/**
 * Those of {@link UNPRINTABLE_CLASS} that a log formatter leaves as they are
 * (it escapes C0 controls in values; a line ends with its own newline).
 */
export const UNPRINTABLE_BEYOND_C0: RegExp = new RegExp("[" + BEYOND_C0 + "]", "g");
const UNPRINTABLE = new RegExp(UNPRINTABLE_CLASS);

/** Whether `text` has no character of {@link UNPRINTABLE_CLASS}. */
export function isPrintable(text: string): boolean {
  return !UNPRINTABLE.test(text);
}
