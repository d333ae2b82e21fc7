/**
 * Helpers for tests of MQTT persistent sessions on disk: a broker on a
 * data directory with its MQTT port, and filters that all match one topic.
 */
import assert from "node:assert/strict";
import mqttPacket, { type Packet } from "mqtt-packet";
import { type DistProcess, spawnDist, startDist } from "./dist.ts";
import { sleep } from "./raw.ts";
import { RawMqtt } from "./mqtt.ts";
import { DatabaseSync } from "node:sqlite";
import { Store } from "../../store/mod.ts";
import { MQTT_FILE, QUEUED, SESSIONS } from "../../roles/broker/mqtt/persist.ts";
import { DELIVERIES } from "../../roles/broker/mqtt/journal.ts";

/** A 14-level topic, and distinct filters that all match it (each level itself or `+`). */
const LEVELS = ["k", ..."abcdefghijklm"];
export const DEEP_TOPIC = LEVELS.join("/");
export const deepFilter = (i: number): string =>
  LEVELS.map((l, j) => ((i >> j) & 1) === 1 ? "+" : l).join("/");

/** A broker on `dir` under `--fsync fsync` (and `extra`), with its MQTT port. */
export async function durableBroker(
  dir: string,
  fsync: string,
  ...extra: string[]
): Promise<{ b: DistProcess; port: number }> {
  const b = await startDist([
    "broker",
    ...["--port", "0", "--mqtt-port", "0", "--data-dir", dir, "--fsync", fsync, ...extra],
  ], { timeoutMs: 30_000 });
  const m = b.stderr().match(/MQTT on 127\.0\.0\.1:(\d+)/);
  assert.ok(m, b.stderr());
  return { b, port: Number(m[1]) };
}

/**
 * Writes, on `dir`'s `mqtt.db`, what a broker from before the journal's rows
 * were numbered left: persistent session `clientId`'s row (no numbers),
 * subscribed to `filter` at QoS 0, away, and a QoS 0 PUBLISH to `topic`
 * queued for it per payload, in order (table `queued`).
 */
export async function writeLegacy(
  dir: string,
  clientId: string,
  [filter, topic]: [string, string],
  payloads: string[],
): Promise<void> {
  const store = new Store(`${dir}/${MQTT_FILE}`, { fsync: "off", tables: [SESSIONS, QUEUED] });
  const row = { owner: null, version: 4, expiry: 3600, away: Date.now(), subs: [[filter, 0]] };
  store.put(SESSIONS, clientId, JSON.stringify(row));
  payloads.forEach((payload, i) => {
    const packet = mqttPacket.generate({ cmd: "publish", topic, payload, qos: 0 } as Packet);
    store.put(QUEUED, JSON.stringify([clientId, filter, 4294967296 + i]), new Uint8Array(packet));
  });
  await store.commit();
  store.close();
}

/**
 * Starts a broker on `dir` and SIGKILLs it as soon as `commits` commits of
 * its journal are seen (by a reader of the file: SQLite's data_version),
 * the next not yet: returns whether that was before its MQTT port opened
 * (during the restore).
 */
export async function killAfter(dir: string, commits: number): Promise<boolean> {
  const { child, stderr, read } = spawnDist([
    "broker",
    ...["--port", "0", "--mqtt-port", "0", "--data-dir", dir, "--fsync", "batch"],
  ]);
  // Read-only: it never checkpoints, so the file stays as the broker left it.
  const db = new DatabaseSync(`${dir}/${MQTT_FILE}`, { readOnly: true });
  const version = db.prepare("PRAGMA data_version");
  let last = version.get()!.data_version;
  let seen = 0;
  const started = Date.now();
  while (seen < commits && !/MQTT on/.test(stderr()) && Date.now() - started < 20_000) {
    await sleep(1);
    const now = version.get()!.data_version;
    if (now !== last) seen++;
    last = now;
  }
  child.kill("SIGKILL");
  db.close();
  await child.status;
  await read;
  return !/MQTT on/.test(stderr());
}

/** Rows of `dir`'s journal (table `deliveries` of `mqtt.db`), as committed. */
export function journalRows(dir: string): number {
  const db = new DatabaseSync(`${dir}/${MQTT_FILE}`, { readOnly: true });
  try {
    return (db.prepare(`SELECT count(*) AS n FROM ${DELIVERIES}`).get() as { n: number }).n;
  } finally {
    db.close();
  }
}

/**
 * The longest PINGRESP, in ms, of a client pinging `port` every 20 ms
 * until `until` (performance.now()), each answer awaited up to `waitMs`.
 */
export async function longestPing(port: number, until: number, waitMs = 30_000): Promise<number> {
  const pinger = await RawMqtt.connect(port, { clientId: "pinger" });
  let worst = 0;
  while (performance.now() < until) {
    const sent = performance.now();
    await pinger.send({ cmd: "pingreq" });
    await pinger.next("pingresp", waitMs);
    worst = Math.max(worst, performance.now() - sent);
    await sleep(20);
  }
  await pinger.end();
  return worst;
}
