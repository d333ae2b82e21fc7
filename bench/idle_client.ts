/**
 * Opens N idle connections to a port and keeps them alive; used by the idle
 * suite (bench/idle.ts), in its own process so its memory is not counted.
 *
 *   deno run -A bench/idle_client.ts dist PORT N     handshaked dist connections (real Peers)
 *   deno run -A bench/idle_client.ts dist PORT N CA  the same in TLS, trusting CA (a PEM file)
 *   deno run -A bench/idle_client.ts raw PORT N      plain TCP connections
 *   deno run -A bench/idle_client.ts nats PORT N     NATS connections (CONNECT, PING/PONG)
 *   deno run -A bench/idle_client.ts mqtt PORT N     MQTT 3.1.1 connections (CONNECT with
 *                                                     keep-alive 600 s, one QoS 1 subscription)
 *
 * Prints "ready N" once all are open (and, for dist, handshaked), then
 * waits until stdin closes.
 */
import { dial, type Peer } from "../wire/mod.ts";
import { connectPacket, handshake, subscribePacket } from "./mqtt_load.ts";

const [mode, portText, countText, caFile] = Deno.args;
const tls = caFile === undefined ? undefined : { ca: Deno.readTextFileSync(caFile) };
const port = Number(portText);
const count = Number(countText);
const held: (Peer | Deno.Conn)[] = [];

/** A NATS client connection past its handshake: CONNECT, then a PING answered by PONG. */
async function natsConn(): Promise<Deno.Conn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const buf = new Uint8Array(4096);
  let text = "";
  await conn.write(new TextEncoder().encode('CONNECT {"verbose":false}\r\nPING\r\n'));
  while (!text.includes("PONG")) {
    const n = await conn.read(buf);
    if (n === null) throw new Error("nats-server closed the connection");
    text += new TextDecoder().decode(buf.subarray(0, n));
  }
  // Keep answering the server's PINGs (every 2 minutes by default).
  (async () => {
    try {
      while ((await conn.read(buf)) !== null) {
        await conn.write(new TextEncoder().encode("PONG\r\n"));
      }
    } catch {
      // Closed.
    }
  })();
  return conn;
}
/** An MQTT client past CONNACK and SUBACK, as a sensor would sit (keep-alive 600 s). */
function mqttConn(): Promise<Deno.Conn> {
  const id = `idle-${crypto.randomUUID().slice(0, 13)}`;
  return handshake(port, [connectPacket(id, 600), subscribePacket(`idle/${id}`, 1)]);
}
const BATCH = 200;
for (let i = 0; i < count; i += BATCH) {
  const n = Math.min(BATCH, count - i);
  const opened = await Promise.all(
    Array.from(
      { length: n },
      () =>
        mode === "dist"
          ? dial({ host: "127.0.0.1", port }, {
            role: "bench",
            name: "idle",
            connectTimeoutMs: 30_000,
            tls,
          })
          : mode === "nats"
          ? natsConn()
          : mode === "mqtt"
          ? mqttConn()
          : Deno.connect({ hostname: "127.0.0.1", port }),
    ),
  );
  held.push(...opened);
}
console.log(`ready ${held.length}`);
// Hold them until told to stop (stdin closes).
for await (const _ of Deno.stdin.readable) { /* wait */ }
for (const c of held) c.close();
