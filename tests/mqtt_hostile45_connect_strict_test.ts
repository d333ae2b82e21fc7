/**
 * hostile review 45b K-B4 (low): CONNECTs that MQTT calls malformed or a
 * protocol error are accepted (CONNACK 0x00), where Mosquitto 2 closes each
 * (strict_battery.py): a Will QoS of 3 (MQTT-3.1.2-14, 3.1.1 and 5; the
 * will is then sent at QoS 2), MQTT 5 Receive Maximum 0 (§3.1.2.11.3: a
 * Protocol Error; taken as 1), Maximum Packet Size 0 (§3.1.2.11.4; every
 * delivery then dropped as too large), Request Problem Information 2
 * (§3.1.2.11.7), and a property CONNECT may not carry (Payload Format
 * Indicator, §2.2.2.2). Each must end the connection (CONNACK 0x81/0x82
 * or a close), not be served.
 */
import assert from "node:assert/strict";
import { mqttOpts as opts, RawMqtt, withMqttBroker } from "./helpers/mqtt.ts";
import { packet, str } from "./helpers/mqtt_bytes.ts";
import { sleep } from "./helpers/raw.ts";

/** An MQTT 5 CONNECT with `flags` (clean start set), `props` and after the client id `rest`. */
function connect5(flags: number, props: number[], rest: number[] = []): Uint8Array {
  return packet(0x10, [
    ...str("MQTT"),
    5,
    0x02 | flags,
    0,
    60,
    props.length,
    ...props,
    ...str("strict"),
    ...rest,
  ]);
}

const CASES: [string, Uint8Array][] = [
  ["MQTT 5 Will QoS 3", connect5(0x04 | 0x18, [], [0, ...str("w/t"), ...str("bye")])],
  [
    "MQTT 3.1.1 Will QoS 3",
    packet(0x10, [
      ...str("MQTT"),
      4,
      0x02 | 0x04 | 0x18,
      0,
      60,
      ...str("s"),
      ...str("w"),
      ...str("x"),
    ]),
  ],
  ["Receive Maximum 0", connect5(0, [0x21, 0, 0])],
  ["Maximum Packet Size 0", connect5(0, [0x27, 0, 0, 0, 0])],
  ["Request Problem Information 2", connect5(0, [0x17, 2])],
  ["a Payload Format Indicator in CONNECT", connect5(0, [0x01, 1])],
];

for (const [name, bytes] of CASES) {
  Deno.test(`mqtt: a CONNECT with ${name} is refused`, opts, () =>
    withMqttBroker(async (b) => {
      const c = await RawMqtt.open(b.mqttPort, name.startsWith("MQTT 3") ? 4 : 5);
      await c.write(bytes);
      for (let i = 0; i < 50 && !c.closed && c.packets.length === 0; i++) await sleep(20);
      const ack = c.packets.find((p) => p.cmd === "connack") as {
        reasonCode?: number;
        returnCode?: number;
      } | undefined;
      const code = ack?.reasonCode ?? ack?.returnCode;
      // main: CONNACK 0x00 for each.
      assert.ok(ack === undefined ? c.closed : code !== 0, `${name}: CONNACK ${code}`);
      await c.end();
    }));
}
