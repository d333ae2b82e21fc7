/**
 * hostile review 45b K-B6: an MQTT 5 client's Topic Aliases (64 a
 * connection, connect.ts TOPIC_ALIAS_MAX) keep their topic names, counted
 * nowhere, and an alias is kept even when its PUBLISH is refused:
 * publish_in.ts #topicOf maps the alias before core.publish refuses the
 * topic (over 1,024 characters: PUBACK 0x90, the connection stays), so each
 * alias may hold a 65,000-character name. alias_mem.py 100 connections ×
 * 64 aliases: heap 13 → 430 MiB, RSS 74 → 535 MiB, counted 1.6 MiB (every
 * PUBACK 0x90). --max-memory never sees it; 10,000 connections would hold
 * 40 GiB.
 */
import assert from "node:assert/strict";
import { memoryMark } from "./helpers/hostile45.ts";
import { mqttOpts, withMqttBroker } from "./helpers/mqtt.ts";
import { packet, str } from "./helpers/mqtt_bytes.ts";
import { readBytes } from "./helpers/mqtt_pinger.ts";
import { writeAll } from "./helpers/raw.ts";

const MIB = 1024 * 1024;
const CONNECTIONS = 16;
const ALIASES = 64;

/** An MQTT 5 CONNECT (clean start, keep-alive 0). */
function connect5(clientId: string): Uint8Array {
  return packet(0x10, [...str("MQTT"), 5, 0x02, 0, 0, 0, ...str(clientId)]);
}

Deno.test(
  `mqtt: ${CONNECTIONS} clients setting ${ALIASES} Topic Aliases each on refused topics hold nothing uncounted`,
  mqttOpts,
  () =>
    withMqttBroker(async (b) => {
      const counted = async () => ((await b.stats()).memory as Record<string, number>).bytes;
      const since = await memoryMark(counted);
      const conns: Deno.Conn[] = [];
      for (let k = 0; k < CONNECTIONS; k++) {
        const c = await Deno.connect({ hostname: "127.0.0.1", port: b.mqttPort });
        await writeAll(c, connect5(`alias-${k}`));
        await readBytes(c, 3);
        for (let a = 1; a <= ALIASES; a++) {
          const topic = `t${k}-${a}-`.padEnd(65_000, "x");
          // QoS 1, packet id a, properties: Topic Alias a; payload "v".
          await writeAll(c, packet(0x32, [...str(topic), 0, a, 3, 0x23, 0, a, 0x76]));
        }
        await readBytes(c, 5 * ALIASES - 2); // the PUBACKs (0x90 each) are in
        conns.push(c);
      }
      const { heap, count, say } = await since();
      for (const c of conns) c.close();
      // main: live heap +71.7 MiB, counted +0.31 MiB.
      assert.ok(heap <= 1.5 * count + 16 * MIB, say);
    }),
);
