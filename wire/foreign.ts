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
 * 400 Bad Request"` (quoted text, its first line), `a TLS ClientHello`, or
 * `bytes 16 03 01 …`. Undefined when they may be dist: a length prefix
 * within `maxFrame` and a payload that starts as the JSON handshake does.
 */
export function foreignBytes(head: Uint8Array | undefined, maxFrame: number): string | undefined {
  if (head === undefined || head.length === 0 || mayBeDist(head, maxFrame)) return undefined;
  if (head.length >= 3 && head[1] === 0x03 && head[2] <= 0x04 && TLS_RECORDS[head[0]]) {
    return (head[0] === 0x16 && TLS_HANDSHAKES[head[5]]) || TLS_RECORDS[head[0]];
  }
  const text = firstLine(head);
  if (text !== undefined) return JSON.stringify(text);
  const hex = [...head.subarray(0, 8)].map((b) => b.toString(16).padStart(2, "0")).join(" ");
  return `bytes ${hex}${head.length > 8 ? " …" : ""}`;
}

/** The prefix (as far as it came) is a length within the limit, then `{`. */
function mayBeDist(head: Uint8Array, maxFrame: number): boolean {
  let len = 0;
  for (let i = 0; i < HEADER_BYTES; i++) len = len * 256 + (i < head.length ? head[i] : 0);
  if (len > maxFrame) return false;
  return head.length <= HEADER_BYTES || head[HEADER_BYTES] === OPEN_BRACE;
}

/** The first line of `head` when it is printable ASCII text, cut to QUOTED_CHARS. */
function firstLine(head: Uint8Array): string | undefined {
  let end = 0;
  while (end < head.length && head[end] !== 0x0d && head[end] !== 0x0a) {
    const c = head[end];
    if (c < 0x20 && c !== 0x09 || c > 0x7e) return undefined;
    end++;
  }
  if (end === 0) return undefined;
  const line = String.fromCharCode(...head.subarray(0, Math.min(end, QUOTED_CHARS)));
  return end > QUOTED_CHARS || end === head.length && head.length >= HEAD_BYTES ? `${line}…` : line;
}
