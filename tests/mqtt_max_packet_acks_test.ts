/**
 * hostile review 46b M-B10: SUBACK and CONNACK were not held to the
 * client's MQTT 5 Maximum Packet Size (a client asking for 200 filters
 * under a limit of 100 got a SUBACK of 205 bytes). MQTT-3.1.2-24: the
 * server must not send a packet past it. Now a CONNACK leaves out what it
 * may (properties whose absence means the same, then its Topic Alias
 * Maximum), and one still too large is not sent: the connection closes, as
 * Mosquitto does; a SUBACK (or UNSUBACK) too large is not sent, as EMQX
 * does (the subscriptions hold). Each counted in `mqtt.oversize_out`.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import type { IConnackPacket, IPublishPacket } from "mqtt-packet";
import { mqttOpts as opts, RawMqtt, withMqttBroker } from "./helpers/mqtt.ts";
import { waitFor } from "./helpers/raw.ts";

/** A packet's whole size from what mqtt-packet parsed (its remaining length). */
function sizeOf(p: { length?: number }): number {
  const n = p.length ?? 0;
  return 1 + (n < 128 ? 1 : n < 16_384 ? 2 : 3) + n;
}

/** An MQTT 5 CONNECT with `maximumPacketSize`; its CONNACK, or undefined if closed without one. */
async function connectWith(port: number, maximumPacketSize: number, clientId = "c1") {
  const c = await RawMqtt.open(port, 5);
  await c.send({
    cmd: "connect",
    protocolId: "MQTT",
    protocolVersion: 5,
    clientId,
    clean: true,
    keepalive: 0,
    properties: { maximumPacketSize },
  } as never, 5);
  await waitFor(() => c.closed || c.packets.some((p) => p.cmd === "connack"), 5000, "CONNACK");
  const ack = c.packets.find((p) => p.cmd === "connack") as IConnackPacket | undefined;
  return { c, ack };
}

/** A PINGREQ answered: whatever the broker sent before it has arrived. */
async function roundTrip(c: RawMqtt): Promise<void> {
  await c.send({ cmd: "pingreq" } as never, 5);
  await c.next("pingresp");
}

Deno.test(
  "mqtt 5: a SUBACK past the client's Maximum Packet Size is not sent; the subscriptions hold",
  opts,
  () =>
    withMqttBroker(async (b) => {
      const { c } = await connectWith(b.mqttPort, 100);
      const pub = await RawMqtt.connect(b.mqttPort, { clientId: "pub" }, 5);
      try {
        const filters = Array.from({ length: 200 }, (_, i) => ({ topic: `f/${i}`, qos: 0 }));
        await c.send({ cmd: "subscribe", messageId: 1, subscriptions: filters } as never, 5);
        await roundTrip(c);
        const too = c.packets.filter((p) => sizeOf(p as { length?: number }) > 100);
        assert.deepEqual(too.map((p) => p.cmd), [], "no packet past 100 bytes");
        assert.equal(c.packets.filter((p) => p.cmd === "suback").length, 0);
        assert.equal((await b.mqttStats()).oversize_out, 1, "counted");
        // The subscriptions were made all the same.
        await pub.send(
          { cmd: "publish", topic: "f/199", payload: Buffer.from("x"), qos: 0 } as never,
          5,
        );
        await waitFor(
          () => c.packets.some((p) => p.cmd === "publish"),
          5000,
          "a delivery on f/199",
        );
        const got = c.packets.find((p) => p.cmd === "publish") as IPublishPacket;
        assert.equal(String(got.payload), "x");
        // A SUBACK that fits comes as usual.
        await c.send(
          { cmd: "subscribe", messageId: 2, subscriptions: filters.slice(0, 10) } as never,
          5,
        );
        assert.ok(sizeOf(await c.next("suback")) <= 100);
      } finally {
        await c.end();
        await pub.end();
      }
    }),
);

Deno.test(
  "mqtt 5: a CONNACK leaves out what it may to fit the client's Maximum Packet Size",
  opts,
  () =>
    withMqttBroker(async (b) => {
      const full = await connectWith(b.mqttPort, 1000, "full");
      const small = await connectWith(b.mqttPort, 20, "small");
      try {
        assert.ok(full.ack !== undefined && small.ack !== undefined);
        assert.ok(sizeOf(full.ack) > 20, `the whole CONNACK is ${sizeOf(full.ack)} bytes`);
        assert.ok(sizeOf(small.ack) <= 20, `a CONNACK of ${sizeOf(small.ack)} bytes`);
        assert.equal(small.ack.reasonCode, 0);
        // What the client must know stays: the broker's own limits.
        const props = small.ack.properties!;
        assert.equal(props.maximumPacketSize, full.ack.properties!.maximumPacketSize);
        assert.equal(props.receiveMaximum, full.ack.properties!.receiveMaximum);
        assert.equal(
          props.sharedSubscriptionAvailable,
          undefined,
          "absent: available all the same",
        );
        await roundTrip(small.c); // connected
      } finally {
        await full.c.end();
        await small.c.end();
      }
    }),
);

Deno.test(
  "mqtt 5: a CONNACK that cannot fit the client's Maximum Packet Size is not sent",
  opts,
  () =>
    withMqttBroker(async (b) => {
      // An assigned client id (none asked) alone is 40 bytes.
      const { c, ack } = await connectWith(b.mqttPort, 30, "");
      try {
        assert.equal(ack, undefined, "no CONNACK");
        await c.closedWithin(5000);
        assert.equal((await b.mqttStats()).oversize_out, 1, "counted");
        assert.equal((await b.mqttStats()).sessions, 0, "no session made");
      } finally {
        await c.end();
      }
    }),
);
