/**
 * How many bytes a decoded request takes on a backend's connection, without
 * encoding it: the dispatcher's byte shares (shares.ts) and the queue's byte
 * budget count what a request costs the connection every client shares, so
 * a value must be measured as it is sent (hostile33 Y9: strings counted by
 * their length let 2 × 32,000 U+0001, 384 KB of JSON, pass for 64 KB and a
 * "small" request).
 */
import { jsonStringBytes } from "../../wire/mod.ts";

/**
 * The encoded size of a decoded value in bytes as JSON (strings as
 * JSON.stringify and UTF-8 write them, numbers at their longest for large
 * ones), or any number above `limit` once it is past it: the walk stops
 * there, so a large value costs no more to refuse than `limit`.
 */
export function sizeOfValue(value: unknown, limit: number): number {
  let total = 0;
  const stack: unknown[] = [value];
  while (stack.length > 0 && total <= limit) {
    const v = stack.pop();
    if (typeof v === "string") total += jsonStringBytes(v, limit - total);
    else if (typeof v === "number") total += Math.abs(v) < 10_000 ? 6 : 24;
    else if (v === null || typeof v !== "object") total += 5;
    else if (ArrayBuffer.isView(v)) total += v.byteLength;
    else if (Array.isArray(v)) {
      total += 2 + v.length;
      for (let i = 0; i < v.length && total <= limit; i++) stack.push(v[i]);
    } else {
      total += 2;
      for (const key in v) {
        if (total > limit) break;
        total += jsonStringBytes(key, limit - total) + 1;
        stack.push((v as Record<string, unknown>)[key]);
      }
    }
  }
  return total;
}
