/**
 * hostile review 43b B3: a QoS 2 PUBLISH reaches a live persistent
 * subscriber before the commit its PUBREC waits for; if that commit does
 * not happen (a full disk here, a SIGKILL in the same turn in the chaos
 * run: 1 of 48,143 twice over 28 kills) and the broker is killed, the
 * publisher's resend (DUP, same id, as MQTT tells it: it never had PUBREC)
 * finds no id on disk and is routed again: the subscriber's session, kept
 * across the restart, gets the one message twice (MQTT 4.3.3: no
 * duplicate onward delivery). The test mounts a 4 MiB tmpfs: skipped when
 * not root.
 */
import assert from "node:assert/strict";
import type mqttPacket from "mqtt-packet";
import { Buffer } from "node:buffer";
import { durableBroker } from "./helpers/mqtt_durable.ts";
import { mqttOpts as opts, RawMqtt } from "./helpers/mqtt.ts";
import { sleep } from "./helpers/raw.ts";
import { canMount, fill, run, smallDisk } from "./helpers/small_disk.ts";

const mountable = canMount("dist-h43-");

/** Answers the QoS 2 exchange as a client does; counts the PUBLISHes of `payload` bytes. */
function answer(c: RawMqtt, size: number, seen: { n: number }): () => Promise<void> {
  return async () => {
    for (const p of c.packets.splice(0)) {
      if (p.cmd === "publish") {
        const m = p as mqttPacket.IPublishPacket;
        if (m.payload.length === size) seen.n++;
        if (m.qos === 2) await c.send({ cmd: "pubrec", messageId: m.messageId } as never);
      } else if (p.cmd === "pubrel") {
        await c.send(
          { cmd: "pubcomp", messageId: (p as { messageId: number }).messageId } as never,
        );
      }
    }
  };
}

Deno.test({
  name:
    "mqtt hostile43 B3: a QoS 2 publish routed live but not kept is not routed again after a kill",
  ignore: !mountable,
  ...opts,
}, async () => {
  const own = smallDisk("dist-h43-")!;
  const size = 300_000;
  let { b, port } = await durableBroker(`${own}/data`, "batch");
  try {
    const seen = { n: 0 };
    const sub = await RawMqtt.connect(port, { clientId: "s", clean: false });
    await sub.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "z/#", qos: 2 }] });
    await sub.next("suback");
    // The publisher's persistent session is on disk before the disk fills.
    const pub = await RawMqtt.connect(port, { clientId: "pp", clean: false });
    await sleep(300);
    await fill(own);
    const publish = (dup: boolean) =>
      ({
        cmd: "publish",
        topic: "z/x",
        payload: Buffer.alloc(size, 120),
        qos: 2,
        messageId: 7,
        dup,
      }) as mqttPacket.Packet;
    await pub.send(publish(false));
    const take = answer(sub, size, seen);
    for (let i = 0; i < 20 && seen.n === 0; i++) {
      await sleep(100);
      await take();
    }
    assert.equal(seen.n, 1, "the live subscriber had it before the commit");
    assert.equal(pub.packets.some((p) => p.cmd === "pubrec"), false, "no PUBREC: not kept");
    b.child.kill("SIGKILL");
    await b.stop();
    await pub.end();
    await sub.end();
    await Deno.remove(`${own}/filler`);
    ({ b, port } = await durableBroker(`${own}/data`, "batch"));
    const back = await RawMqtt.connect(port, { clientId: "s", clean: false });
    const again = await RawMqtt.connect(port, { clientId: "pp", clean: false });
    // The client never had PUBREC: it sends the PUBLISH again, DUP.
    await again.send(publish(true));
    await again.next("pubrec", 5000);
    const takeBack = answer(back, size, seen);
    for (let i = 0; i < 10; i++) {
      await sleep(100);
      await takeBack();
    }
    // main: 2 (the resend routed as a new message to the session that had it).
    assert.equal(seen.n, 1, "copies the subscriber's session got");
    await again.end();
    await back.end();
  } finally {
    await b.stop();
    run("umount", "-l", own);
    await Deno.remove(own, { recursive: true }).catch(() => {});
  }
});
