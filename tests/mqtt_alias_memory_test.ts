/**
 * MQTT 5 Topic Aliases a client sets (up to 64 a connection, connect.ts
 * TOPIC_ALIAS_MAX) keep their topic names with the connection: legal names
 * (up to 1,024 characters; hostile45b K-B6 refused longer ones before they
 * are kept) are counted in --max-memory, and an alias that would take the
 * broker past it is refused (0x97 Quota exceeded), as a new topic is.
 */
import assert from "node:assert/strict";
import { memoryMark } from "./helpers/hostile45.ts";
import { mqttOpts, withMqttBroker } from "./helpers/mqtt.ts";
import { packet, str } from "./helpers/mqtt_bytes.ts";
import { readBytes } from "./helpers/mqtt_pinger.ts";
import { writeAll } from "./helpers/raw.ts";

const MIB = 1024 * 1024;
const CONNECTIONS = 200;
const ALIASES = 64;

/** An MQTT 5 CONNECT (clean start, keep-alive 0). */
function connect5(clientId: string): Uint8Array {
  return packet(0x10, [...str("MQTT"), 5, 0x02, 0, 0, 0, ...str(clientId)]);
}

/** A QoS 1 PUBLISH of `topic` with packet id and Topic Alias `a`, payload "v". */
function aliased(topic: string, a: number): Uint8Array {
  return packet(0x32, [...str(topic), 0, a, 3, 0x23, 0, a, 0x76]);
}

/** The next `n` bytes (fewer when the socket closed). */
async function readN(conn: Deno.Conn, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  for (let got = 0; got < n;) {
    const r = await conn.read(out.subarray(got));
    if (r === null) return out.subarray(0, got);
    got += r;
  }
  return out;
}

/**
 * A legal name of 1,023 characters (1,024 as a dist topic), its own for
 * each connection and alias; not Latin-1, so V8 keeps it in 2 bytes a
 * character.
 */
const name = (k: number, a: number) => `c${k}-a${a}-`.padEnd(1023, "\u0101");

Deno.test(
  `mqtt: ${CONNECTIONS} clients setting ${ALIASES} Topic Aliases of legal names each are counted`,
  mqttOpts,
  () =>
    withMqttBroker(async (b) => {
      const counted = async () => ((await b.stats()).memory as Record<string, number>).bytes;
      const since = await memoryMark(counted);
      const conns: Deno.Conn[] = [];
      try {
        for (let k = 0; k < CONNECTIONS; k++) {
          const c = await Deno.connect({ hostname: "127.0.0.1", port: b.mqttPort });
          conns.push(c);
          await writeAll(c, connect5(`alias-${k}`));
          await readBytes(c, 3);
          const all = [];
          for (let a = 1; a <= ALIASES; a++) all.push(...aliased(name(k, a), a));
          await writeAll(c, Uint8Array.from(all));
          const acks = await readN(c, 4 * ALIASES); // a PUBACK each, accepted (no reason code)
          assert.deepEqual([...acks.subarray(-4)], [0x40, 2, 0, ALIASES]);
        }
        const { heap, count, say } = await since();
        // Before: live heap +13.4 MiB, counted +0.23 MiB.
        assert.ok(heap <= 1.5 * count + 4 * MIB, say);
      } finally {
        for (const c of conns) c.close();
      }
    }, { maxTopics: 100 }), // the topics are forgotten: the aliases alone hold the names
);

/** The reason codes of the next `n` PUBACKs on `c` (0: none given). */
async function pubackReasons(c: Deno.Conn, n: number): Promise<number[]> {
  const reasons: number[] = [];
  let buf = new Uint8Array(0);
  const chunk = new Uint8Array(4096);
  while (reasons.length < n) {
    while (buf.length >= 2 && buf.length >= 2 + buf[1] && reasons.length < n) {
      assert.equal(buf[0], 0x40, "a PUBACK");
      reasons.push(buf[1] > 2 ? buf[4] : 0);
      buf = buf.subarray(2 + buf[1]);
    }
    if (reasons.length === n) break;
    const r = await c.read(chunk);
    if (r === null) break;
    buf = Uint8Array.from([...buf, ...chunk.subarray(0, r)]);
  }
  return reasons;
}

Deno.test(
  "mqtt: a Topic Alias that would take the broker past --max-memory is refused, 0x97",
  mqttOpts,
  () =>
    withMqttBroker(async (b) => {
      const memory = async () => (await b.stats()).memory as Record<string, number>;
      const conns: Deno.Conn[] = [];
      let refused = 0, accepted = 0;
      try {
        for (let k = 0; k < 400 && refused === 0; k++) {
          const c = await Deno.connect({ hostname: "127.0.0.1", port: b.mqttPort });
          conns.push(c);
          await writeAll(c, connect5(`budget-${k}`));
          await readBytes(c, 3);
          const all = [];
          for (let a = 1; a <= ALIASES; a++) all.push(...aliased(name(k, a), a));
          await writeAll(c, Uint8Array.from(all));
          for (const reason of await pubackReasons(c, ALIASES)) {
            if (reason === 0) accepted++;
            else {
              assert.equal(reason, 0x97, "Quota exceeded");
              refused++;
            }
          }
        }
        assert.ok(refused > 0, `refused some (accepted ${accepted})`);
        const m = await memory();
        assert.ok(m.bytes <= m.budget * 1.05, `counted ${m.bytes} of ${m.budget}`);
      } finally {
        for (const c of conns) c.close();
      }
      // Given back with the connections: a new client's alias is taken again.
      const c = await Deno.connect({ hostname: "127.0.0.1", port: b.mqttPort });
      try {
        await writeAll(c, connect5("after"));
        await readBytes(c, 3);
        let reason = -1;
        for (let i = 0; i < 50 && reason !== 0; i++) {
          await new Promise((r) => setTimeout(r, 100));
          await writeAll(c, aliased(name(9999, 1), 1));
          [reason] = await pubackReasons(c, 1);
        }
        assert.equal(reason, 0, "an alias is taken once the connections are gone");
      } finally {
        c.close();
      }
    }, { maxTopics: 100, maxMemory: 8 * MIB }),
);
