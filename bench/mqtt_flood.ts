/**
 * A flood of distinct MQTT client ids asking for persistent sessions, for
 * the mqtt suite (bench/mqtt.ts), in its own process: N clients, 20 at a
 * time, each CONNECT with clean session 0 (a new id each), SUBSCRIBE, and
 * gone without DISCONNECT, leaving a session behind on the broker (or
 * refused: CONNACK 3).
 *
 *   deno run -A bench/mqtt_flood.ts PORT N
 *
 * Prints `flooded N accepted A refused R` at the end.
 */
import { writeAll } from "../tests/helpers/raw.ts";
import { connectPacket, subscribePacket } from "./mqtt_load.ts";

const [portText, countText] = Deno.args;
const port = Number(portText);
const count = Number(countText);
const tag = crypto.randomUUID().slice(0, 8);
let accepted = 0;
let refused = 0;
let next = 0;

async function one(i: number): Promise<void> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const buf = new Uint8Array(64);
    await writeAll(conn, connectPacket(`flood-${tag}-${i}`, 60, false));
    const n = await conn.read(buf);
    if (n === null || n < 4 || buf[0] !== 0x20 || buf[3] !== 0) {
      refused++;
      return;
    }
    accepted++;
    await writeAll(conn, subscribePacket(`flood/${i % 100}/#`, 1));
    await conn.read(buf);
  } catch {
    refused++;
  } finally {
    conn.close();
  }
}

await Promise.all(Array.from({ length: 20 }, async () => {
  while (next < count) await one(next++);
}));
console.log(`flooded ${count} accepted ${accepted} refused ${refused}`);
