/**
 * MQTT 5 members of a shared subscription over WebSocket, by hand (for
 * queue group tests): one that never reads past its SUBACK, and one that
 * reads, answers the broker's pings as a WebSocket library does, and
 * counts the PUBLISH packets it gets.
 */
import { Buffer } from "node:buffer";
import mqttPacket, { type Packet } from "mqtt-packet";
import { writeAll } from "./raw.ts";

const OP_BINARY = 2, OP_PING = 9, OP_PONG = 10;

/** Bytes of a masked WebSocket frame carrying `payload` (as a client sends them). */
export function wsFrame(payload: Uint8Array, op = OP_BINARY): Uint8Array {
  const n = payload.length;
  const head = n < 126 ? [0x80 | op, 0x80 | n] : [0x80 | op, 0x80 | 126, n >> 8, n & 255];
  const mask = crypto.getRandomValues(new Uint8Array(4));
  const out = new Uint8Array(head.length + 4 + n);
  out.set(head);
  out.set(mask, head.length);
  for (let i = 0; i < n; i++) out[head.length + 4 + i] = payload[i] ^ mask[i & 3];
  return out;
}

/** The next whole frame the server sent at the start of `have` (unmasked), or undefined. */
function nextFrame(have: Uint8Array): { op: number; payload: Uint8Array; end: number } | undefined {
  if (have.length < 2) return undefined;
  let len = have[1] & 0x7f, at = 2;
  if (len === 126) {
    if (have.length < 4) return undefined;
    len = (have[2] << 8) | have[3];
    at = 4;
  } else if (len === 127) {
    if (have.length < 10) return undefined;
    len = Number(new DataView(have.buffer, have.byteOffset + 2, 8).getBigUint64(0));
    at = 10;
  }
  if (have.length < at + len) return undefined;
  return { op: have[0] & 0x0f, payload: have.subarray(at, at + len), end: at + len };
}

/** Upgrades a connection to `port`, CONNECTs and SUBSCRIBEs (QoS 0); what was read past the SUBACK. */
async function wsJoin(port: number, ...filters: string[]) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
  await writeAll(
    conn,
    new TextEncoder().encode(
      `GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\n` +
        `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n` +
        "Sec-WebSocket-Protocol: mqtt\r\n\r\n",
    ),
  );
  const packet = (p: unknown) =>
    wsFrame(new Uint8Array(mqttPacket.generate(p as Packet, { protocolVersion: 5 })));
  const clientId = `ws-${crypto.randomUUID().slice(0, 8)}`;
  await writeAll(
    conn,
    packet({ cmd: "connect", protocolId: "MQTT", protocolVersion: 5, clientId, clean: true }),
  );
  await writeAll(
    conn,
    packet({
      cmd: "subscribe",
      messageId: 1,
      subscriptions: filters.map((topic) => ({ topic, qos: 0 })),
    }),
  );
  let have: Uint8Array = new Uint8Array(0);
  const more = async () => {
    const buf = new Uint8Array(4096);
    const n = await conn.read(buf);
    if (n === null) throw new Error("closed before SUBACK");
    have = Buffer.concat([have, buf.subarray(0, n)]);
  };
  const crlf = () => Buffer.from(have).indexOf("\r\n\r\n");
  while (crlf() < 0) await more();
  have = have.subarray(crlf() + 4);
  for (;;) {
    const frame = nextFrame(have);
    if (frame === undefined) {
      await more();
      continue;
    }
    have = have.subarray(frame.end);
    if (frame.payload[0] === 0x90) return { conn, rest: have }; // SUBACK
  }
}

/** A member of `filter` over WebSocket that reads nothing past its SUBACK. */
export async function wsThief(port: number, filter: string): Promise<Deno.Conn> {
  return (await wsJoin(port, filter)).conn;
}

/**
 * A member of `filter` over WebSocket that reads, answers pings, and counts its PUBLISH packets;
 * with `marker`, also subscribed to that topic, whose publishes it counts apart (`marks`): one
 * read says it read all that came before it on its connection.
 */
export async function wsReader(port: number, filter: string, marker?: string) {
  const { conn, rest } = await wsJoin(port, filter, ...marker === undefined ? [] : [marker]);
  const state = { conn, count: 0, marks: 0, done: Promise.resolve() };
  const parser = mqttPacket.parser({ protocolVersion: 5 });
  parser.on("packet", (p: Packet) => {
    if (p.cmd !== "publish") return;
    if (p.topic === marker) state.marks++;
    else state.count++;
  });
  state.done = (async () => {
    let have = rest;
    const buf = new Uint8Array(256 * 1024);
    try {
      for (;;) {
        for (let f = nextFrame(have); f !== undefined; f = nextFrame(have)) {
          if (f.op === OP_PING) await writeAll(conn, wsFrame(f.payload, OP_PONG));
          else if (f.op === OP_BINARY || f.op === 0) parser.parse(Buffer.from(f.payload));
          have = have.subarray(f.end);
        }
        const n = await conn.read(buf);
        if (n === null) return;
        have = Buffer.concat([have, buf.subarray(0, n)]);
      }
    } catch {
      // Closed.
    }
  })();
  return state;
}
