/**
 * MQTT packets written byte by byte, for tests and benchmarks that send
 * what a client library would not (or must not depend on one): MQTT's
 * variable byte integer, its two-byte-length strings, and a packet of a
 * first byte and a body.
 */

const encoder = new TextEncoder();

/** A variable byte integer (MQTT's remaining and property lengths). */
export function varint(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

/** An MQTT UTF-8 string: two-byte length, then its bytes. */
export function str(s: string): number[] {
  const b = encoder.encode(s);
  return [b.length >> 8, b.length & 0xff, ...b];
}

/** A packet: its first byte, the remaining length, the body. */
export function packet(first: number, body: number[]): Uint8Array {
  return Uint8Array.from([first, ...varint(body.length), ...body]);
}
