/**
 * A persistent session's subscriptions on disk (`--data-dir`) are a row
 * each (table `subscriptions`): a SUBSCRIBE or UNSUBSCRIBE writes what it
 * changed, not the session's row whole (hostile review 39b Q14: beside
 * 2,000 filters of 1,000 bytes each change wrote 3.9 MB). A data directory
 * written before (the subscriptions listed in the session's row) is read
 * back, and its rows written the new way at that start, a SIGKILL at any
 * of its commits losing none; an UNSUBACK sent is kept.
 */
import assert from "node:assert/strict";
import mqttPacket from "mqtt-packet";
import { DatabaseSync } from "node:sqlite";
import { mqttOpts as opts, RawMqtt } from "./helpers/mqtt.ts";
import { durableBroker, killAfter } from "./helpers/mqtt_durable.ts";
import { sleep, writeAll } from "./helpers/raw.ts";
import { Store } from "../store/mod.ts";
import { MQTT_FILE, SESSIONS } from "../roles/broker/mqtt/persist.ts";
import { DELIVERIES, deliveryKey, SUBSCRIPTIONS } from "../roles/broker/mqtt/journal.ts";

/** Filter `i` of session `s`: 1,000 bytes. */
const longFilter = (s: string, i: number) => `${s}/${i}/`.padEnd(1000, "x");

/** Bytes the process `pid` has written (write and pwrite: its files, sockets and logs). */
function written(pid: number): number {
  const io = Deno.readTextFileSync(`/proc/${pid}/io`);
  return Number(io.match(/^wchar: (\d+)/m)![1]);
}

/** SUBSCRIBEs `filters` at QoS 1, `per` to a packet, each SUBACK awaited. */
async function subscribeAll(c: RawMqtt, filters: string[], per = 100): Promise<void> {
  for (let i = 0; i < filters.length; i += per) {
    const subscriptions = filters.slice(i, i + per).map((topic) => ({ topic, qos: 1 as const }));
    await c.send({ cmd: "subscribe", messageId: 1 + i / per, subscriptions });
    await c.next("suback", 30_000);
  }
}

Deno.test({
  name:
    "mqtt subscriptions: beside 2,000 filters of 1,000 bytes a SUBSCRIBE or UNSUBSCRIBE writes what it changed, not the session (hostile39b Q14)",
  ignore: Deno.build.os !== "linux",
  ...opts,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "mqtt-subs-bytes-" });
    const { b, port } = await durableBroker(dir, "batch");
    try {
      const c = await RawMqtt.connect(port, { clientId: "wide", clean: false });
      await subscribeAll(c, Array.from({ length: 2000 }, (_, i) => longFilter("w", i)));
      await sleep(500); // its commits, sync and checkpoint done
      const before = written(b.child.pid);
      const rounds = 10;
      for (let i = 0; i < rounds; i++) {
        const topic = longFilter("extra", i);
        await c.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic, qos: 1 }] });
        await c.next("suback", 30_000);
        await c.send({ cmd: "unsubscribe", messageId: 2, unsubscriptions: [topic] });
        await c.next("unsuback", 30_000);
      }
      await sleep(500);
      const perChange = (written(b.child.pid) - before) / (2 * rounds);
      // main: 3.9 MB a change (the 2 MB row, in the WAL and again at the checkpoint).
      assert.ok(perChange < 64 * 1024, `${Math.round(perChange)} bytes written a change`);
      await c.end();
    } finally {
      await b.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** A QoS 1 PUBLISH to `topic` as a queue keeps it (packet id 0). */
const queued = (topic: string, payload: string) =>
  new Uint8Array(
    mqttPacket.generate(
      { cmd: "publish", topic, payload, qos: 1, messageId: 0 } as mqttPacket.Packet,
    ),
  );

/**
 * Writes what main's broker leaves: away sessions `old0`.. whose rows list
 * their subscriptions (`s/N/i`, numbered 1..), one delivery queued for
 * the first of each under the session's number.
 */
async function writeOldFormat(dir: string, sessions: number, filters: number): Promise<void> {
  const { b } = await durableBroker(dir, "batch");
  await b.stop();
  const store = new Store(`${dir}/${MQTT_FILE}`, { fsync: "off", tables: [SESSIONS, DELIVERIES] });
  for (let s = 0; s < sessions; s++) {
    const no = 10 + s;
    const subs = Array.from({ length: filters }, (_, i) => [`s/${s}/${i}`, 1, i + 1]);
    const row = { owner: null, version: 4, expiry: 3600, away: Date.now(), subs, no };
    store.put(SESSIONS, `old${s}`, JSON.stringify(row));
    store.put(DELIVERIES, deliveryKey(no, 1, 0), queued(`s/${s}/0`, `kept ${s}`));
  }
  await store.commit();
  store.close();
}

/** Each session's subscriptions' filters as the file holds them (table `subscriptions`). */
function subscriptionsOnDisk(dir: string): Map<string, string[]> {
  const db = new DatabaseSync(`${dir}/${MQTT_FILE}`, { readOnly: true });
  try {
    const owners = new Map<string, string>();
    for (const { k, v } of db.prepare(`SELECT k, v FROM ${SESSIONS}`).all()) {
      const row = JSON.parse(v as string);
      assert.equal(row.subs, undefined, `${k}'s row still lists its subscriptions`);
      owners.set(row.subsAt.toString(36), k as string);
    }
    const found = new Map<string, string[]>();
    for (const { k, v } of db.prepare(`SELECT k, v FROM ${SUBSCRIPTIONS} ORDER BY k`).all()) {
      const owner = owners.get((k as string).split("/")[0]);
      assert.ok(owner !== undefined, `a subscription row of no session: ${k}`);
      const list = found.get(owner) ?? [];
      list.push(JSON.parse(v as string)[0]);
      found.set(owner, list);
    }
    return found;
  } finally {
    db.close();
  }
}

/** How many session rows have `field`. */
function rowsWith(dir: string, field: string): number {
  const db = new DatabaseSync(`${dir}/${MQTT_FILE}`, { readOnly: true });
  try {
    const rows = db.prepare(`SELECT v FROM ${SESSIONS}`).all();
    return rows.filter(({ v }) => JSON.parse(v as string)[field] !== undefined).length;
  } finally {
    db.close();
  }
}

/** What session `clientId` gets, once 500 ms pass with nothing (QoS 1 acknowledged). */
async function received(c: RawMqtt): Promise<string[]> {
  const got: string[] = [];
  for (;;) {
    const p = await c.next("publish", 500).catch(() => undefined) as
      | mqttPacket.IPublishPacket
      | undefined;
    if (p === undefined) return got;
    got.push(`${p.topic} ${p.payload}`);
    if (p.qos === 1) await c.send({ cmd: "puback", messageId: p.messageId! });
  }
}

/** Publishes `payload` to `topic` at QoS 1 from `pub`, PUBACK awaited. */
async function publish(pub: RawMqtt, topic: string, payload: string, messageId = 1) {
  const packet = { cmd: "publish" as const, topic, payload, qos: 1 as const, messageId };
  await pub.send({ ...packet, dup: false, retain: false });
  await pub.next("puback", 5_000);
}

Deno.test({
  name:
    "mqtt subscriptions: a data dir written by the broker before (subscriptions in the session's row) is read back and written as rows, twice over",
  ...opts,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "mqtt-subs-old-" });
    try {
      await writeOldFormat(dir, 2, 3);
      for (const restart of [1, 2]) {
        const { b, port } = await durableBroker(dir, "batch");
        try {
          assert.match(b.stderr(), /Read 2 MQTT session\(s\) back/);
          const expect = new Map(
            [0, 1].map((s) => [`old${s}`, [0, 1, 2].map((i) => `s/${s}/${i}`)]),
          );
          const c = await RawMqtt.connect(port, { clientId: "old1", clean: false });
          const pub = await RawMqtt.connect(port, { clientId: `pub${restart}` });
          await publish(pub, "s/1/2", `live ${restart}`);
          await pub.end();
          const got = await received(c);
          await c.end();
          // The delivery queued before comes back the first time only (acknowledged then).
          assert.deepEqual(got, [
            ...restart === 1 ? ["s/1/0 kept 1"] : [],
            `s/1/2 live ${restart}`,
          ]);
          await b.stop();
          assert.deepEqual(subscriptionsOnDisk(dir), expect);
        } finally {
          await b.stop();
        }
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "mqtt subscriptions: SIGKILLs at the commits that write an old data dir's subscriptions as rows lose none",
  ...opts,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "mqtt-subs-kill-" });
    try {
      // 45,000 subscriptions: more than two store commits' worth (20,000 writes each), so each
      // start killed after its first commit has written some sessions' rows, one of them in part.
      const sessions = 45;
      const filters = 1000;
      await writeOldFormat(dir, sessions, filters);
      const during: boolean[] = [];
      const migrated: number[] = [];
      for (const commits of [1, 1]) {
        during.push(await killAfter(dir, commits));
        migrated.push(rowsWith(dir, "subsAt"));
      }
      assert.deepEqual(during, [true, true], "each kill fell within the restore");
      // Each kill left some sessions written the new way, not all.
      assert.ok(
        0 < migrated[0] && migrated[0] < migrated[1] && migrated[1] < sessions,
        `${migrated}`,
      );
      const { b, port } = await durableBroker(dir, "batch");
      try {
        assert.match(b.stderr(), new RegExp(`Read ${sessions} MQTT session\\(s\\) back`));
        const c = await RawMqtt.connect(port, { clientId: "old44", clean: false });
        assert.deepEqual(await received(c), ["s/44/0 kept 44"]);
        await c.end();
      } finally {
        await b.stop();
      }
      const disk = subscriptionsOnDisk(dir);
      assert.equal(disk.size, sessions);
      for (let s = 0; s < sessions; s++) {
        const want = Array.from({ length: filters }, (_, i) => `s/${s}/${i}`);
        assert.deepEqual(disk.get(`old${s}`), want, `old${s}`);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** Connects `id` (persistent), UNSUBSCRIBEs `topic`, and SIGKILLs `child` in the turn its UNSUBACK is read. */
async function unsubscribeThenKill(
  port: number,
  id: string,
  topic: string,
  child: Deno.ChildProcess,
) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const gen = (p: unknown) => mqttPacket.generate(p as mqttPacket.Packet);
  const connect = { cmd: "connect", protocolId: "MQTT", protocolVersion: 4, clientId: id };
  await writeAll(conn, gen({ ...connect, clean: false, keepalive: 0 }));
  await writeAll(conn, gen({ cmd: "unsubscribe", messageId: 9, unsubscriptions: [topic] }));
  const buf = new Uint8Array(1024);
  let seen = new Uint8Array(0);
  for (;;) {
    const n = await conn.read(buf);
    assert.ok(n !== null, "the broker closed before its UNSUBACK");
    seen = new Uint8Array([...seen, ...buf.subarray(0, n)]);
    // CONNACK (4 bytes), then UNSUBACK 0xb0 2 0 9.
    if (seen.length >= 8 && seen[4] === 0xb0 && seen[7] === 9) break;
  }
  child.kill("SIGKILL");
  conn.close();
}

for (const fsync of ["batch", "always"]) {
  Deno.test({
    name:
      `mqtt --fsync ${fsync}: a persistent session SIGKILLed on its UNSUBACK comes back without that subscription`,
    ...opts,
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: "mqtt-unsuback-kill-" });
      try {
        let back = 0;
        for (let round = 0; round < 3; round++) {
          const id = `uk${round}`;
          const first = await durableBroker(dir, fsync);
          const s = await RawMqtt.connect(first.port, { clientId: id, clean: false });
          await subscribeAll(s, [`u/${round}/a`, `u/${round}/b`]);
          await s.end();
          await unsubscribeThenKill(first.port, id, `u/${round}/a`, first.b.child);
          await first.b.child.status;
          const { b, port } = await durableBroker(dir, fsync);
          try {
            const c = await RawMqtt.connect(port, { clientId: id, clean: false });
            const pub = await RawMqtt.connect(port, { clientId: "p" });
            for (const [i, t] of ["a", "b"].entries()) {
              await publish(pub, `u/${round}/${t}`, t, i + 1);
            }
            const got = await received(c);
            if (got.includes(`u/${round}/a a`)) back++;
            assert.ok(got.includes(`u/${round}/b b`), `the other subscription is kept: ${got}`);
            await pub.end();
            await c.end();
          } finally {
            await b.stop();
          }
        }
        assert.equal(back, 0, `${back} of 3 unsubscribed filters came back`);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

Deno.test({
  name:
    "mqtt subscriptions: a SUBSCRIBE of a filter held already writes its row over (its options), one row, across a restart",
  ...opts,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "mqtt-subs-again-" });
    try {
      let { b, port } = await durableBroker(dir, "batch");
      const c = await RawMqtt.connect(port, { clientId: "again", clean: false });
      for (const [messageId, qos] of [[1, 0], [2, 1]] as const) {
        await c.send({ cmd: "subscribe", messageId, subscriptions: [{ topic: "r/#", qos }] });
        await c.next("suback");
      }
      await c.end();
      await b.stop();
      const db = new DatabaseSync(`${dir}/${MQTT_FILE}`, { readOnly: true });
      const rows = db.prepare(`SELECT v FROM ${SUBSCRIPTIONS}`).all().map(({ v }) => v);
      db.close();
      assert.deepEqual(rows, [JSON.stringify(["r/#", 1])]);
      ({ b, port } = await durableBroker(dir, "batch"));
      try {
        const back = await RawMqtt.connect(port, { clientId: "again", clean: false });
        const pub = await RawMqtt.connect(port, { clientId: "p" });
        await publish(pub, "r/x", "one");
        await pub.end();
        const p = await back.next("publish") as mqttPacket.IPublishPacket;
        assert.deepEqual([p.topic, String(p.payload), p.qos], ["r/x", "one", 1]);
        await back.end();
      } finally {
        await b.stop();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
