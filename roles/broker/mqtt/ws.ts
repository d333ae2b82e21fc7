/**
 * MQTT over WebSocket (`--mqtt-ws-port`, MQTT 5 §6): a WebSocket server
 * (RFC 6455) on an accepted socket, so a WebSocket client is an MQTT
 * connection like any other: same packets, limits, sessions and counters.
 *
 * The front end accepts the WebSocket port's sockets in the same loop and
 * slots as the TCP port's (front.ts): a connection counts in
 * `--max-connections` from its accept (at the limit one more closes the
 * oldest connection without CONNACK, or is answered 503 when none is), its TLS
 * handshake, HTTP upgrade and CONNECT share the one CONNECT deadline (10 s),
 * and an accept failure (out of descriptors) is retried after a pause
 * without touching the connections already open. (It was `Deno.serve`,
 * which bounds neither the requests still sending their header nor their
 * time, and whose restart after an accept failure closed every upgraded
 * socket: hostile30 H3.)
 *
 * {@link WsStream} is the byte stream the MQTT connection reads and writes:
 * its first read takes the HTTP upgrade (a request offering the `mqtt`
 * subprotocol, or 3.1's `mqttv3.1`, on any path: else 426 or 400 and the
 * end); then reads hand over the payload of binary frames (unmasked in
 * place, straight into the reader's buffer; packets may span frames and a
 * frame may hold several), answer pings, and end at a close frame; a text
 * frame or a protocol error closes the connection (§6.0). Writes are single
 * unmasked binary frames, written whole. Frames are written by hand: the
 * npm framing libraries (`ws`'s Receiver and Sender, `websocket-driver`)
 * are Node streams over a Node socket, where this has a `Deno.Conn` and
 * wants the payload read into the caller's buffer without a copy.
 */
import { createHash } from "node:crypto";
import { parseHead } from "../../../obs/http_conn.ts";

/** Subprotocols spoken: MQTT 3.1.1 and 5, and 3.1's name. */
const SUBPROTOCOLS = ["mqtt", "mqttv3.1"];
/** Largest request header taken. */
const MAX_HEADER_BYTES = 16 * 1024;
/** The buffer frame headers (and control frames) are read into. */
const SCRATCH_BYTES = 4096;
const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const encoder = new TextEncoder();

const OP_CONTINUATION = 0;
const OP_TEXT = 1;
const OP_BINARY = 2;
const OP_CLOSE = 8;
const OP_PING = 9;
const OP_PONG = 10;

/** The answer to a connection refused before its request is read (over `--max-connections`). */
export const BUSY_RESPONSE = encoder.encode(
  "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 21\r\n" +
    "retry-after: 5\r\nconnection: close\r\n\r\nToo many connections\n",
);

/** A WebSocket as the byte stream an MQTT connection reads and writes (Deno.Conn's part of it). */
export class WsStream {
  readonly #conn: Deno.Conn;
  /** Bytes read from the socket and not yet parsed (a view into #scratch, or the header buffer). */
  #rest: Uint8Array = new Uint8Array(0);
  #scratch: Uint8Array | undefined;
  #open = false;
  #ended = false;
  /** Payload bytes left in the data frame being read, and its mask and offset into it. */
  #left = 0;
  #mask = new Uint8Array(4);
  #maskAt = 0;
  /** Within a fragmented binary message (its continuations may follow). */
  #inMessage = false;
  /** One write at a time: a pong must not land inside a data frame. */
  #writing: Promise<unknown> = Promise.resolve();
  /** A pong is on its way (queued or being written). */
  #ponging = false;
  /** The latest ping's payload that came meanwhile: answered once that pong is out. */
  #pingWaiting: Uint8Array | undefined;
  /** Settles once the pong on its way is out (or failed). */
  #pongOut: Promise<void> = Promise.resolve();
  /** The payload of the last ping sent, and what its pong calls (see ping). */
  #pinged: Uint8Array | undefined;
  #onPong: (() => void) | undefined;

  constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }

  get remoteAddr(): Deno.Addr {
    return this.#conn.remoteAddr;
  }

  /** Its socket's own address: with remoteAddr, how a queue group finds the socket (send_queue.ts). */
  get localAddr(): Deno.Addr {
    return this.#conn.localAddr;
  }

  /** Payload bytes into `buf`; null at the end (a close frame, the peer gone, a refusal). */
  async read(buf: Uint8Array): Promise<number | null> {
    if (!this.#open && !(await this.#upgrade())) return this.#end();
    while (!this.#ended) {
      if (this.#left > 0) {
        let n: number;
        if (this.#rest.length > 0) {
          n = Math.min(this.#left, buf.length, this.#rest.length);
          buf.set(this.#rest.subarray(0, n));
          this.#rest = this.#rest.subarray(n);
        } else {
          const got = await this.#conn.read(buf.subarray(0, Math.min(this.#left, buf.length)));
          if (got === null) return this.#end();
          n = got;
        }
        this.#unmask(buf, n);
        this.#left -= n;
        return n;
      }
      const frame = this.#frame();
      // A ping waits behind a pong not yet out: nothing more is read until it is (a client
      // that sends pings and reads nothing stops itself, not the broker).
      if (this.#pingWaiting !== undefined) await this.#pongOut;
      if (frame === "more") {
        if (!(await this.#fill())) return this.#end();
      } else if (typeof frame === "number") {
        await this.#fail(frame);
      }
    }
    return null;
  }

  /** Sends `bytes` as one binary frame, whole. */
  write(bytes: Uint8Array): Promise<number> {
    if (this.#ended) return Promise.reject(new Deno.errors.BrokenPipe("WebSocket closed"));
    const n = bytes.length;
    const head = n < 126 ? 2 : n < 65536 ? 4 : 10;
    const frame = new Uint8Array(head + n);
    frame[0] = 0x80 | OP_BINARY;
    if (n < 126) frame[1] = n;
    else if (n < 65536) {
      frame[1] = 126;
      frame[2] = n >> 8;
      frame[3] = n & 255;
    } else {
      frame[1] = 127;
      new DataView(frame.buffer).setBigUint64(2, BigInt(n));
    }
    frame.set(bytes, head);
    return this.#send(frame).then(() => n);
  }

  /**
   * Sends a ping with `payload` behind every write so far, and calls
   * `onPong` once a pong echoes it: its client read all before it (a queue
   * group's proof: ../group_proof.ts). A later ping replaces it.
   */
  ping(payload: Uint8Array, onPong: () => void): void {
    if (this.#ended) return;
    this.#pinged = payload;
    this.#onPong = onPong;
    this.#send(controlFrame(OP_PING, payload)).catch(() => {});
  }

  close(): void {
    this.#ended = true;
    try {
      this.#conn.close();
    } catch {
      // Closed already.
    }
  }

  #end(): null {
    this.#ended = true;
    return null;
  }

  /** Writes `bytes` whole, after the writes before it. */
  #send(bytes: Uint8Array): Promise<void> {
    const done = this.#writing.then(async () => {
      let off = 0;
      while (off < bytes.length) off += await this.#conn.write(bytes.subarray(off));
    });
    this.#writing = done.catch(() => {});
    return done;
  }

  /** Reads more from the socket after what is left unparsed. @returns false at its end */
  async #fill(): Promise<boolean> {
    const scratch = this.#scratch ??= new Uint8Array(SCRATCH_BYTES);
    if (this.#rest.length > 0 && this.#rest.buffer === scratch.buffer) {
      scratch.copyWithin(0, this.#rest.byteOffset, this.#rest.byteOffset + this.#rest.length);
    } else {
      scratch.set(this.#rest); // what the upgrade read past its header
    }
    const kept = this.#rest.length;
    const n = await this.#conn.read(scratch.subarray(kept));
    if (n === null) return false;
    this.#rest = scratch.subarray(0, kept + n);
    return true;
  }

  /**
   * Takes the next frame header from #rest (and a control frame whole).
   * @returns "more" when more bytes are needed, a close code on a protocol error, else "ok"
   */
  #frame(): "more" | "ok" | number {
    const b = this.#rest;
    if (b.length < 2) return "more";
    const fin = (b[0] & 0x80) !== 0;
    const op = b[0] & 0x0f;
    if ((b[0] & 0x70) !== 0 || (b[1] & 0x80) === 0) return 1002; // no extensions; clients mask
    let len = b[1] & 0x7f;
    let at = 2;
    if (len === 126) {
      if (b.length < 4) return "more";
      len = (b[2] << 8) | b[3];
      at = 4;
    } else if (len === 127) {
      if (b.length < 10) return "more";
      const big = new DataView(b.buffer, b.byteOffset + 2, 8).getBigUint64(0);
      if (big > BigInt(Number.MAX_SAFE_INTEGER)) return 1009;
      len = Number(big);
      at = 10;
    }
    if (b.length < at + 4) return "more";
    const mask = b.subarray(at, at + 4);
    at += 4;
    if (op >= OP_CLOSE) {
      if (!fin || len > 125) return 1002;
      if (b.length < at + len) return "more";
      const payload = b.slice(at, at + len);
      this.#rest = b.subarray(at + len);
      for (let i = 0; i < len; i++) payload[i] ^= mask[i & 3];
      this.#control(op, payload);
      return "ok";
    }
    if (op === OP_TEXT) return 1003; // MQTT travels in binary frames only (MQTT 5 §6.0)
    if (op !== OP_BINARY && op !== OP_CONTINUATION) return 1002;
    if ((op === OP_CONTINUATION) !== this.#inMessage) return 1002;
    this.#inMessage = !fin;
    this.#mask.set(mask);
    this.#maskAt = 0;
    this.#left = len;
    this.#rest = b.subarray(at);
    return "ok";
  }

  /** Answers a ping, ignores a pong, and ends at a close (echoing its code). */
  #control(op: number, payload: Uint8Array): void {
    if (op === OP_PING) {
      this.#pong(payload);
    } else if (op === OP_CLOSE) {
      this.#ended = true;
      const code = payload.length >= 2 ? payload.subarray(0, 2) : new Uint8Array(0);
      this.#send(controlFrame(OP_CLOSE, code)).catch(() => {}).finally(() => this.close());
    } else if (op !== OP_PONG) {
      void this.#fail(1002);
    } else if (this.#pinged !== undefined && equal(payload, this.#pinged)) {
      const onPong = this.#onPong!;
      this.#pinged = this.#onPong = undefined;
      onPong();
    }
  }

  /**
   * Answers a ping: one pong at a time, and of the pings that come while
   * it is on its way only the latest is answered after it (RFC 6455
   * §5.5.3 allows answering only the most recent). Each ping had its own
   * pong chained on the writes, so a client sending pings and reading
   * nothing grew the broker by about 1 KB a ping, without bound (hostile
   * review 36 J5: 546,500 pings in 11 s, 69 -> 919 MiB, every other client
   * stalled). And `read` takes nothing more while a ping waits.
   */
  #pong(payload: Uint8Array): void {
    if (this.#ponging) {
      this.#pingWaiting = payload;
      return;
    }
    this.#ponging = true;
    this.#pongOut = this.#send(controlFrame(OP_PONG, payload)).then(() => {
      this.#ponging = false;
      const next = this.#pingWaiting;
      this.#pingWaiting = undefined;
      if (next !== undefined && !this.#ended) this.#pong(next);
    }, () => this.close());
  }

  /** Unmasks the first `n` bytes of `buf`, the next of the frame's payload. */
  #unmask(buf: Uint8Array, n: number): void {
    const mask = this.#mask;
    const m = this.#maskAt;
    for (let i = 0; i < n; i++) buf[i] ^= mask[(m + i) & 3];
    this.#maskAt = (m + n) & 3;
  }

  /** Closes with `code` (a close frame first, as far as the socket takes it). */
  async #fail(code: number): Promise<void> {
    this.#ended = true;
    await this.#send(controlFrame(OP_CLOSE, new Uint8Array([code >> 8, code & 255])))
      .catch(() => {});
    this.close();
  }

  /**
   * Reads the HTTP request and answers it: 101 and the WebSocket open, or
   * an error status and the end.
   */
  async #upgrade(): Promise<boolean> {
    let buf = new Uint8Array(1024);
    let end = 0;
    let at = -1;
    while (at < 0) {
      if (end === buf.length) {
        if (buf.length >= MAX_HEADER_BYTES) return this.#refuse(431, "Request header too large");
        const bigger = new Uint8Array(buf.length * 4);
        bigger.set(buf);
        buf = bigger;
      }
      const n = await this.#conn.read(buf.subarray(end)).catch(() => null);
      if (n === null) return false;
      at = headerEnd(buf, Math.max(0, end - 3), end + n);
      end += n;
    }
    const head = parseHead(buf.subarray(0, at));
    if (typeof head === "number") return this.#refuse(head, "Malformed request");
    const h = head.headers;
    if (head.method !== "GET" || (h.get("upgrade") ?? "").toLowerCase() !== "websocket") {
      return this.#refuse(426, "MQTT over WebSocket here (subprotocol mqtt)", "upgrade: websocket");
    }
    const key = h.get("sec-websocket-key") ?? "";
    if (h.get("sec-websocket-version") !== "13" || !/^[A-Za-z0-9+/]{22}==$/.test(key)) {
      return this.#refuse(
        400,
        "A WebSocket version 13 handshake is needed",
        "sec-websocket-version: 13",
      );
    }
    const offered = (h.get("sec-websocket-protocol") ?? "").split(",").map((p) => p.trim());
    const protocol = SUBPROTOCOLS.find((p) => offered.includes(p));
    if (protocol === undefined) return this.#refuse(400, "The WebSocket subprotocol must be mqtt");
    const accept = createHash("sha1").update(key + GUID).digest("base64");
    const response = "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n" +
      `connection: Upgrade\r\nsec-websocket-accept: ${accept}\r\n` +
      `sec-websocket-protocol: ${protocol}\r\n\r\n`;
    try {
      await this.#send(encoder.encode(response));
    } catch {
      return false;
    }
    this.#rest = buf.slice(at + 4, end);
    this.#open = true;
    return true;
  }

  /** Answers `status` with `text`, then closes. @returns false */
  async #refuse(status: number, text: string, header = ""): Promise<false> {
    const body = encoder.encode(text + "\n");
    const extra = header === "" ? "" : `${header}\r\n`;
    const head = encoder.encode(
      `HTTP/1.1 ${status} ${REASONS[status] ?? "Error"}\r\ncontent-type: text/plain\r\n${extra}` +
        `content-length: ${body.length}\r\nconnection: close\r\n\r\n`,
    );
    const out = new Uint8Array(head.length + body.length);
    out.set(head);
    out.set(body, head.length);
    await this.#send(out).catch(() => {});
    this.close();
    return false;
  }
}

const REASONS: Record<number, string> = {
  400: "Bad Request",
  426: "Upgrade Required",
  431: "Request Header Fields Too Large",
};

/** A control frame from the server (unmasked, at most 125 bytes of payload). */
function controlFrame(op: number, payload: Uint8Array): Uint8Array {
  const frame = new Uint8Array(2 + payload.length);
  frame[0] = 0x80 | op;
  frame[1] = payload.length;
  frame.set(payload, 2);
  return frame;
}

/**
 * Asks the client on `out`, if it is a WebSocket, to echo `nonce` in a pong
 * (an MQTT session's Sink.askRead, ../group_proof.ts).
 * @returns where `out.bytesOut` stands behind the ping, or -1 when none was sent
 */
export function askOver(
  out:
    | { conn: Deno.Conn; bytesOut: number; pending: number; buffer: { length: number } }
    | undefined,
  nonce: number,
  answered: () => void,
): number {
  if (out === undefined || !(out.conn instanceof WsStream)) return -1;
  const payload = new Uint8Array(8);
  new DataView(payload.buffer).setFloat64(0, nonce);
  out.conn.ping(payload, answered);
  // Behind what the stream was handed: written, or the write on its way (not what waits).
  return out.bytesOut + out.pending - out.buffer.length;
}

/** Whether `a` and `b` hold the same bytes. */
function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Where `\r\n\r\n` starts in `buf[from, to)`, or -1. */
function headerEnd(buf: Uint8Array, from: number, to: number): number {
  for (let i = from; i + 3 < to; i++) {
    if (buf[i] === 13 && buf[i + 1] === 10 && buf[i + 2] === 13 && buf[i + 3] === 10) return i;
  }
  return -1;
}
