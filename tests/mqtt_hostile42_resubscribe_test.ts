/**
 * hostile review 42b Z1: a persistent session's client that comes back and
 * SUBSCRIBEs its filter again (paho's documented pattern: subscribe in
 * on_connect) must still get every message queued for it while it was away.
 * MQTT 3.1.1 §3.8.4 [MQTT-3.8.4-3]: the new subscription replaces the old
 * one, "but the flow of publications MUST NOT be interrupted". The broker
 * had PUBACKed them all; Mosquitto delivers all 3,000 of the same run.
 */
import assert from "node:assert/strict";
import type mqttPacket from "mqtt-packet";
import { mqttOpts as opts, RawMqtt } from "./helpers/mqtt.ts";
import { startDist } from "./helpers/dist.ts";
import { sleep, waitFor } from "./helpers/raw.ts";

const QUEUED = 40;

/** Queues QUEUED QoS 1 for away session `back`, returns the payloads it gets when it returns. */
async function comeBack(port: number, subscribeAgain: boolean): Promise<string[]> {
  const props = { sessionExpiryInterval: 3600, receiveMaximum: 5 };
  const sub = await RawMqtt.connect(port, { clientId: "back", clean: false, properties: props }, 5);
  await sub.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "r/#", qos: 1 }] }, 5);
  await sub.next("suback");
  await sub.send({ cmd: "disconnect" }, 5);
  await sub.end();
  const pub = await RawMqtt.connect(port, { clientId: "pub" });
  for (let i = 0; i < QUEUED; i++) {
    await pub.send(
      { cmd: "publish", topic: "r/x", payload: `m${i}`, qos: 1, messageId: i + 1 } as never,
    );
  }
  await waitFor(
    () => pub.packets.filter((p) => p.cmd === "puback").length === QUEUED,
    5000,
    "acks",
  );
  await pub.end();
  const back = await RawMqtt.connect(
    port,
    { clientId: "back", clean: false, properties: props },
    5,
  );
  if (subscribeAgain) {
    await back.send(
      { cmd: "subscribe", messageId: 2, subscriptions: [{ topic: "r/#", qos: 1 }] },
      5,
    );
  }
  const got: string[] = [];
  const until = Date.now() + 3000;
  while (got.length < QUEUED && Date.now() < until) {
    const p = back.packets.find((p) => p.cmd === "publish") as mqttPacket.IPublishPacket;
    if (p === undefined) {
      await sleep(20);
      continue;
    }
    back.packets.splice(back.packets.indexOf(p), 1);
    got.push(String(p.payload));
    await back.send({ cmd: "puback", messageId: p.messageId } as never, 5);
  }
  await back.end();
  return got;
}

for (const dataDir of [false, true]) {
  Deno.test(
    `mqtt hostile42 Z1: SUBSCRIBE again on return keeps the queued messages${
      dataDir ? " (--data-dir)" : ""
    }`,
    opts,
    async () => {
      const dir = await Deno.makeTempDir();
      const b = await startDist([
        "broker",
        ...["--port", "0", "--mqtt-port", "0"],
        ...(dataDir ? ["--data-dir", dir] : []),
      ], { timeoutMs: 30_000 });
      try {
        const port = Number(b.stderr().match(/MQTT on 127\.0\.0\.1:(\d+)/)![1]);
        const got = await comeBack(port, true);
        // main: 5 (the window sent before the SUBSCRIBE), the other 35 dropped with the old queue.
        assert.equal(new Set(got).size, QUEUED, `got ${got.length}: ${got.join()}`);
      } finally {
        await b.stop();
        await Deno.remove(dir, { recursive: true });
      }
    },
  );
}

Deno.test("mqtt hostile42 Z1 control: no SUBSCRIBE on return, all delivered", opts, async () => {
  const b = await startDist(["broker", "--port", "0", "--mqtt-port", "0"]);
  try {
    const port = Number(b.stderr().match(/MQTT on 127\.0\.0\.1:(\d+)/)![1]);
    assert.equal(new Set(await comeBack(port, false)).size, QUEUED);
  } finally {
    await b.stop();
  }
});

Deno.test(
  "mqtt SUBSCRIBE again on return: SUBACK, the queued messages, then the retained value again",
  opts,
  async () => {
    const b = await startDist(["broker", "--port", "0", "--mqtt-port", "0"]);
    try {
      const port = Number(b.stderr().match(/MQTT on 127\.0\.0\.1:(\d+)/)![1]);
      const props = { sessionExpiryInterval: 3600, receiveMaximum: 3 };
      const away = await RawMqtt.connect(
        port,
        { clientId: "rb", clean: false, properties: props },
        5,
      );
      await away.send(
        { cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "t/#", qos: 1 }] },
        5,
      );
      await away.next("suback");
      await away.send({ cmd: "disconnect" }, 5);
      await away.end();
      const pub = await RawMqtt.connect(port, { clientId: "rp" });
      for (let i = 0; i < 10; i++) {
        const retain = i === 9;
        await pub.send(
          {
            cmd: "publish",
            topic: "t/x",
            payload: `m${i}`,
            qos: 1,
            messageId: i + 1,
            retain,
          } as never,
        );
      }
      await waitFor(
        () => pub.packets.filter((p) => p.cmd === "puback").length === 10,
        5000,
        "acks",
      );
      await pub.end();
      const back = await RawMqtt.connect(
        port,
        { clientId: "rb", clean: false, properties: props },
        5,
      );
      await back.send(
        { cmd: "subscribe", messageId: 2, subscriptions: [{ topic: "t/#", qos: 1 }] },
        5,
      );
      const seen: string[] = [];
      const until = Date.now() + 5000;
      while (seen.length < 12 && Date.now() < until) {
        const p = back.packets.shift();
        if (p === undefined) {
          await sleep(20);
          continue;
        }
        if (p.cmd === "suback") seen.push("SUBACK");
        if (p.cmd !== "publish") continue;
        const pp = p as mqttPacket.IPublishPacket;
        seen.push(`${pp.payload}${pp.retain ? " retained" : ""}`);
        await back.send({ cmd: "puback", messageId: pp.messageId } as never, 5);
      }
      await back.end();
      // The window (3) went at CONNECT; then SUBACK, the rest in order, then the retained value again.
      assert.deepEqual(seen, [
        "m0",
        "m1",
        "m2",
        "SUBACK",
        ...Array.from({ length: 7 }, (_, i) => `m${i + 3}`),
        "m9 retained",
      ]);
    } finally {
      await b.stop();
    }
  },
);
