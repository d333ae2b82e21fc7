/**
 * What a data directory gives back is checked (hostile review 39b Q6): a
 * session row's numbers are bounded (an expiry of 1e15 ended the session at
 * once, an options value of 1e300 broke every PUBLISH to it, nothing
 * logged), and an `mqtt.db` found empty (truncated) is said at WARN, as
 * mosquitto says "Persistence file is empty", not read back as no sessions
 * silently.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { MQTT_FILE, readRow, SESSIONS } from "../roles/broker/mqtt/persist.ts";
import { deliveryKey, readDeliveryKey } from "../roles/broker/mqtt/journal.ts";
import { startDist } from "./helpers/dist.ts";
import { durableBroker } from "./helpers/mqtt_durable.ts";
import { mqttOpts, RawMqtt } from "./helpers/mqtt.ts";
import type { IPublishPacket } from "mqtt-packet";

const row = (o: Record<string, unknown>) =>
  JSON.stringify({ owner: null, version: 5, expiry: 60, away: null, subs: [["a/b", 1]], ...o });

Deno.test("mqtt persist: a session row's expiry and options are bounded", () => {
  assert.equal(readRow(row({})).expiry, 60);
  assert.equal(readRow(row({ expiry: 86_400, subs: [["a", 32 * (2 ** 28 - 1) + 31]] })).version, 5);
  assert.throws(() => readRow(row({ expiry: 1e15 })), /Not a session row/);
  assert.throws(() => readRow(row({ expiry: 86_401 })), /Not a session row/);
  assert.throws(() => readRow(row({ subs: [["a", 1e300]] })), /Not a session row/);
  assert.throws(() => readRow(row({ subs: [["a", 2 ** 33]] })), /Not a session row/);
});

Deno.test("mqtt persist: a session number past what a broker gives out is unreadable (hostile review 40a T6)", () => {
  assert.equal(readRow(row({ no: 2 ** 40, copied: [7] })).no, 2 ** 40);
  for (const no of [2 ** 53 - 1, 2 ** 40 + 1, -1, 1.5]) {
    assert.throws(() => readRow(row({ no })), /Not a session row/, `no ${no}`);
    assert.throws(() => readRow(row({ no: 3, from: [no] })), /Not a session row/, `from ${no}`);
  }
  assert.deepEqual(readDeliveryKey(deliveryKey(2 ** 40, 1, 2)), { session: 2 ** 40, sub: 1, n: 2 });
  assert.equal(readDeliveryKey(deliveryKey(2 ** 53 - 1, 1, 2)), undefined);
});

/** Connects `clientId` (persistent), subscribes it to `filter` at QoS 1, and leaves. */
async function subscribeAway(port: number, clientId: string, filter: string): Promise<void> {
  const c = await RawMqtt.connect(port, { clientId, clean: false });
  await c.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: filter, qos: 1 }] });
  await c.next("suback");
  await c.send({ cmd: "disconnect" });
  await c.end();
}

/** What persistent session `clientId` gets back when it comes back (1 s of quiet ends it). */
async function comeBack(port: number, clientId: string): Promise<string[]> {
  const c = await RawMqtt.connect(port, { clientId, clean: false });
  try {
    return await c.next("publish", 1000).then(
      (p) => [`${(p as IPublishPacket).topic} ${(p as IPublishPacket).payload}`],
      () => [],
    );
  } finally {
    await c.end();
  }
}

Deno.test({
  name:
    "mqtt persist: a tampered row numbered 2^53 - 1 is dropped; later sessions keep their own rows (hostile review 40a T6)",
  ...mqttOpts,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "dist-q40-no-" });
    try {
      let { b, port } = await durableBroker(dir, "batch");
      await subscribeAway(port, "seed", "seed/x");
      await b.stop();
      const db = new DatabaseSync(`${dir}/${MQTT_FILE}`);
      const [{ k, v }] = db.prepare(`SELECT k, v FROM ${SESSIONS}`).all() as {
        k: string;
        v: string;
      }[];
      const tampered = { ...JSON.parse(v), no: 2 ** 53 - 1 };
      db.prepare(`UPDATE ${SESSIONS} SET v = ? WHERE k = ?`).run(JSON.stringify(tampered), k);
      db.close();
      ({ b, port } = await durableBroker(dir, "batch"));
      assert.match(b.stderr(), /unreadable|dropped/i, b.stderr());
      await subscribeAway(port, "alice", "a/inbox");
      await subscribeAway(port, "bob", "b/inbox");
      const pub = await RawMqtt.connect(port, { clientId: "pub" });
      await pub.send({
        cmd: "publish",
        topic: "a/inbox",
        payload: "for alice",
        qos: 1,
        messageId: 1,
        dup: false,
        retain: false,
      });
      await pub.next("puback");
      await pub.send({
        cmd: "publish",
        topic: "b/inbox",
        payload: "for bob",
        qos: 1,
        messageId: 2,
        dup: false,
        retain: false,
      });
      await pub.next("puback");
      await pub.end();
      await b.stop();
      ({ b, port } = await durableBroker(dir, "batch"));
      try {
        // Before: both rows went under one key (bob's overwrote alice's) and neither came back.
        assert.deepEqual(await comeBack(port, "alice"), ["a/inbox for alice"]);
        assert.deepEqual(await comeBack(port, "bob"), ["b/inbox for bob"]);
      } finally {
        await b.stop();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("mqtt persist: an empty mqtt.db in a data dir is said at WARN, a new one is not", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dist-k39-empty-" });
  const args = ["broker", "--port=0", "--mqtt-port=0", `--data-dir=${dir}`];
  try {
    let b = await startDist(args);
    await b.stop();
    assert.doesNotMatch(b.stderr(), /is empty/, "a new data dir is not warned about");
    assert.ok(Deno.statSync(`${dir}/mqtt.db`).size > 0);
    await Deno.truncate(`${dir}/mqtt.db`, 0);
    for (const f of ["mqtt.db-wal", "mqtt.db-shm"]) {
      await Deno.remove(`${dir}/${f}`).catch(() => {});
    }
    b = await startDist(args);
    await b.stop();
    assert.match(b.stderr(), /WRN.*mqtt\.db is empty: no MQTT session is read back/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
