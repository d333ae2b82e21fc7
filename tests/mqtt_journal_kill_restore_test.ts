/**
 * A broker SIGKILLed while it reads its MQTT journal back (`--data-dir`),
 * again and again, loses nothing acknowledged and keeps the order: hostile
 * review 39c R4 (a restart moved each row as a delete and a write, the
 * store's own commit every 20,000 writes fell between them, and a kill
 * right after it lost that row: 49,997 of 50,000 after 3 kills; the rows a
 * move left behind came back before those it moved). Each restart here is
 * killed at a different point: the moment its journal's WAL has grown by
 * its first, second and third commit (the restore's own, before the MQTT
 * port opens), then one starts for good and the session gets its backlog.
 * Both the numbered journal and the one-time move of a file from before
 * the rows were numbered (table `queued`).
 */
import assert from "node:assert/strict";
import mqttPacket from "mqtt-packet";
import { mqttOpts as opts, RawMqtt } from "./helpers/mqtt.ts";
import { sleep } from "./helpers/raw.ts";
import { durableBroker, killAfter, writeLegacy } from "./helpers/mqtt_durable.ts";

/** More than one store commit's worth (20,000 writes) of rows moved, twice over. */
const N = 30_000;
/**
 * After how many commits to its journal each restart is killed, in turn:
 * during the copies, after the mark that they are all written, among the
 * deletes of the old rows (this branch); amid the moves (before).
 */
const KILLS = [1, 2, 3];

const payload = (i: number) => `m${String(i).padStart(6, "0")}`;
const expected = Array.from({ length: N }, (_, i) => payload(i + 1));

/** What session `clientId` gets back (QoS 1 acknowledged as it comes), once 1 s passes with nothing. */
async function backlog(port: number, clientId: string): Promise<string[]> {
  const c = await RawMqtt.connect(port, { clientId, clean: false });
  const got: string[] = [];
  for (let quiet = 0; quiet < 10;) {
    const packets = c.packets.splice(0);
    const acks: Uint8Array[] = [];
    for (const p of packets) {
      if (p.cmd !== "publish") continue;
      got.push(String(p.payload));
      if (p.qos === 1) {
        acks.push(mqttPacket.generate({ cmd: "puback", messageId: p.messageId! }));
      }
    }
    if (acks.length > 0) await c.write(new Uint8Array(Buffer.concat(acks)));
    quiet = packets.length === 0 ? quiet + 1 : 0;
    await sleep(100);
  }
  await c.end();
  return got;
}

/** Kills restarts at each point of {@link KILLS}, then starts for good: what `clientId` gets. */
async function killedRestarts(dir: string, clientId: string): Promise<string[]> {
  const during: boolean[] = [];
  for (const commits of KILLS) during.push(await killAfter(dir, commits));
  // Every kill fell within a restore (else this tested nothing).
  assert.deepEqual(during, KILLS.map(() => true));
  const { b, port } = await durableBroker(dir, "batch");
  try {
    assert.match(b.stderr(), /Read 1 MQTT session\(s\) back/);
    return await backlog(port, clientId);
  } finally {
    await b.stop();
  }
}

/** Says where the first difference from `expected` is (the arrays are too long to print). */
function compare(got: string[]): string {
  const unique = new Set(got).size;
  const at = got.findIndex((p, i) => p !== expected[i]);
  return `got ${got.length} (${unique} distinct) of ${N}; first out of place at ${at}: ${
    got.slice(Math.max(0, at - 1), at + 2)
  }`;
}

Deno.test({
  name:
    "mqtt journal: SIGKILLs at 3 points of a restart's restore lose no acknowledged QoS 1 message and keep the order",
  ...opts,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "mqtt-journal-kill-" });
    try {
      const { b, port } = await durableBroker(dir, "batch", "--max-pending", "67108864");
      try {
        const s = await RawMqtt.connect(port, { clientId: "sess", clean: false });
        await s.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "k/#", qos: 1 }] });
        await s.next("suback");
        await s.send({ cmd: "disconnect" });
        await s.end();
        const pub = await RawMqtt.connect(port, { clientId: "pub" });
        for (let i = 0; i < N; i += 1000) {
          const batch = [];
          for (let j = i; j < i + 1000; j++) {
            batch.push(mqttPacket.generate({
              cmd: "publish",
              topic: "k/x",
              payload: payload(j + 1),
              qos: 1,
              messageId: (j % 60_000) + 1,
            } as mqttPacket.Packet));
          }
          await pub.write(new Uint8Array(Buffer.concat(batch)));
          for (let j = 0; j < 1000; j++) await pub.next("puback", 30_000);
        }
        await pub.end();
      } finally {
        await b.stop();
      }
      const got = await killedRestarts(dir, "sess");
      assert.ok(got.length === N && got.every((p, i) => p === expected[i]), compare(got));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "mqtt journal: SIGKILLs at 3 points of the one-time move of a file from before the rows were numbered lose no row and keep the order",
  ...opts,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "mqtt-journal-kill-legacy-" });
    try {
      const { b } = await durableBroker(dir, "batch");
      await b.stop();
      await writeLegacy(dir, "old", ["k/#", "k/x"], expected);
      const got = await killedRestarts(dir, "old");
      assert.ok(got.length === N && got.every((p, i) => p === expected[i]), compare(got));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
