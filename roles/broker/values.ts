/**
 * What the broker core checks of its inputs and what a value costs: a
 * published value (any codec's, before it is kept or delivered), a queue
 * group's name, a subscriber's policy.
 */
import { describe, DistError, jsonSize } from "../../wire/mod.ts";
import { EncodedValue, POLICIES, type Policy } from "./subscriber.ts";

/** Longest queue group name. */
const MAX_GROUP_LENGTH = 256;

/**
 * What a value costs in the retained store: about its size as JSON text
 * (a string counts its length: a byte per character, as V8 keeps most
 * strings, and O(1) on every publish), a binary its bytes. Never through
 * JSON.stringify, which writes a Uint8Array as `{"0":…}` (11 times its
 * size, some 600 ms per MiB): a walk of the value (bounded by its frame).
 */
export function valueBytes(value: unknown): number {
  if (value instanceof EncodedValue) return value.byteLength;
  switch (typeof value) {
    case "string":
      return value.length + 2;
    case "number":
    case "boolean":
      return 8;
    case "object":
      if (value === null) return 4;
      if (ArrayBuffer.isView(value)) return value.byteLength;
      try {
        return jsonSize(value);
      } catch {
        return 0; // deeper than any decoder builds: counted by its key alone
      }
    default:
      return 4;
  }
}

function badValue(why: string): DistError {
  return new DistError("BAD_REQUEST", `Invalid value: ${why}`);
}

/**
 * Refuses a value that some subscriber would get wrong, whichever codec it
 * speaks: NaN or ±Infinity (JSON has no such number and would read null),
 * an invalid Date (null, or 1970), text with a lone surrogate (no UTF-8
 * form: a MessagePack subscriber's decoder refuses it), and anything that
 * is not a JSON value, binary or a Date. Values come from a decoder, so
 * their depth is bounded already.
 * @throws {DistError} BAD_REQUEST
 */
export function checkValue(value: unknown): void {
  switch (typeof value) {
    case "string":
      if (!value.isWellFormed()) throw badValue("text with a lone surrogate (no UTF-8 form)");
      return;
    case "number":
      if (!Number.isFinite(value)) throw badValue(`${value} is not a finite number`);
      return;
    case "boolean":
      return;
    case "object":
      break;
    default:
      throw badValue(`a ${typeof value} is not a JSON value`);
  }
  if (value === null || value instanceof Uint8Array) return;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) checkValue(value[i]);
    return;
  }
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) throw badValue("a time outside the range of dates");
    return;
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) {
    throw badValue(`${describe(value)} is not a JSON value`);
  }
  for (const key in value) {
    if (!key.isWellFormed()) throw badValue("a key with a lone surrogate (no UTF-8 form)");
    checkValue((value as Record<string, unknown>)[key]);
  }
}

export function checkGroup(group: unknown): string | undefined {
  if (group === undefined || group === null) return undefined;
  if (typeof group !== "string" || group === "" || group.length > MAX_GROUP_LENGTH) {
    throw new DistError(
      "BAD_REQUEST",
      `A group must be a non-empty string of at most ${MAX_GROUP_LENGTH} characters, not ${
        describe(group)
      }`,
    );
  }
  return group;
}

export function checkPolicy(policy: unknown): Policy {
  if (policy === undefined || policy === null) return "disconnect";
  if (typeof policy === "string" && (POLICIES as readonly string[]).includes(policy)) {
    return policy as Policy;
  }
  throw new DistError(
    "BAD_REQUEST",
    `Unknown policy ${describe(policy)}: expected one of ${POLICIES.join(", ")}`,
  );
}
