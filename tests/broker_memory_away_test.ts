/**
 * Away MQTT sessions past their half of `--max-memory` (away_share.ts): an
 * honest session whose PUBACKed messages are in flight, or that is idle, is
 * not ended before larger queues are trimmed (hostile review 40b U1); and a
 * session read back from disk keeps what it held then, not what it grew to
 * after the restart (hostile review 40b U2); and its source (whose share it
 * is in) is kept in its row and read back with it (hostile review 40b U7).
 */
import assert from "node:assert/strict";
import { mqttClient, mqttOpts, RawMqtt, startMqttBroker, withMqttBroker } from "./helpers/mqtt.ts";
import { sleep } from "./helpers/raw.ts";
import { comeBack, publishAll } from "./helpers/mqtt_away.ts";
import { MAX_SOURCE_LENGTH, openSessionStore, SESSIONS } from "../roles/broker/mqtt/persist.ts";
import { LOOPBACK } from "../roles/broker/shares.ts";

const MIB = 1024 * 1024;

type Memory = { bytes: number; budget: number; trimmed: number; away_bytes: number };

/** `id` (3.1.1, clean session 0) subscribes `filter` at QoS 1 and leaves. */
async function leave(port: number, id: string, filter: string): Promise<void> {
  const c = await mqttClient(port, { clientId: id, clean: false, protocolVersion: 4 });
  await c.subscribeAsync(filter, { qos: 1 });
  await c.endAsync();
}

/** A new SUBSCRIBE's granted codes. */
async function subscribeNew(port: number): Promise<number[]> {
  const fresh = await mqttClient(port, { clientId: "fresh" });
  const granted = await fresh.subscribeAsync("fresh/#", { qos: 0 }).then(
    (g) => g.map((x) => x.qos as number),
    (err) => (err as { packet: { granted: number[] } }).packet.granted,
  );
  await fresh.endAsync();
  return granted;
}

Deno.test({
  name:
    "broker memory: past the away half, an honest session whose backlog is in flight, and an idle one, keep their sessions while larger queues are trimmed (hostile review 40b U1)",
  ...mqttOpts,
  fn: () =>
    withMqttBroker(async (b) => {
      const port = b.mqttPort;
      // `honest` receives 400 x 4 KB QoS 1 (PUBACKed to the publisher), acknowledges none, drops.
      const honest = await RawMqtt.connect(port, { clientId: "honest", clean: false });
      await honest.send({
        cmd: "subscribe",
        messageId: 1,
        subscriptions: [{ topic: "h/#", qos: 1 }],
      });
      await honest.next("suback");
      await publishAll(port, "h/x", 400, 4000);
      for (let i = 0; i < 400; i++) await honest.next("publish");
      await honest.end();
      await leave(port, "idle", "idle/#");
      // Four sessions of another client fill 2.4 MB each: past half of 16 MiB together.
      for (let k = 0; k < 4; k++) await leave(port, `q${k}`, `q/${k}`);
      for (let k = 0; k < 4; k++) await publishAll(port, `q/${k}`, 600, 4000);
      await sleep(500);
      const memory = (await b.stats()).memory as Memory;
      assert(memory.trimmed > 0, "the largest queues were trimmed");
      assert(memory.away_bytes <= memory.budget / 2, `away sessions hold ${memory.away_bytes}`);
      const back = await comeBack(port, "honest", 400, 10_000);
      assert.equal(back.present, true, "the honest session is still there (Session Present 1)");
      assert.deepEqual(back.numbers, [...Array(400).keys()], "every PUBACKed message delivered");
      const idle = await comeBack(port, "idle", 0, 0);
      assert.equal(idle.present, true, "the idle session is still there");
      // The trimmed ones keep their newest, in order.
      const q = await comeBack(port, "q0", 600, 2000);
      assert.equal(q.present, true, "a trimmed session is still there");
      assert(q.numbers.length > 0 && q.numbers.length < 600, `q0 kept ${q.numbers.length}`);
      assert.deepEqual(q.numbers, Array.from(q.numbers, (_, i) => 600 - q.numbers.length + i));
    }, { maxMemory: 16 * MIB, maxPending: 4 * MIB }),
});

Deno.test({
  name:
    "broker memory: after a restart, sessions read back keep what they held, not what they grow to: a session that drops meanwhile keeps its backlog, new subscriptions are granted (hostile review 40b U2)",
  ...mqttOpts,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "away-grace-" });
    const options = { dataDir: dir, maxMemory: 16 * MIB, maxPending: 4 * MIB };
    let b = await startMqttBroker(options);
    try {
      // Eight empty sessions left before the restart: a few hundred bytes each.
      for (let k = 0; k < 8; k++) await leave(b.mqttPort, `att${k}`, `a/${k}/#`);
      await sleep(300); // the rows' group commit
      await b.stop();
      b = await startMqttBroker(options);
      const port = b.mqttPort;
      // After it: an honest session left with 300 PUBACKed messages.
      await leave(port, "h2", "h/#");
      await publishAll(port, "h/x", 300, 1000);
      // The read-back sessions are filled with 2.4 MB each: 19 MB, past the whole budget.
      // (Bounded: a publisher the broker refuses past its budget waits for PUBACKs that never come.)
      for (let k = 0; k < 8; k++) {
        await Promise.race([
          publishAll(port, `a/${k}/x`, 600, 4000).catch(() => {}),
          sleep(10_000),
        ]);
      }
      await sleep(500);
      const memory = (await b.stats()).memory as Memory;
      assert(memory.away_bytes <= memory.budget / 2, `away sessions hold ${memory.away_bytes}`);
      assert.deepEqual(await subscribeNew(port), [0], "a new SUBSCRIBE is granted");
      const back = await comeBack(port, "h2", 300, 10_000);
      assert.equal(back.present, true, "the honest session is still there (Session Present 1)");
      assert.deepEqual(back.numbers, [...Array(300).keys()], "every PUBACKed message delivered");
    } finally {
      await b.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** The `source` of each session row in `dir`'s mqtt.db (the broker stopped), or set one first. */
function rowSources(dir: string, set?: [string, string]): Record<string, string | undefined> {
  const store = openSessionStore(dir, { fsync: "always", moveCorruptAside: false, warn: () => {} });
  try {
    const sources: Record<string, string | undefined> = {};
    for (const [id, text] of store.rows(SESSIONS)) {
      const row = JSON.parse(text as string);
      if (set?.[0] === id) store.put(SESSIONS, id, JSON.stringify({ ...row, source: set[1] }));
      sources[id] = set?.[0] === id ? set[1] : row.source;
    }
    store.flush();
    return sources;
  } finally {
    store.close();
  }
}

Deno.test({
  name:
    "broker memory: an away session's source is kept in its row and read back with it, not one source for every session read back (hostile review 40b U7)",
  ...mqttOpts,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "away-source-" });
    const options = { dataDir: dir, maxMemory: 16 * MIB, maxPending: 4 * MIB };
    let b = await startMqttBroker(options);
    try {
      await leave(b.mqttPort, "a", "a/#");
      await leave(b.mqttPort, "b", "b/#");
      await sleep(300); // the rows' group commit
      await b.stop();
      // Every loopback address is one source (shares.ts).
      assert.deepEqual(rowSources(dir), { a: LOOPBACK, b: LOOPBACK });
      // As a broker reached from another address would have written it.
      rowSources(dir, ["b", "192.0.2.7"]);
      // Read back from the source its row kept, and written again with it, twice.
      for (let i = 0; i < 2; i++) {
        b = await startMqttBroker(options);
        await sleep(300);
        await b.stop();
        assert.deepEqual(rowSources(dir), { a: LOOPBACK, b: "192.0.2.7" }, `restart ${i + 1}`);
      }
      // A source past its bound is not a session row (it is not read back).
      rowSources(dir, ["b", "x".repeat(MAX_SOURCE_LENGTH + 1)]);
      b = await startMqttBroker(options);
      await b.stop();
      assert.deepEqual(Object.keys(rowSources(dir)), ["a"]);
    } finally {
      await b.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
