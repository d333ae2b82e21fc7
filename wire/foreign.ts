/**
 * Naming a peer that does not speak dist (an HTTP server or client, TLS, a
 * database) by the first bytes it sent, so a user pointed at the wrong port
 * reads `127.0.0.1:80 does not speak the dist protocol (it answered
 * "HTTP/1.1 400 Bad Request")`, not `Frame of 1213486160 bytes exceeds the limit`.
 */
import { HEADER_BYTES } from "./frame.ts";

/** Bytes of a stream's start a connection keeps for this (see FramedConn.head). */
export const HEAD_BYTES = 64;
/** Longest piece of a peer's text quoted. */
const QUOTED_CHARS = 60;
const OPEN_BRACE = 0x7b;
const TLS_RECORDS: Record<number, string> = {
  0x14: "a TLS record",
  0x15: "a TLS alert",
  0x16: "a TLS handshake",
  0x17: "TLS data",
};
const TLS_HANDSHAKES: Record<number, string> = { 1: "a TLS ClientHello", 2: "a TLS ServerHello" };

/**
 * What the stream's first bytes were, when they cannot be dist: `"HTTP/1.1
 * 400 Bad Request"` (quoted text, its first line), `a TLS ClientHello`, `a
 * frame holding "…"` or `bytes 16 03 01 …`. Undefined when they may be
 * dist: a length prefix within `maxFrame`, then what the JSON handshake
 * starts with.
 */
export function foreignBytes(head: Uint8Array | undefined, maxFrame: number): string | undefined {
  if (head === undefined || head.length === 0) return undefined;
  const fits = lengthOf(head) <= maxFrame;
  if (fits && (head.length <= HEADER_BYTES || head[HEADER_BYTES] === OPEN_BRACE)) return undefined;
  if (head.length >= 3 && head[1] === 0x03 && head[2] <= 0x04 && TLS_RECORDS[head[0]]) {
    return (head[0] === 0x16 && TLS_HANDSHAKES[head[5]]) || TLS_RECORDS[head[0]];
  }
  const more = head.length >= HEAD_BYTES;
  const text = firstLine(head, more);
  if (text !== undefined) return JSON.stringify(text);
  // A length that fits, then something other than the JSON handshake.
  const payload = fits ? firstLine(head.subarray(HEADER_BYTES), more) : undefined;
  if (payload !== undefined) return `a frame holding ${JSON.stringify(payload)}`;
  const hex = [...head.subarray(0, 8)].map((b) => b.toString(16).padStart(2, "0")).join(" ");
  return `bytes ${hex}${head.length > 8 ? " …" : ""}`;
}

/** The length prefix, as far as it came (missing bytes count as 0). */
function lengthOf(head: Uint8Array): number {
  let len = 0;
  for (let i = 0; i < HEADER_BYTES; i++) len = len * 256 + (i < head.length ? head[i] : 0);
  return len;
}

/**
 * The first line of `bytes` when it is printable ASCII text, cut to
 * QUOTED_CHARS; `more` says the bytes were cut (the peer may have sent more).
 */
function firstLine(bytes: Uint8Array, more: boolean): string | undefined {
  let end = 0;
  while (end < bytes.length && bytes[end] !== 0x0d && bytes[end] !== 0x0a) {
    const c = bytes[end];
    if (c < 0x20 && c !== 0x09 || c > 0x7e) return undefined;
    end++;
  }
  if (end === 0) return undefined;
  const line = String.fromCharCode(...bytes.subarray(0, Math.min(end, QUOTED_CHARS)));
  return end > QUOTED_CHARS || end === bytes.length && more ? `${line}…` : line;
}
