/**
 * How many bytes a decoded request takes on a backend's connection, without
 * encoding it: the dispatcher's byte shares (shares.ts) and the queue's byte
 * budget count what a request costs the connection every client shares, so
 * a value must be measured as it is sent (hostile33 Y9: strings counted by
 * their length let 2 × 32,000 U+0001, 384 KB of JSON, pass for 64 KB and a
 * "small" request).
 */

/**
 * The bytes of `text` as a JSON string without its quotes, as JSON.stringify
 * writes it and UTF-8 encodes it (an upper bound for MessagePack, which
 * writes strings as UTF-8), or any number above `limit` once past it: the
 * scan stops there.
 */
export function jsonStringBytes(text: string, limit: number): number {
  let n = 0;
  for (let i = 0; i < text.length && n <= limit; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20) {
      // \b \t \n \f \r are two bytes; the other controls \u00XX, six.
      n += c === 8 || c === 9 || c === 10 || c === 12 || c === 13 ? 2 : 6;
    } else if (c < 0x80) n += c === 0x22 || c === 0x5c ? 2 : 1;
    else if (c < 0x800) n += 2;
    else if ((c & 0xfc00) === 0xd800 && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4; // a surrogate pair: one 4-byte character
      i++;
    } else if ((c & 0xf800) === 0xd800) n += 6; // a lone surrogate: \uDXXX
    else n += 3;
  }
  return n;
}

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
    if (typeof v === "string") total += jsonStringBytes(v, limit - total) + 2;
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
        total += jsonStringBytes(key, limit - total) + 3;
        stack.push((v as Record<string, unknown>)[key]);
      }
    }
  }
  return total;
}
