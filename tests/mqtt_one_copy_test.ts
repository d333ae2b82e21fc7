/**
 * A publish that several subscriptions of one MQTT session match goes to it
 * once (MQTT-3.3.5-1, MQTT-3.3.4-2), at the highest QoS granted, carrying
 * every matching subscription's identifier (MQTT-3.3.4-4): hostile review
 * 42b Z5, where a copy and a journal row per matching subscription made 40
 * away sessions of 300 filters write 12,000 rows a publish.
 */
import assert from "node:assert/strict";
import type mqttPacket from "mqtt-packet";
import { DEEP_TOPIC, deepFilter, durableBroker, journalRows } from "./helpers/mqtt_durable.ts";
import { mqttOpts as opts, RawMqtt, withMqttBroker } from "./helpers/mqtt.ts";
import { sleep, waitFor } from "./helpers/raw.ts";

type Publish = mqttPacket.IPublishPacket;

/** Publishes at QoS 2 and waits for PUBCOMP. */
async function publish2(pub: RawMqtt, topic: string, payload: string, id: number, v = 4) {
  await pub.send({ cmd: "publish", topic, payload, qos: 2, messageId: id } as Publish, v);
  await pub.next("pubrec");
  await pub.send({ cmd: "pubrel", messageId: id } as mqttPacket.Packet, v);
  await pub.next("pubcomp");
}

/** The PUBLISHes received so far, taken. */
function publishes(c: RawMqtt): Publish[] {
  const got = c.packets.filter((p) => p.cmd === "publish") as Publish[];
  c.packets.splice(0, c.packets.length, ...c.packets.filter((p) => p.cmd !== "publish"));
  return got;
}

/** A delivery's identifiers, sorted (none: []). */
function ids(p: Publish): number[] {
  const id = p.properties?.subscriptionIdentifier;
  return id === undefined ? [] : (Array.isArray(id) ? [...id] : [id]).sort((a, b) => a - b);
}

const FILTERS = 30;

Deno.test(
  `mqtt one copy: an away session's ${FILTERS} overlapping filters take one row and one delivery a publish, at the highest QoS (--data-dir; hostile 42b Z5)`,
  opts,
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "mqtt-one-copy-" });
    const { b, port } = await durableBroker(dir, "batch");
    try {
      const away = await RawMqtt.connect(port, { clientId: "many", clean: false });
      // Granted QoS 1 to all but the last, QoS 2 to it.
      const subscriptions = Array.from({ length: FILTERS }, (_, i) => ({
        topic: deepFilter(i),
        qos: i === FILTERS - 1 ? 2 : 1,
      }));
      await away.send({ cmd: "subscribe", messageId: 1, subscriptions } as mqttPacket.Packet);
      await away.next("suback");
      await away.send({ cmd: "disconnect" });
      await away.end();
      const pub = await RawMqtt.connect(port, { clientId: "pub" });
      for (let i = 1; i <= 5; i++) await publish2(pub, DEEP_TOPIC, `m${i}`, i);
      await pub.end();
      // PUBCOMP waits for the rows' commit. Before: a row per matching filter, 150.
      assert.equal(journalRows(dir), 5);
      const back = await RawMqtt.connect(port, { clientId: "many", clean: false });
      await waitFor(() => back.packets.filter((p) => p.cmd === "publish").length >= 5, 5000, "5");
      await sleep(300);
      const got = publishes(back);
      assert.deepEqual(got.map((p) => `${p.payload} ${p.qos}`), [
        "m1 2",
        "m2 2",
        "m3 2",
        "m4 2",
        "m5 2",
      ]);
      await back.end();
    } finally {
      await b.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test(
  "mqtt one copy: 3.1.1, live, at the highest QoS the subscriptions and the publish allow",
  opts,
  () =>
    withMqttBroker(async (b) => {
      const sub = await RawMqtt.connect(b.mqttPort, { clientId: "v4" });
      const subscriptions = [{ topic: "o/#", qos: 0 }, { topic: "o/+", qos: 2 }, {
        topic: "o/x",
        qos: 1,
      }, { topic: "+/x", qos: 0 }];
      await sub.send({ cmd: "subscribe", messageId: 1, subscriptions } as mqttPacket.Packet);
      await sub.next("suback");
      const pub = await RawMqtt.connect(b.mqttPort, { clientId: "v4-pub" });
      await publish2(pub, "o/x", "two", 1);
      await pub.send(
        { cmd: "publish", topic: "o/x", payload: "one", qos: 1, messageId: 2 } as never,
      );
      await pub.next("puback");
      await pub.send({ cmd: "publish", topic: "o/y", payload: "y", qos: 2, messageId: 3 } as never);
      await pub.next("pubrec");
      await waitFor(() => sub.packets.filter((p) => p.cmd === "publish").length >= 3, 5000, "3");
      await sleep(300);
      // Before: 4 copies of each publish to o/x (QoS 0, 2, 1, 0), 2 of o/y.
      assert.deepEqual(publishes(sub).map((p) => `${p.payload} ${p.qos}`), [
        "two 2",
        "one 1",
        "y 2",
      ]);
      await pub.end();
      await sub.end();
    }),
);

Deno.test(
  "mqtt one copy: MQTT 5, every matching subscription's identifier on the one copy; No Local and Retain As Published",
  opts,
  () =>
    withMqttBroker(async (b) => {
      const sub = await RawMqtt.connect(b.mqttPort, { clientId: "v5" }, 5);
      const subscribe = async (topic: string, qos: number, id: number, more = {}) => {
        await sub.send({
          cmd: "subscribe",
          // A packet id is never 0 (MQTT-2.2.1-3: refused, as Mosquitto does).
          messageId: id || 99,
          subscriptions: [{ topic, qos, ...more }],
          properties: id > 0 ? { subscriptionIdentifier: id } : undefined,
        } as mqttPacket.Packet, 5);
        await sub.next("suback");
      };
      await subscribe("o/#", 0, 11);
      await subscribe("o/+", 2, 0);
      await subscribe("o/x", 1, 13);
      await subscribe("+/x", 0, 14);
      await subscribe("n/#", 2, 21, { nl: true });
      await subscribe("n/x", 0, 22);
      await subscribe("r/#", 1, 31, { rap: true });
      await subscribe("r/x", 0, 32, { rap: true });
      await subscribe("r/+", 1, 33);
      const pub = await RawMqtt.connect(b.mqttPort, { clientId: "v5-pub" }, 5);
      await publish2(pub, "o/x", "o", 1, 5);
      await publish2(pub, "n/x", "n-other", 2, 5);
      // Its own publish: n/# has No Local, so n/x and +/x carry it.
      await sub.send(
        { cmd: "publish", topic: "n/x", payload: "n-own", qos: 1, messageId: 9 } as never,
        5,
      );
      await sub.next("puback");
      // RETAIN set: Retain As Published asks for it, the other subscription for it cleared: two copies.
      await pub.send(
        { cmd: "publish", topic: "r/x", payload: "r", qos: 1, messageId: 4, retain: true } as never,
        5,
      );
      await pub.next("puback");
      await waitFor(() => sub.packets.filter((p) => p.cmd === "publish").length >= 5, 5000, "5");
      await sleep(300);
      const got = publishes(sub).map((p) =>
        `${p.payload} qos ${p.qos} retain ${p.retain} ids ${ids(p).join(",")}`
      );
      assert.deepEqual(got.slice(0, 3), [
        "o qos 2 retain false ids 11,13,14",
        "n-other qos 2 retain false ids 14,21,22",
        "n-own qos 0 retain false ids 14,22",
      ]);
      assert.deepEqual(got.slice(3).sort(), [
        "r qos 1 retain false ids 14,33",
        "r qos 1 retain true ids 31,32",
      ]);
      await pub.end();
      await sub.end();
    }),
);
