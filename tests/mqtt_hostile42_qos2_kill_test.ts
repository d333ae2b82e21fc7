/**
 * hostile review 42b Z3: the packet ids a persistent session's client has
 * PUBLISHed at QoS 2 and not yet released (PUBREL) are not kept on disk.
 * After a SIGKILL the client, which never read the PUBREC (its connection
 * reset before it did: paho under load), sends the PUBLISH again with DUP,
 * as MQTT tells it to; the restarted broker routes it a second time, so a
 * QoS 2 subscriber gets the message twice. MQTT 5 §4.3.3 / 3.1.1 §4.3.3:
 * until PUBREL the receiver answers a PUBLISH of that id with PUBREC and
 * "MUST NOT cause duplicate messages to be delivered to any onward
 * recipients"; the id is session state (§4.1). End to end with paho
 * (z5_chaos.py, 20 s, 8 kills): 103 of 52,277 messages received twice.
 */
import assert from "node:assert/strict";
import type mqttPacket from "mqtt-packet";
import { durableBroker } from "./helpers/mqtt_durable.ts";
import { mqttOpts as opts, RawMqtt } from "./helpers/mqtt.ts";
import { sleep } from "./helpers/raw.ts";

Deno.test(
  "mqtt hostile42 Z3: a QoS 2 PUBLISH sent again after a SIGKILL is not routed twice",
  opts,
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "mqtt-h42-z3-" });
    let { b, port } = await durableBroker(dir, "batch");
    try {
      const sub = await RawMqtt.connect(port, { clientId: "q", clean: false });
      await sub.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "t/#", qos: 2 }] });
      await sub.next("suback");
      await sub.end();
      const publish = (dup: boolean) =>
        ({
          cmd: "publish",
          topic: "t/x",
          payload: "once",
          qos: 2,
          messageId: 5,
          dup,
        }) as mqttPacket.Packet;
      const pub = await RawMqtt.connect(port, { clientId: "pp", clean: false });
      await pub.send(publish(false));
      // PUBREC: the broker has the message (its row committed), and owes PUBCOMP for id 5.
      await pub.next("pubrec");
      b.child.kill("SIGKILL");
      await b.stop();
      await pub.end();
      ({ b, port } = await durableBroker(dir, "batch"));
      // The client never read that PUBREC (its connection reset first): it sends the PUBLISH again.
      const again = await RawMqtt.connect(port, { clientId: "pp", clean: false });
      await again.send(publish(true));
      await again.next("pubrec");
      await again.send({ cmd: "pubrel", messageId: 5 });
      await again.next("pubcomp");
      await again.end();
      const back = await RawMqtt.connect(port, { clientId: "q", clean: false });
      const got: string[] = [];
      for (let quiet = 0; quiet < 5;) {
        const packets = back.packets.splice(0);
        for (const p of packets) {
          if (p.cmd === "publish") {
            got.push(`${p.payload} id ${p.messageId}`);
            await back.send({ cmd: "pubrec", messageId: p.messageId! });
          } else if (p.cmd === "pubrel") {
            await back.send({ cmd: "pubcomp", messageId: p.messageId! });
          }
        }
        quiet = packets.length === 0 ? quiet + 1 : 0;
        await sleep(100);
      }
      await back.end();
      // main: two new PUBLISHes of "once" (ids 1 and 2).
      assert.equal(got.length, 1, `one QoS 2 message delivered as ${got.join(", ")}`);
    } finally {
      await b.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test(
  "mqtt: an id released (PUBCOMP) before a SIGKILL is free after the restart: its next PUBLISH is routed",
  opts,
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "mqtt-qos2-free-" });
    let { b, port } = await durableBroker(dir, "batch");
    try {
      const publish = (payload: string) =>
        ({ cmd: "publish", topic: "t/x", payload, qos: 2, messageId: 9 }) as mqttPacket.Packet;
      const pub = await RawMqtt.connect(port, { clientId: "pf", clean: false });
      await pub.send(publish("first"));
      await pub.next("pubrec");
      await pub.send({ cmd: "pubrel", messageId: 9 });
      // PUBCOMP: the id is free, on disk too (its row's delete committed).
      await pub.next("pubcomp");
      b.child.kill("SIGKILL");
      await b.stop();
      await pub.end();
      ({ b, port } = await durableBroker(dir, "batch"));
      const sub = await RawMqtt.connect(port, { clientId: "s", clean: true });
      await sub.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "t/#", qos: 0 }] });
      await sub.next("suback");
      const again = await RawMqtt.connect(port, { clientId: "pf", clean: false });
      await again.send(publish("second"));
      await again.next("pubrec");
      const p = await sub.next("publish") as mqttPacket.IPublishPacket;
      assert.equal(String(p.payload), "second");
      await again.end();
      await sub.end();
    } finally {
      await b.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
);
