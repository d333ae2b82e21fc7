/**
 * How many bytes a decoded request takes on a backend's connection, without
 * encoding it: the dispatcher's byte shares (shares.ts) and the queue's byte
 * budget count what a request costs the connection every client shares, so
 * a value must be measured as it is sent (hostile33 Y9: strings counted by
 * their length let 2 × 32,000 U+0001, 384 KB of JSON, pass for 64 KB and a
 * "small" request).
 */
import { jsonStringBytes, msgpackCodec, toMsgpack } from "../../wire/mod.ts";

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

/**
 * Params above this many bytes (as sizeOfValue counts them) are held as
 * bytes while their request waits or is on a backend; smaller ones stay
 * objects (the queue's count bounds how many).
 */
const HOLD_ABOVE = 256;

/** A decoded request's params and what they take, for {@link holdParams}. */
export interface HeldParams {
  params: unknown;
  /** The params as MessagePack (lossless for every value either codec carries), once held. */
  held?: Uint8Array;
  /** What the request counts in the byte bounds, once measured. */
  size?: number;
}

/**
 * Measures a decoded request once, when admitted, and holds its params as
 * MessagePack bytes (dropping the object) when they are large: a decoded
 * value takes 16–25× its wire bytes as objects (hostile34 Z7: 300,000 empty
 * maps, 300 KB, held ~20 MB). It counts the larger of its size on a JSON
 * backend's connection (Y9) and the bytes held. @returns that count
 * @throws {DistError} BAD_REQUEST when the params cannot be encoded
 */
export function holdParams(job: HeldParams, method: string): number {
  if (job.size !== undefined) return job.size;
  const sent = method.length + sizeOfValue(job.params, Infinity);
  if (sent <= HOLD_ABOVE) return job.size = sent;
  const held = job.held = toMsgpack(job.params);
  job.params = undefined;
  return job.size = Math.max(sent, method.length + held.length);
}

/** The params of a request held by {@link holdParams}, decoded again (for its send). */
export function heldParams(job: HeldParams): unknown {
  return job.held === undefined ? job.params : msgpackCodec.decode(job.held);
}
