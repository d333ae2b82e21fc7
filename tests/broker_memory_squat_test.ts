/**
 * Away MQTT persistent sessions cannot squat `--max-memory` (hostile
 * review 39c R3): what they hold together (their rows, subscriptions and
 * queued deliveries) is held to half of it, the sessions holding the most
 * going first (their oldest queued dropped, then ended), so connected
 * subscribers are not cut for their memory and new subscriptions are
 * granted; while an honest away session holding less keeps every message it
 * was sent (hostile review 39b Q2, tests/broker_memory_kept_test.ts).
 */
import assert from "node:assert/strict";
import type mqtt from "mqtt";
import {
  atLeast,
  connectWithAck,
  mqttClient,
  mqttOpts,
  startMqttBroker,
  withMqttBroker,
} from "./helpers/mqtt.ts";
import { sleep } from "./helpers/raw.ts";
import { comeBack, publishAll } from "./helpers/mqtt_away.ts";
import { BrokerCore } from "../roles/broker/mod.ts";
import { type AwaySession, MemoryGuard, sessionMemory } from "../roles/broker/memory.ts";
import { LOOPBACK } from "../roles/broker/shares.ts";

const MIB = 1024 * 1024;

/** Subscribes `prefix/<i>/z` 200 filters at a time until SUBACK refuses one: how many were taken. */
async function subscribeAll(c: mqtt.MqttClient, prefix: string, most: number): Promise<number> {
  let taken = 0;
  for (let k = 0; k < most; k += 200) {
    const filters = Array.from({ length: 200 }, (_, j) => `${prefix}/${k + j}/z`);
    // MQTT.js rejects a SUBACK with any refusal: its codes are on the error's packet.
    const codes = await c.subscribeAsync(filters, { qos: 0 }).then(
      (granted) => granted.map((g) => g.qos as number),
      (err) => (err as { packet: { granted: number[] } }).packet.granted,
    );
    const ok = codes.filter((code) => code < 0x80).length;
    taken += ok;
    if (ok < filters.length) break;
  }
  return taken;
}

type Memory = {
  bytes: number;
  budget: number;
  shed: number;
  away_bytes: number;
  away_ended: number;
};

Deno.test({
  name:
    "broker memory: an away session's subscriptions cannot squat --max-memory: it is ended, not a connected subscriber, and an honest away session keeps all (hostile review 39c R3)",
  ...mqttOpts,
  fn: () =>
    withMqttBroker(async (b) => {
      const port = b.mqttPort;
      // An honest subscriber, connected (clean), and an honest session left with 300 PUBACKed messages.
      const { c: honest, got } = await connectWithAck(port, { clientId: "honest-sub" });
      await honest.subscribeAsync("honest/#", { qos: 0 });
      let cut = false;
      honest.on("close", () => cut = true);
      const away = await mqttClient(port, { clientId: "away", clean: false, protocolVersion: 4 });
      await away.subscribeAsync("kept/#", { qos: 1 });
      await away.endAsync();
      await publishAll(port, "kept/x", 300, 1000);
      // The squatter: a persistent session that subscribes until refused, then leaves.
      const squat = await mqttClient(port, { clientId: "squat", clean: false, protocolVersion: 4 });
      const taken = await subscribeAll(squat, "s", 20_000);
      await squat.endAsync();
      assert(taken > 2000, `the squatter took ${taken} subscriptions before the budget refused`);
      // The guard samples every 100 ms: it has looked by then.
      await sleep(500);
      // Honest traffic to the connected subscriber: 2,000 QoS 0 messages of 1 KB.
      const pub = await mqttClient(port, { clientId: "honest-pub" });
      const body = "h".repeat(1000);
      for (let i = 0; i < 2000; i++) pub.publish("honest/t", body, { qos: 0 });
      await pub.endAsync();
      await atLeast(got, 2000, 10_000).catch(() => {});
      assert.equal(cut, false, "the connected honest subscriber was not cut off");
      assert.equal(got.length, 2000, "it received every message");
      // A new subscription is granted.
      const fresh = await mqttClient(port, { clientId: "honest-new" });
      const granted = await fresh.subscribeAsync("honest2/#", { qos: 0 }).then(
        (g) => g.map((x) => x.qos as number),
        (err) => (err as { packet: { granted: number[] } }).packet.granted,
      );
      await fresh.endAsync();
      assert.deepEqual(granted, [0], "a new SUBSCRIBE is granted");
      const memory = (await b.stats()).memory as Memory;
      assert.equal(memory.shed, 0, "nobody connected was cut off");
      assert(
        memory.bytes <= memory.budget / 2 + MIB,
        `counted ${memory.bytes} of ${memory.budget}`,
      );
      assert.equal(memory.away_ended, 1, "the squatting session was ended");
      // The honest away session: Session Present 1, every PUBACKed message; the squatter's is gone.
      const back = await comeBack(port, "away", 300, 10_000);
      assert.equal(back.present, true, "the honest away session is still there");
      assert.deepEqual(back.numbers, [...Array(300).keys()], "every PUBACKed message delivered");
      const again = await comeBack(port, "squat", 0, 0);
      assert.equal(again.present, false, "the squatting session was ended");
      await honest.endAsync();
    }, { maxMemory: 16 * MIB, maxPending: 3.5 * MIB }),
});

Deno.test({
  name:
    "broker memory: away sessions' queues together are held to half of --max-memory, the largest trimmed first (hostile review 39c R3), down to the half, not below (40b's note: a queue counted at its buffer's size lost three quarters)",
  ...mqttOpts,
  fn: () =>
    withMqttBroker(async (b) => {
      const port = b.mqttPort;
      for (const id of ["big", "small"]) {
        const c = await mqttClient(port, { clientId: id, clean: false, protocolVersion: 4 });
        await c.subscribeAsync(`${id}/#`, { qos: 1 });
        await c.endAsync();
      }
      // 100 KB for `small`, then 36 MB for `big` (in a 64 MiB buffer): together past half of 64 MiB.
      await publishAll(port, "small/x", 100, 1000);
      await publishAll(port, "big/x", 900, 40_000);
      await sleep(500);
      const memory = (await b.stats()).memory as Memory & { trimmed: number };
      assert(memory.trimmed > 0, "the largest was trimmed");
      assert(memory.away_bytes <= memory.budget / 2, `away sessions hold ${memory.away_bytes}`);
      assert.equal(memory.away_ended, 0, "a session whose queue is trimmed is not ended");
      const small = await comeBack(port, "small", 100, 10_000);
      assert.equal(small.present, true);
      assert.equal(small.numbers.length, 100, "the smaller session kept all it was sent");
      // `big` keeps its newest, in order, and is still there.
      const big = await comeBack(port, "big", 900, 2000);
      const kept = big.numbers;
      assert.equal(big.present, true, "the trimmed session is still there");
      // What fits in the half (32 MiB: 838 of 40 KB, less what else is away), not a quarter of its
      // buffer (main: under 16 MiB, about 400: the buffer shrank only once a quarter full).
      assert(kept.length >= 700 && kept.length < 900, `it kept ${kept.length}`);
      assert.deepEqual(kept, Array.from({ length: kept.length }, (_, i) => 900 - kept.length + i));
    }, { maxMemory: 64 * MIB, maxPending: 64 * MIB }),
});

/** An away session as the guard sees it: `subs` bytes of subscriptions and row, `queued` of queue. */
class FakeAway implements AwaySession {
  ended = false;
  readonly keptBytes = 0;
  readonly keptQos2Bytes = 0;
  constructor(
    readonly name: string,
    readonly source: string,
    public subs: number,
    public queued: number,
  ) {}
  get heldBytes(): number {
    return this.ended ? 0 : this.subs + this.queued;
  }
  get queuedBytes(): number {
    return this.ended ? 0 : this.queued;
  }
  trim(bytes: number): number {
    const freed = Math.min(bytes, this.queued);
    this.queued -= freed;
    return freed;
  }
  evict(): void {
    this.ended = true;
  }
  spared(): number {
    return 0;
  }
}

Deno.test("MemoryGuard: away sessions past their half of --max-memory: the largest source first; in it squats ended, then the largest queues trimmed (hostile review 39c R3)", async () => {
  const core = new BrokerCore({
    retainBytes: MIB,
    maxPending: 8 * MIB,
    maxTopics: 1000,
    maxMemory: 16 * MIB,
  });
  const guard = new MemoryGuard(core);
  const honest = new FakeAway("honest", LOOPBACK, 10_000, 900_000);
  const peer = new FakeAway("peer", LOOPBACK, 10_000, 700_000);
  const squats = Array.from(
    { length: 50 },
    (_, i) => new FakeAway(`sq${i}`, LOOPBACK, 150_000, 1000),
  );
  const far = new FakeAway("far", "10.0.0.9", 10_000, 200_000);
  const away = [honest, peer, ...squats, far];
  guard.away = { values: () => away, left: 0 };
  const held = () => away.reduce((n, s) => n + s.heldBytes, 0);
  // What they hold is counted in max-memory (as the MQTT front end counts it).
  let counted = held() + 8 * MIB;
  sessionMemory.bytes += counted;
  try {
    const stop = guard.watch(10);
    await sleep(100);
    stop();
    assert(held() <= 8 * MIB, `they hold ${held()}`);
    // 9.4 MB, 9.2 of them the loopback source's: its squats go first, the queues are kept.
    assert.deepEqual([honest.ended, peer.ended, far.ended], [false, false, false]);
    assert.deepEqual([honest.queued, peer.queued, far.queued], [900_000, 700_000, 200_000]);
    const gone = squats.filter((s) => s.ended).length;
    assert(gone > 0 && gone < squats.length, `${gone} squats ended`);
    assert.equal(guard.awayEnded, gone);
    // Then queues: the largest trimmed down to the next one's first.
    for (const s of squats) s.ended = true;
    honest.queued = 9 * MIB;
    peer.queued = 2 * MIB;
    // Their queues grew: so did the count.
    sessionMemory.bytes += 11 * MIB;
    counted += 11 * MIB;
    const stop2 = guard.watch(10);
    await sleep(100);
    stop2();
    assert(held() <= 8 * MIB, `they hold ${held()}`);
    assert.equal(peer.queued, 2 * MIB, "the smaller queue is kept whole");
    assert(honest.queued > 5 * MIB && !honest.ended, `honest keeps ${honest.queued}`);
  } finally {
    sessionMemory.bytes -= counted;
  }
});

Deno.test({
  name:
    "broker memory: sessions read back from disk past the away sessions' half are spared while their clients come back (hostile review 39c R3)",
  ...mqttOpts,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "away-share-" });
    const options = { dataDir: dir, maxMemory: 16 * MIB };
    let b = await startMqttBroker(options);
    try {
      // Three persistent sessions, connected, with 1,000 subscriptions each: past half the budget.
      const ids = ["fleet-a", "fleet-b", "fleet-c"];
      for (const id of ids) {
        const c = await mqttClient(b.mqttPort, { clientId: id, clean: false, protocolVersion: 4 });
        assert.equal(await subscribeAll(c, id, 1000), 1000);
        // Left connected: the broker stops under them.
        c.on("error", () => {});
      }
      await sleep(300); // the rows' group commit
      await b.stop();
      b = await startMqttBroker(options);
      await sleep(500);
      const memory = (await b.stats()).memory as Memory;
      assert(memory.away_bytes > memory.budget / 2, `read back away: ${memory.away_bytes}`);
      assert.equal(memory.away_ended, 0, "none ended while their clients come back");
      for (const id of ids) {
        const back = await comeBack(b.mqttPort, id, 0, 0);
        assert.equal(back.present, true, `${id}'s session is there`);
      }
    } finally {
      await b.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
