/**
 * `__proto__` as a map key in MessagePack (hostile35 H8). It is a legal
 * JSON key, and JSON.parse makes it an own property of a plain object
 * (nothing's prototype changes); @msgpack/msgpack's decoder refuses it
 * instead, with no option to do otherwise, so a JSON value with one (kept
 * as MessagePack by the broker, json_to_msgpack.ts) was lost for every
 * MessagePack subscriber. The codec decodes such a payload again, rarely,
 * with a decoder that reads the key as {@link PROTO_KEY}, and
 * {@link withProtoKeys} then makes it an own `__proto__` property, as
 * JSON.parse does: the value equals JSON's, and no prototype is set.
 */

/**
 * What the second decoder reads a `__proto__` map key as: no decoded string
 * can be it (a lone surrogate has no UTF-8 form, and the codec decodes
 * strictly), and the library refuses only `__proto__` itself.
 */
export const PROTO_KEY = "\uD800__proto__";

/** Whether `err` is the library's refusal of a `__proto__` key. */
export function isProtoRefusal(err: unknown): boolean {
  return err instanceof Error && err.message.includes("__proto__");
}

/**
 * `value` with each PROTO_KEY member of its plain objects (at any depth) an
 * own `__proto__` property, in its place among the members.
 */
export function withProtoKeys(value: unknown): unknown {
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = withProtoKeys(value[i]);
    return value;
  }
  if (
    value === null || typeof value !== "object" || Object.getPrototypeOf(value) !== Object.prototype
  ) {
    return value;
  }
  const map = value as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(map)) {
    const member = withProtoKeys(map[key]);
    if (key === PROTO_KEY) {
      Object.defineProperty(out, "__proto__", {
        value: member,
        writable: true,
        enumerable: true,
        configurable: true,
      });
    } else out[key] = member;
  }
  return out;
}
