/**
 * A bystander is served while one publish fans out to an away persistent
 * session's 8,000 overlapping subscriptions, each delivery a journal row
 * (`--data-dir`): hostile review 39b Q3 (under `--fsync always` each row
 * was a synced commit: every other client stalled 17.7 s; under `batch`
 * 1.6 s, a filter lookup that scanned the session's filters per
 * subscription). The rows of that publish are then all on disk: the
 * session gets its 8,000 copies after a SIGKILL.
 */
import assert from "node:assert/strict";
import mqttPacket from "mqtt-packet";
import {
  DEEP_TOPIC as TOPIC,
  deepFilter as filter,
  durableBroker as broker,
} from "./helpers/mqtt_durable.ts";
import { mqttOpts as opts, RawMqtt } from "./helpers/mqtt.ts";
import { sleep } from "./helpers/raw.ts";

const FILTERS = 8000;

for (const fsync of ["always", "batch"]) {
  Deno.test({
    name:
      `mqtt journal (--fsync ${fsync}): a bystander waits under 1.5 s while a publish fans out to ${FILTERS} rows of one away session`,
    ...opts,
    fn: async () => {
      const dir = await Deno.makeTempDir({ prefix: "mqtt-journal-fanout-" });
      const { b, port } = await broker(dir, fsync);
      const clients: RawMqtt[] = [];
      try {
        const amp = await RawMqtt.connect(port, { clientId: "amp", clean: false });
        for (let k = 0, id = 1; k < FILTERS; k += 1000, id++) {
          const subscriptions = [];
          for (let i = k; i < k + 1000; i++) subscriptions.push({ topic: filter(i), qos: 0 });
          await amp.send({ cmd: "subscribe", messageId: id, subscriptions } as mqttPacket.Packet);
          await amp.next("suback", 30_000);
        }
        await amp.send({ cmd: "disconnect" });
        await amp.end();
        const sub = await RawMqtt.connect(port, { clientId: "honest-sub" });
        await sub.send({
          cmd: "subscribe",
          messageId: 1,
          subscriptions: [{ topic: "other", qos: 0 }],
        });
        await sub.next("suback");
        const pub = await RawMqtt.connect(port, { clientId: "honest-pub" });
        const attacker = await RawMqtt.connect(port, { clientId: "attacker" });
        clients.push(sub, pub, attacker);
        // The bystander: a timestamped publish every 10 ms for 3 s, the attacker's one at 0.5 s.
        const delays: number[] = [];
        const reading = (async () => {
          for (const end = Date.now() + 8000; delays.length < 300 && Date.now() < end;) {
            const p = sub.packets.shift();
            if (p === undefined) {
              await sleep(2);
              continue;
            }
            if (p.cmd === "publish") delays.push(Date.now() - Number(String(p.payload)));
          }
        })();
        for (let i = 0; i < 300; i++) {
          if (i === 50) {
            await attacker.send(
              { cmd: "publish", topic: TOPIC, payload: "x", qos: 0 } as mqttPacket.Packet,
            );
          }
          await pub.send(
            {
              cmd: "publish",
              topic: "other",
              payload: String(Date.now()),
              qos: 0,
            } as mqttPacket.Packet,
          );
          await sleep(10);
        }
        await reading;
        const worst = Math.max(...delays);
        assert.equal(delays.length, 300, `got ${delays.length} of 300`);
        assert.ok(worst < 1500, `a bystander waited ${worst} ms`);
      } finally {
        for (const c of clients) await c.end();
        await b.stop();
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}
