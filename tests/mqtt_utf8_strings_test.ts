/**
 * Every MQTT UTF-8 string field (client id, will topic, user name,
 * SUBSCRIBE and UNSUBSCRIBE filters), not only PUBLISH topics, is refused
 * when it is not well-formed UTF-8: 0xFF, an overlong form, a lone
 * surrogate make a Malformed Packet, and the connection is closed (MQTT 5:
 * DISCONNECT 0x81 after SUBSCRIBE / UNSUBSCRIBE). Before, mqtt-packet read
 * them lossily as U+FFFD: `u/\xff` subscribed to `u/U+FFFD`, and client ids
 * `dev\xff` and `dev\xfe` shared one session (hostile review 40b U5).
 */
import assert from "node:assert/strict";
import type { IConnackPacket, IDisconnectPacket, IPublishPacket, ISubackPacket } from "mqtt-packet";
import { mqttOpts, RawMqtt, withMqttBroker } from "./helpers/mqtt.ts";

const BAD: Record<string, number[]> = {
  "0xFF": [0xff],
  "overlong C0 AF": [0xc0, 0xaf],
  "lone surrogate ED A0 80": [0xed, 0xa0, 0x80],
};
const enc = new TextEncoder();

/** An MQTT string: two length bytes, then the bytes. */
function str(bytes: number[] | string): number[] {
  const b = typeof bytes === "string" ? [...enc.encode(bytes)] : bytes;
  return [b.length >> 8, b.length & 0xff, ...b];
}

function packet(first: number, body: number[]): Uint8Array {
  assert.ok(body.length < 128);
  return Uint8Array.from([first, body.length, ...body]);
}

/** A 3.1.1 CONNECT; `flags` 0x02 clean session. */
function connect(id: number[], flags = 0x02, rest: number[] = []): Uint8Array {
  return packet(0x10, [...str("MQTT"), 4, flags, 0, 60, ...str(id), ...rest]);
}

const ascii = (s: string) => [...enc.encode(s)];

async function closedWithoutConnack(port: number, bytes: Uint8Array, what: string): Promise<void> {
  const raw = await RawMqtt.open(port);
  await raw.write(bytes);
  await raw.closedWithin(3000);
  const acks = raw.packets.filter((p) =>
    p.cmd === "connack" && (p as IConnackPacket).returnCode === 0
  );
  assert.equal(acks.length, 0, `${what}: accepted`);
  await raw.end();
}

Deno.test(
  "mqtt: a client id, will topic or user name that is not UTF-8 closes the connection; two such ids share no session",
  mqttOpts,
  async () => {
    await withMqttBroker(async (b) => {
      for (const [name, bad] of Object.entries(BAD)) {
        const id = [...ascii("dev"), ...bad];
        await closedWithoutConnack(b.mqttPort, connect(id, 0), `client id with ${name}`);
        // Will flag 0x04: will topic, will message.
        const will = [...str([...ascii("w/"), ...bad]), ...str("bye")];
        await closedWithoutConnack(
          b.mqttPort,
          connect(ascii("w1"), 0x06, will),
          `will topic with ${name}`,
        );
        // User name flag 0x80.
        const user = str([...ascii("u"), ...bad]);
        await closedWithoutConnack(
          b.mqttPort,
          connect(ascii("u1"), 0x82, user),
          `user name with ${name}`,
        );
      }
      // MQTT 5: CONNACK 0x80, then closed (a property length 0 after the keep-alive).
      const v5 = await RawMqtt.open(b.mqttPort, 5);
      await v5.write(
        packet(0x10, [...str("MQTT"), 5, 0x02, 0, 60, 0, ...str([...ascii("d"), 0xff])]),
      );
      assert.equal((await v5.next("connack", 3000) as IConnackPacket).reasonCode, 0x80);
      await v5.closedWithin(3000);
      await v5.end();
      // Two ids that differ only in their invalid bytes: neither is a session, so no takeover.
      const first = await RawMqtt.open(b.mqttPort);
      await first.write(connect([...ascii("dev"), 0xff], 0));
      const second = await RawMqtt.open(b.mqttPort);
      await second.write(connect([...ascii("dev"), 0xfe], 0));
      await first.closedWithin(3000);
      await second.closedWithin(3000);
      for (const raw of [first, second]) {
        assert.deepEqual(
          raw.packets.filter((p) => p.cmd === "connack" && (p as IConnackPacket).sessionPresent),
          [],
        );
        await raw.end();
      }
    });
  },
);

Deno.test(
  "mqtt: a SUBSCRIBE or UNSUBSCRIBE filter that is not UTF-8 closes the connection (MQTT 5: DISCONNECT 0x81)",
  mqttOpts,
  async () => {
    await withMqttBroker(async (b) => {
      for (const [name, bad] of Object.entries(BAD)) {
        const filter = str([...ascii("u/"), ...bad]);
        for (const first of [0x82, 0xa2]) {
          const what = `${first === 0x82 ? "SUBSCRIBE" : "UNSUBSCRIBE"} filter with ${name}`;
          const raw = await RawMqtt.connect(b.mqttPort);
          await raw.write(packet(first, [0, 7, ...filter, ...(first === 0x82 ? [0] : [])]));
          await raw.closedWithin(3000);
          assert.deepEqual(
            raw.packets.filter((p) => p.cmd === "suback" || p.cmd === "unsuback"),
            [],
            what,
          );
          await raw.end();
          const v5 = await RawMqtt.connect(b.mqttPort, {}, 5);
          // MQTT 5: a property length (0) after the packet id.
          await v5.write(packet(first, [0, 7, 0, ...filter, ...(first === 0x82 ? [0] : [])]));
          const d = await v5.next("disconnect", 3000) as IDisconnectPacket;
          assert.equal(d.reasonCode, 0x81, what);
          await v5.closedWithin(3000);
          await v5.end();
        }
      }
    });
  },
);

Deno.test(
  "mqtt: valid non-ASCII strings (é, 😀, U+FFFD as EF BF BD) are still accepted",
  mqttOpts,
  async () => {
    await withMqttBroker(async (b) => {
      const raw = await RawMqtt.open(b.mqttPort);
      await raw.write(connect(ascii("dé😀\ufffd")));
      assert.equal((await raw.next("connack") as IConnackPacket).returnCode, 0);
      await raw.write(packet(0x82, [0, 7, ...str("u/\ufffdé😀"), 0]));
      assert.deepEqual((await raw.next("suback") as ISubackPacket).granted, [0]);
      const pub = await RawMqtt.connect(b.mqttPort);
      await pub.send({
        cmd: "publish",
        topic: "u/\ufffdé😀",
        payload: "hi",
        qos: 0,
        retain: false,
        dup: false,
      });
      const got = await raw.next("publish") as IPublishPacket;
      assert.equal(got.topic, "u/\ufffdé😀");
      await raw.write(packet(0xa2, [0, 8, ...str("u/\ufffdé😀")]));
      await raw.next("unsuback");
      assert.equal(raw.closed, false);
      await pub.end();
      await raw.end();
    });
  },
);
