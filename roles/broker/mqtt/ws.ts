/**
 * MQTT over WebSocket (`--mqtt-ws-port`, MQTT 5 §6): an HTTP listener
 * (Deno.serve; over TLS with the broker's certificate, `wss://`) that
 * upgrades a request offering the `mqtt` subprotocol (or 3.1's `mqttv3.1`)
 * on any path, and hands the socket to the MQTT front end as a byte
 * stream, so a WebSocket client is an MQTT connection like any other:
 * same packets, limits, sessions and counters.
 *
 * Packets may span binary frames and a frame may hold several (the read
 * loop frames them); a text frame closes the connection (§6.0). The
 * WebSocket has no read backpressure: what a connection has not read yet
 * is bounded (UNREAD_MAX, past it the connection is closed), and a write
 * waits while the socket's own send buffer is past WS_HIGH_WATER, so a
 * client that does not read meets the same output bound and write
 * deadline as on TCP.
 */
import type { TlsSettings } from "../../../wire/tls.ts";
import { serveKept } from "../../../obs/http.ts";

/** Bytes received and not yet read by the connection, past which it is closed. */
const UNREAD_MAX = 4 * 1024 * 1024;
/** A write waits while the WebSocket holds more than this unsent. */
const WS_HIGH_WATER = 256 * 1024;
/** How often a waiting write looks at the send buffer again (ms). */
const DRAIN_POLL_MS = 5;
/** Subprotocols spoken: MQTT 3.1.1 and 5, and 3.1's name. */
const SUBPROTOCOLS = ["mqtt", "mqttv3.1"];

/** A WebSocket as the byte stream an MQTT connection reads and writes (Deno.Conn's part of it). */
export class WsConn {
  readonly remoteAddr: Deno.NetAddr;
  readonly #ws: WebSocket;
  #chunks: Uint8Array[] = [];
  #unread = 0;
  #ended = false;
  #reader: { buf: Uint8Array; resolve: (n: number | null) => void } | undefined;

  constructor(ws: WebSocket, remoteAddr: Deno.NetAddr) {
    this.#ws = ws;
    this.remoteAddr = remoteAddr;
    ws.binaryType = "arraybuffer";
    ws.onmessage = (e: MessageEvent) => {
      if (!(e.data instanceof ArrayBuffer)) {
        // MQTT travels in binary frames only (MQTT 5 §6.0).
        this.#end();
        return this.close(1003, "MQTT needs binary frames");
      }
      this.#chunks.push(new Uint8Array(e.data));
      this.#unread += e.data.byteLength;
      if (this.#unread > UNREAD_MAX) {
        this.#end();
        return this.close(1009, "Too much unread input");
      }
      this.#feed();
    };
    ws.onclose = () => this.#end();
    ws.onerror = () => this.#end();
  }

  read(buf: Uint8Array): Promise<number | null> {
    if (this.#chunks.length > 0) return Promise.resolve(this.#take(buf));
    if (this.#ended) return Promise.resolve(null);
    return new Promise((resolve) => this.#reader = { buf, resolve });
  }

  async write(bytes: Uint8Array): Promise<number> {
    const ws = this.#ws;
    if (ws.readyState !== WebSocket.OPEN) throw new Deno.errors.BrokenPipe("WebSocket closed");
    // A copy: the caller reuses its buffer once the write resolves.
    ws.send(bytes.slice());
    while (ws.bufferedAmount > WS_HIGH_WATER && ws.readyState === WebSocket.OPEN) {
      await new Promise((r) => setTimeout(r, DRAIN_POLL_MS));
    }
    return bytes.length;
  }

  close(code = 1000, reason = ""): void {
    const ws = this.#ws;
    if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) {
      try {
        ws.close(code, reason);
      } catch {
        // Closing already.
      }
    }
    this.#end();
  }

  #end(): void {
    this.#ended = true;
    this.#chunks = [];
    this.#unread = 0;
    this.#feed();
  }

  /** Hands what arrived (or the end) to a waiting read. */
  #feed(): void {
    const reader = this.#reader;
    if (reader === undefined) return;
    if (this.#chunks.length > 0) {
      this.#reader = undefined;
      reader.resolve(this.#take(reader.buf));
    } else if (this.#ended) {
      this.#reader = undefined;
      reader.resolve(null);
    }
  }

  /** Copies received bytes into `buf`, as many as fit. */
  #take(buf: Uint8Array): number {
    let n = 0;
    while (n < buf.length && this.#chunks.length > 0) {
      const chunk = this.#chunks[0];
      const k = Math.min(chunk.length, buf.length - n);
      buf.set(chunk.subarray(0, k), n);
      n += k;
      if (k === chunk.length) this.#chunks.shift();
      else this.#chunks[0] = chunk.subarray(k);
    }
    this.#unread -= n;
    return n;
  }
}

/** What the WebSocket listener needs of the front end. */
export interface WsHost {
  /** Whether one more connection would pass the limit (it is then refused with 503). */
  refuses(): boolean;
  /** A new MQTT connection over `conn`. */
  adopt(conn: Deno.Conn): void;
}

/**
 * Listens for MQTT over WebSocket on `hostname:port` (TLS with `tls`'s
 * certificate and key: `wss://`).
 * @throws {Error} as Deno.serve does (a port in use)
 */
export function serveWebSocket(
  host: WsHost,
  hostname: string,
  port: number,
  tls: TlsSettings | undefined,
): { addr: Deno.NetAddr; close(): void } {
  const secure = tls?.cert !== undefined && tls.key !== undefined
    ? { cert: tls.cert, key: tls.key }
    : {};
  // Kept serving when Deno's accept loop fails (a flood past the file
  // limit): unhandled, that failure ended the broker.
  const server = serveKept({ hostname, port, what: "MQTT WebSocket", ...secure }, (req, info) => {
    if (req.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return new Response("MQTT over WebSocket here (subprotocol mqtt)\n", {
        status: 426,
        headers: { upgrade: "websocket" },
      });
    }
    const offered = (req.headers.get("sec-websocket-protocol") ?? "").split(",").map((p) =>
      p.trim()
    );
    const protocol = SUBPROTOCOLS.find((p) => offered.includes(p));
    if (protocol === undefined) {
      return new Response("The WebSocket subprotocol must be mqtt\n", { status: 400 });
    }
    if (host.refuses()) return new Response("Too many connections\n", { status: 503 });
    // Read before the upgrade, which takes the request.
    const remote = info.remoteAddr as Deno.NetAddr;
    const { socket, response } = Deno.upgradeWebSocket(req, { protocol, idleTimeout: 0 });
    host.adopt(new WsConn(socket, remote) as unknown as Deno.Conn);
    return response;
  });
  return { addr: server.addr, close: () => void server.shutdown() };
}
