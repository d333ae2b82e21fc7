/**
 * What a data directory gives back is checked (hostile review 39b Q6): a
 * session row's numbers are bounded (an expiry of 1e15 ended the session at
 * once, an options value of 1e300 broke every PUBLISH to it, nothing
 * logged), and an `mqtt.db` found empty (truncated) is said at WARN, as
 * mosquitto says "Persistence file is empty", not read back as no sessions
 * silently.
 */
import assert from "node:assert/strict";
import { readRow } from "../roles/broker/mqtt/persist.ts";
import { startDist } from "./helpers/dist.ts";

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
