/**
 * Raw MQTT 3.1.1 pieces for flood tests against a child broker (hostile
 * review 44b): away persistent sessions made in bulk, and another client's
 * PINGREQ round trips timed meanwhile.
 */
import { packet, str } from "./mqtt_bytes.ts";
import { sleep, writeAll } from "./raw.ts";

/** Reads until `n` bytes came (or the socket closed). */
export async function readBytes(conn: Deno.Conn, n: number): Promise<void> {
  const buf = new Uint8Array(64 * 1024);
  for (let got = 0; got < n;) {
    const r = await conn.read(buf);
    if (r === null) return;
    got += r;
  }
}

/** A 3.1.1 CONNECT, keep-alive 0. */
export function connect311(clientId: string, clean: boolean): Uint8Array {
  return packet(0x10, [...str("MQTT"), 4, clean ? 2 : 0, 0, 0, ...str(clientId)]);
}

/** A connected 3.1.1 client (CONNACK read). */
export async function dialMqtt(port: number, clientId: string): Promise<Deno.Conn> {
  const c = await Deno.connect({ hostname: "127.0.0.1", port });
  await writeAll(c, connect311(clientId, true));
  await readBytes(c, 4);
  return c;
}

/**
 * `n` persistent sessions (`${prefix}-${i}`) that SUBSCRIBE `filters` at
 * QoS 1 and go away (DISCONNECT).
 */
export async function awaySessions(
  port: number,
  prefix: string,
  n: number,
  filters: readonly string[],
): Promise<void> {
  const subscribe = packet(0x82, [0, 1, ...filters.flatMap((f) => [...str(f), 1])]);
  for (let i = 0; i < n; i++) {
    const c = await Deno.connect({ hostname: "127.0.0.1", port });
    await writeAll(c, connect311(`${prefix}-${i}`, false));
    await readBytes(c, 4);
    await writeAll(c, subscribe);
    await readBytes(c, 4 + filters.length); // SUBACK: 0x90, length, id, a code each
    await writeAll(c, packet(0xe0, []));
    c.close();
  }
}

/** A client sending PINGREQ every 10 ms until `stop()`, which gives its round trips' median and a line. */
export async function pinger(
  port: number,
): Promise<{ stop(): Promise<{ p50: number; say: string }> }> {
  const c = await dialMqtt(port, "pinger");
  const rtts: number[] = [];
  let on = true;
  const pings = (async () => {
    while (on) {
      const t0 = performance.now();
      await writeAll(c, packet(0xc0, []));
      await readBytes(c, 2);
      rtts.push(performance.now() - t0);
      await sleep(10);
    }
  })();
  return {
    async stop() {
      on = false;
      await pings;
      c.close();
      rtts.sort((a, b) => a - b);
      const p50 = rtts[Math.floor(rtts.length / 2)];
      const say = `PINGRESP p50 ${p50.toFixed(1)} ms, max ${
        rtts.at(-1)!.toFixed(0)
      } ms over ${rtts.length}`;
      return { p50, say };
    },
  };
}
