/**
 * PUBACK and PUBREC go in the order the PUBLISHes came (MQTT 5 §4.6), a
 * refusal too: with `--data-dir` and an away persistent session on the
 * topic, the first PUBLISH's acknowledgement waits for the journal's
 * commit, and a refused one right after it waits its turn (hostile review
 * 40a T1: the refusal went first, 20 of 20 rounds; a client matching acks
 * to its window as a FIFO then blamed the wrong message). A PUBCOMP for a
 * PUBREL sent before its PUBREC arrived goes after that PUBREC.
 */
import assert from "node:assert/strict";
import mp, { type Packet } from "mqtt-packet";
import { mqttOpts, RawMqtt, withMqttBroker } from "./helpers/mqtt.ts";
import { concat, waitFor } from "./helpers/raw.ts";

const gen = (p: unknown) => mp.generate(p as Packet, { protocolVersion: 5 });
const publish = (topic: string, qos: number, messageId: number) =>
  gen({ cmd: "publish", topic, payload: "x", qos, messageId, dup: false, retain: false });

/** A v5 session subscribed to `filter` at QoS 2, gone away (kept an hour). */
async function away(port: number, filter: string): Promise<void> {
  const c = await RawMqtt.connect(port, {
    clientId: "away",
    clean: false,
    properties: { sessionExpiryInterval: 3600 },
  }, 5);
  await c.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: filter, qos: 2 }] }, 5);
  await c.next("suback");
  await c.send({ cmd: "disconnect" }, 5);
  await c.end();
}

/** What the broker answers to `bytes`, written at once: `count` acknowledgements as [cmd, id, reason]. */
async function answers(port: number, bytes: Uint8Array, count: number): Promise<unknown[][]> {
  const c = await RawMqtt.connect(port, { clientId: "pub", clean: true }, 5);
  try {
    await c.write(bytes);
    await waitFor(() => c.packets.length >= count, 5000, `${count} acknowledgements`);
    return c.packets.map((p) => {
      const a = p as mp.IPubackPacket;
      return [a.cmd, a.messageId, a.reasonCode ?? 0];
    });
  } finally {
    await c.end();
  }
}

for (const fsync of ["always", "batch"]) {
  Deno.test({
    name: `mqtt ack order (--fsync ${fsync}): a refusal waits its turn`,
    ...mqttOpts,
    fn: async () => {
      const dir = await Deno.makeTempDir();
      try {
        await withMqttBroker(async (b) => {
          await away(b.mqttPort, "t/a");
          for (const [bad, reason] of [["$SYS/x", 0x87], ["a b/ c", 0x90]] as const) {
            for (const [qos, cmd] of [[1, "puback"], [2, "pubrec"]] as const) {
              for (let round = 0; round < 5; round++) {
                const got = await answers(
                  b.mqttPort,
                  concat([publish("t/a", qos, 1), publish(bad, qos, 2)]),
                  2,
                );
                assert.deepEqual(got, [[cmd, 1, 0], [cmd, 2, reason]], `${bad} QoS ${qos}`);
              }
            }
          }
          // PUBREL right behind its PUBLISH: PUBCOMP after the PUBREC.
          for (let round = 0; round < 5; round++) {
            const got = await answers(
              b.mqttPort,
              concat([publish("t/a", 2, 7), gen({ cmd: "pubrel", messageId: 7 })]),
              2,
            );
            assert.deepEqual(got, [["pubrec", 7, 0], ["pubcomp", 7, 0]]);
          }
        }, { dataDir: dir, fsync });
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}
