/**
 * What a persistent session's queue takes on disk (`--data-dir`) is
 * bounded by `--max-pending`, whatever its client id: hostile review 39b
 * Q4 (rows were keyed by JSON `[client id, filter, n]`: with a 1,000-byte
 * id, 1 MiB of queued 5-byte deliveries took 1.26 GB of disk, a 27 s
 * restart and 853 MiB of RSS). And a file written before the rows were
 * numbered (table `queued`) is read back: its deliveries come.
 */
import assert from "node:assert/strict";
import mqttPacket from "mqtt-packet";
import { mqttOpts as opts, RawMqtt } from "./helpers/mqtt.ts";
import { sleep } from "./helpers/raw.ts";
import { durableBroker, writeLegacy } from "./helpers/mqtt_durable.ts";
import { Store } from "../store/mod.ts";
import { MQTT_FILE, SESSIONS } from "../roles/broker/mqtt/persist.ts";
import { DELIVERIES, deliveryKey } from "../roles/broker/mqtt/journal.ts";

const PENDING = 64 * 1024;
const PUBLISHES = 20_000;

/** The data file and its WAL (bytes). */
function diskOf(dir: string): number {
  let total = 0;
  for (const f of [MQTT_FILE, `${MQTT_FILE}-wal`]) {
    try {
      total += Deno.statSync(`${dir}/${f}`).size;
    } catch {
      // No WAL.
    }
  }
  return total;
}

const MiB = 1024 * 1024;

/** A process's peak resident memory so far (VmHWM, bytes). */
function peakRss(pid: number): number {
  const m = Deno.readTextFileSync(`/proc/${pid}/status`).match(/VmHWM:\s+(\d+) kB/);
  return Number(m![1]) * 1024;
}

/** The payloads a returning session `clientId` gets within half a second. */
async function payloads(port: number, clientId: string): Promise<string[]> {
  const c = await RawMqtt.connect(port, { clientId, clean: false });
  await sleep(500);
  await c.end();
  return c.packets.filter((p) => p.cmd === "publish").map((p) =>
    String((p as mqttPacket.IPublishPacket).payload)
  );
}

/** Starts a broker on the file written, and says what session `clientId` gets (2 rows). */
async function reopen(dir: string, clientId: string) {
  const { b, port } = await durableBroker(dir, "batch", "--mqtt-queue-qos0");
  assert.match(b.stderr(), /Read 1 MQTT session\(s\) back with 2 message\(s\)/);
  return { b, got: await payloads(port, clientId) };
}

/** A persistent 3.1.1 session subscribed to `t` at QoS 0, gone. */
async function away(port: number, clientId: string): Promise<void> {
  const c = await RawMqtt.connect(port, { clientId, clean: false });
  await c.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "t", qos: 0 }] });
  await c.next("suback");
  await c.send({ cmd: "disconnect" });
  await c.end();
}

/** Publishes `n` empty QoS 0 messages to `t` (5-byte deliveries), then a QoS 1 one to wait on. */
async function flood(port: number, n: number): Promise<void> {
  const c = await RawMqtt.connect(port, { clientId: "pub" });
  const one = mqttPacket.generate(
    { cmd: "publish", topic: "t", payload: "", qos: 0 } as mqttPacket.Packet,
  );
  const batch = new Uint8Array(one.length * 1000);
  for (let i = 0; i < 1000; i++) batch.set(one, i * one.length);
  for (let i = 0; i < n; i += 1000) await c.write(batch);
  await c.send(
    { cmd: "publish", topic: "t", payload: "", qos: 1, messageId: 1 } as mqttPacket.Packet,
  );
  await c.next("puback", 30_000);
  await c.end();
}

/** What the session gets back (QoS 0: none to acknowledge), after 1 s of quiet. */
async function drain(port: number, clientId: string): Promise<{ present: boolean; got: number }> {
  const c = await RawMqtt.connect(port, { clientId, clean: false });
  let got = 0;
  for (let quiet = 0; quiet < 10;) {
    const n = c.packets.filter((p) => p.cmd === "publish").length;
    c.packets.length = 0;
    got += n;
    quiet = n === 0 ? quiet + 1 : 0;
    await sleep(100);
  }
  await c.end();
  return { present: true, got };
}

Deno.test({
  name:
    "mqtt journal: a 1,000-byte client id's queue of 5-byte deliveries takes about --max-pending on disk, and comes back whole",
  ...opts,
  fn: async () => {
    const sizes: number[] = [];
    for (const clientId of ["i".repeat(1000), "s"]) {
      const dir = await Deno.makeTempDir({ prefix: "mqtt-journal-size-" });
      let { b, port } = await durableBroker(
        dir,
        "batch",
        "--mqtt-queue-qos0",
        "--max-pending",
        String(PENDING),
      );
      const fresh = peakRss(b.child.pid);
      try {
        await away(port, clientId);
        await flood(port, PUBLISHES);
        await sleep(300);
        await b.stop();
        const disk = diskOf(dir);
        sizes.push(disk);
        ({ b, port } = await durableBroker(
          dir,
          "batch",
          "--mqtt-queue-qos0",
          "--max-pending",
          String(PENDING),
        ));
        // Read back a page of keys at a time: the restart's peak is a fresh broker's, give or take.
        const restarted = peakRss(b.child.pid);
        // The file's pages beside the rows (sessions, free pages): a few dozen KiB.
        assert.ok(disk < 4 * PENDING, `${disk} bytes on disk for --max-pending ${PENDING}`);
        assert.ok(restarted < fresh + 24 * MiB, `restarted at ${restarted}, fresh ${fresh}`);
        const back = await drain(port, clientId);
        // Each 5-byte delivery is counted with its row (69 bytes): about 950 of them fit.
        assert.ok(back.got > 800 && back.got < 1100, `got ${back.got}`);
      } finally {
        await b.stop();
        await Deno.remove(dir, { recursive: true });
      }
    }
    // The client id is not in the rows.
    assert.ok(sizes[0] < 1.25 * sizes[1], JSON.stringify(sizes));
  },
});

Deno.test({
  name: "mqtt journal: rows of a file from before they were numbered (table queued) are read back",
  ...opts,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "mqtt-journal-legacy-" });
    let { b, port } = await durableBroker(dir, "batch", "--mqtt-queue-qos0");
    try {
      await away(port, "old");
      await sleep(300);
      await b.stop();
      await writeLegacy(dir, "old", ["t", "t"], ["one", "two"]);
      let got: string[];
      ({ b, got } = await reopen(dir, "old"));
      assert.deepEqual(got, ["one", "two"]);
    } finally {
      await b.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "mqtt journal: rows still under a session's numbers from before a restart that died while moving them come back, oldest first",
  ...opts,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "mqtt-journal-moved-" });
    let { b } = await durableBroker(dir, "batch", "--mqtt-queue-qos0");
    try {
      await b.stop();
      // A session whose rows were under 3, being moved to 7 when a broker from before the copies
      // died (`from`): it moved the oldest first, so those under 7 are older than those left under 3.
      const store = new Store(`${dir}/${MQTT_FILE}`, {
        fsync: "off",
        tables: [SESSIONS, DELIVERIES],
      });
      const row = { owner: null, version: 4, expiry: 3600, away: Date.now(), subs: [["t", 0, 1]] };
      store.put(SESSIONS, "moving", JSON.stringify({ ...row, no: 7, from: [3] }));
      const packet = (text: string) =>
        new Uint8Array(
          mqttPacket.generate(
            { cmd: "publish", topic: "t", payload: text, qos: 0 } as mqttPacket.Packet,
          ),
        );
      store.put(DELIVERIES, deliveryKey(3, 1, 5), packet("left"));
      store.put(DELIVERIES, deliveryKey(7, 1, 0), packet("moved"));
      store.put(DELIVERIES, deliveryKey(9, 1, 0), packet("nobody's"));
      let got: string[];
      await store.commit();
      store.close();
      ({ b, got } = await reopen(dir, "moving"));
      assert.deepEqual(got, ["moved", "left"]);
    } finally {
      await b.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
