/**
 * What the broker core checks of its inputs and what a value costs: a
 * published value (any codec's, before it is kept or delivered), a queue
 * group's name, a subscriber's policy.
 */
import { describe, DistError, jsonSize, toMsgpack } from "../../wire/mod.ts";
import { EncodedValue, POLICIES, type Policy } from "./subscriber.ts";
import { RawJson, RawMsgpack } from "./raw_json.ts";

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

/**
 * Whether a kept value has run out (an MQTT 5 Message Expiry, ms since the
 * epoch, on an MQTT payload): it goes to no subscriber, of any kind, and is
 * not read back from a data file (hostile review 37 K3: MQTT 3.1.1 and native
 * subscribers still got it).
 */
export function expiredValue(value: unknown, now = Date.now()): boolean {
  if (!(value instanceof EncodedValue)) return false;
  const at = (value as { expiresAt?: unknown }).expiresAt;
  return typeof at === "number" && at >= 0 && at < now;
}

/**
 * Expired retained values passed over at subscribe, process-wide (MQTT's
 * `expired` counts them: a broker is one per process).
 */
export const expiredRetained = { count: 0 };

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
 * @returns whether it holds binary or a date (which only MessagePack carries as such)
 * @throws {DistError} BAD_REQUEST
 */
export function checkValue(value: unknown): boolean {
  switch (typeof value) {
    case "string":
      if (!value.isWellFormed()) throw badValue("text with a lone surrogate (no UTF-8 form)");
      return false;
    case "number":
      if (!Number.isFinite(value)) throw badValue(`${value} is not a finite number`);
      return false;
    case "boolean":
      return false;
    case "object":
      break;
    default:
      throw badValue(`a ${typeof value} is not a JSON value`);
  }
  if (value === null) return false;
  if (value instanceof Uint8Array) return true;
  let binary = false;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) if (checkValue(value[i])) binary = true;
    return binary;
  }
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) throw badValue("a time outside the range of dates");
    return true;
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) {
    throw badValue(`${describe(value)} is not a JSON value`);
  }
  for (const key in value) {
    if (!key.isWellFormed()) throw badValue("a key with a lone surrogate (no UTF-8 form)");
    if (checkValue((value as Record<string, unknown>)[key])) binary = true;
  }
  return binary;
}

/**
 * The form a value is kept in for long (a retained value): its encoding,
 * made once, counted by its bytes and never decoded in place (a decoded
 * `[{},{},…]` takes some 20 times its text: hostile34 Z3a). An encoded
 * value as its detached form; a number or boolean as itself; anything else
 * as MessagePack when `msgpack` (it came in MessagePack, or holds binary or
 * a date: see checkValue) and as its JSON text otherwise.
 * Precondition: `value` passed checkValue.
 */
export function keptForm(value: unknown, msgpack: boolean): unknown {
  if (value instanceof EncodedValue) return value.detach();
  switch (typeof value) {
    case "number":
    case "boolean":
    case "undefined":
      return value;
  }
  if (value === null) return value;
  return msgpack ? RawMsgpack.kept(toMsgpack(value)) : RawJson.fromText(JSON.stringify(value));
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
