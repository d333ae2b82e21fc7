/**
 * hostile review 42b Z2: while the data directory is full, a QoS 2 PUBLISH
 * whose commit fails is refused (the connection closed, no PUBREC: 41b X2),
 * but it was already routed to the live subscribers; its resend (DUP, same
 * packet id, as MQTT tells the client) is then "published anew", so a live
 * QoS 2 subscriber gets the one message again at each resend (paho: 9
 * copies of one publish in 8 s). README: "a resent QoS 2 publish is not
 * routed twice". The test mounts a 4 MiB tmpfs: skipped when not root.
 */
import assert from "node:assert/strict";
import type mqttPacket from "mqtt-packet";
import { durableBroker } from "./helpers/mqtt_durable.ts";
import { mqttOpts as opts, RawMqtt } from "./helpers/mqtt.ts";
import { sleep } from "./helpers/raw.ts";
import { fill, run, smallDisk } from "./helpers/small_disk.ts";

const canMount = (() => {
  const d = smallDisk("dist-h42-");
  if (d === undefined) return false;
  run("umount", "-l", d);
  Deno.removeSync(d, { recursive: true });
  return true;
})();

Deno.test({
  name: "mqtt hostile42 Z2: a refused QoS 2 PUBLISH sent again reaches a live subscriber once",
  ignore: !canMount,
  ...opts,
}, async () => {
  const own = smallDisk("dist-h42-")!;
  const { b, port } = await durableBroker(`${own}/data`, "batch");
  try {
    // An away persistent session on z/#: a publish to z/x writes it a row (which cannot commit).
    const away = await RawMqtt.connect(port, { clientId: "q1", clean: false });
    await away.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "z/#", qos: 2 }] });
    await away.next("suback");
    await away.send({ cmd: "disconnect" });
    await away.end();
    // A live clean subscriber at QoS 2.
    const live = await RawMqtt.connect(port, { clientId: "live" });
    await live.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "z/#", qos: 2 }] });
    await live.next("suback");
    await fill(own);
    const publish = (dup: boolean) =>
      ({
        cmd: "publish",
        topic: "z/x",
        payload: Buffer.alloc(300_000, 120),
        qos: 2,
        messageId: 7,
        dup,
      }) as mqttPacket.Packet;
    for (const dup of [false, true, true]) {
      const pub = await RawMqtt.connect(port, { clientId: "pp", clean: false });
      await pub.send(publish(dup));
      await pub.closedWithin(10_000);
      await pub.end();
    }
    await sleep(300);
    const copies = live.packets.filter((p) => p.cmd === "publish" && !p.dup).length;
    await live.end();
    // main: 2–3 (a copy per try of the one message).
    assert.equal(copies, 1, `one QoS 2 message, ${copies} new PUBLISHes to a live subscriber`);
  } finally {
    await b.stop();
    run("umount", "-l", own);
    Deno.removeSync(own, { recursive: true });
  }
});
