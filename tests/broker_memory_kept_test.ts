/**
 * The memory guard keeps MQTT persistent sessions whose clients are away
 * (hostile review 39b Q2): subscriptions, new topics and retained values
 * are refused before they would cross `--max-memory` (not once it has), so
 * a client that only subscribes cannot push the broker over; and past the
 * budget an away session is never ended: the oldest of what it has queued
 * is dropped (counted), as its drop-oldest policy does past max-pending.
 */
import assert from "node:assert/strict";
import mp from "mqtt-packet";
import { mqttClient, mqttOpts, RawMqtt, withMqttBroker } from "./helpers/mqtt.ts";
import { closeQuietly, concat, sleep } from "./helpers/raw.ts";
import { comeBack, publishAll } from "./helpers/mqtt_away.ts";
import { FakeSink } from "./helpers/broker_sink.ts";
import { DistError } from "../wire/mod.ts";
import { BrokerCore, type Subscription } from "../roles/broker/mod.ts";

const MIB = 1024 * 1024;

/** `honest` (3.1.1, clean session 0) subscribes `h/#` at QoS 1 and leaves. */
async function leaveSession(port: number): Promise<void> {
  const c = await mqttClient(port, { clientId: "honest", clean: false, protocolVersion: 4 });
  await c.subscribeAsync("h/#", { qos: 1 });
  await c.endAsync();
}

Deno.test({
  name:
    "broker memory: a client that only subscribes is refused before --max-memory; an away persistent session keeps all it was sent (hostile review 39b Q2)",
  ...mqttOpts,
  fn: () =>
    withMqttBroker(async (b) => {
      await leaveSession(b.mqttPort);
      await publishAll(b.mqttPort, "h/x", 300, 1000);
      // The attacker subscribes 1,000 filters at a time until SUBACK refuses; it holds nothing pending.
      const atk = await mqttClient(b.mqttPort, { clientId: "attacker" });
      let taken = 0;
      for (let k = 0; k < 20_000; k += 1000) {
        const filters = Array.from({ length: 1000 }, (_, j) => `a/${k + j}/x`);
        // MQTT.js rejects a SUBACK with any refusal: its codes are on the error's packet.
        const codes = await atk.subscribeAsync(filters, { qos: 0 }).then(
          (granted) => granted.map((g) => g.qos as number),
          (err) => (err as { packet: { granted: number[] } }).packet.granted,
        );
        const ok = codes.filter((code) => code < 0x80).length;
        taken += ok;
        if (ok < filters.length) break;
      }
      assert(taken > 1000, `the attacker took ${taken} subscriptions before the budget refused`);
      // The guard samples every 100 ms: it has looked by then.
      await sleep(500);
      const memory = (await b.stats()).memory as { bytes: number; budget: number; shed: number };
      const back = await comeBack(b.mqttPort, "honest", 300, 10_000);
      await atk.endAsync();
      assert.equal(back.present, true, "the session is still there (Session Present 1)");
      assert.deepEqual(back.numbers, [...Array(300).keys()], "every PUBACKed message delivered");
      assert(memory.bytes <= memory.budget, `counted ${memory.bytes} within ${memory.budget}`);
      assert.equal(memory.shed, 0, "nobody was cut off");
    }, { maxMemory: 16 * MIB }),
});

Deno.test({
  name:
    "broker memory: past --max-memory an away persistent session drops its oldest, counted, and is not ended (hostile review 39b Q2)",
  ...mqttOpts,
  fn: () =>
    withMqttBroker(async (b) => {
      await leaveSession(b.mqttPort);
      // 24 MB queued for it: within its max-pending (64 MiB), past the budget (16 MiB).
      const n = 600;
      await publishAll(b.mqttPort, "h/x", n, 40_000);
      // The guard samples every 100 ms and trims until within the budget: polled for that (a
      // fixed 500 ms is a few samples at best on a loaded machine), then held to it below.
      type Memory = { bytes: number; budget: number; trimmed: number };
      const t0 = performance.now();
      let stats = await b.stats();
      while (performance.now() - t0 < 10_000) {
        const m = stats.memory as Memory;
        if (m.trimmed > 0 && m.bytes <= m.budget) break;
        await sleep(100);
        stats = await b.stats();
      }
      const memory = stats.memory as Memory;
      const dropped = (stats.mqtt as { session_dropped: number }).session_dropped;
      const back = await comeBack(b.mqttPort, "honest", n - dropped, 20_000);
      const after = await b.stats();
      const gone = (after.mqtt as { session_dropped: number }).session_dropped;
      const told = `${back.numbers.length} of ${n - dropped} delivered; memory then ${
        JSON.stringify(after.memory)
      }`;
      assert.equal(back.present, true, "the session is still there (Session Present 1)");
      assert(memory.bytes <= memory.budget, `counted ${memory.bytes} within ${memory.budget}`);
      assert(dropped > 0 && dropped < n, `${dropped} of the oldest dropped, counted`);
      assert(memory.trimmed > 0, "counted in memory.trimmed");
      // The newest are kept, in order, the oldest went, all of them counted. (Now and then, 1 run in
      // 3-5 under load, one or two of those delivered are counted as dropped too: an over-count,
      // stated in README Limits; what is lost is never uncounted.)
      const first = n - back.numbers.length;
      assert.deepEqual(
        back.numbers,
        Array.from({ length: n - first }, (_, i) => first + i),
        told,
      );
      assert(gone >= first && gone <= first + 2, `${gone} counted for ${first} not delivered`);
    }, { maxMemory: 16 * MIB, maxPending: 64 * MIB }),
});

Deno.test({
  name:
    "broker memory: silent connections holding read buffers past --max-memory do not cost an away session its messages (hostile review 39b Q2)",
  ...mqttOpts,
  fn: () =>
    withMqttBroker(async (b) => {
      await leaveSession(b.mqttPort);
      await publishAll(b.mqttPort, "h/x", 200, 1000);
      // Each writes forty 2 KB publishes at once and goes silent: its read buffer grown for them.
      const burst = concat(Array.from({ length: 40 }, () =>
        mp.generate({
          cmd: "publish",
          topic: "b/x",
          payload: "y".repeat(2000),
          qos: 0,
          dup: false,
          retain: false,
        })));
      const silent: RawMqtt[] = [];
      try {
        for (let i = 0; i < 400; i++) {
          const raw = await RawMqtt.connect(b.mqttPort, { clientId: `bi${i}` });
          silent.push(raw);
          await raw.write(burst);
        }
        await sleep(500);
        const back = await comeBack(b.mqttPort, "honest", 200, 10_000);
        assert.equal(back.present, true, "the session is still there (Session Present 1)");
        assert.deepEqual(back.numbers, [...Array(200).keys()], "every PUBACKed message delivered");
      } finally {
        for (const raw of silent) closeQuietly(raw.conn);
      }
    }, { maxMemory: 16 * MIB }),
});

Deno.test("broker memory: subscriptions, new topics and retained values are refused before they cross --max-memory (hostile review 39b Q2)", () => {
  const options = { retainBytes: 64 * MIB, maxPending: 8 * MIB, maxTopics: 1e6 };
  const maxMemory = new BrokerCore(options).memoryBytes + MIB;
  const c = new BrokerCore({ ...options, maxMemory });
  /** Calls `add(i)` until it is refused OVERLOADED, never past the budget: how many it took. */
  const fill = (add: (i: number) => void): number => {
    for (let i = 0; i < 100_000; i++) {
      try {
        add(i);
      } catch (err) {
        assert.ok(err instanceof DistError && err.code === "OVERLOADED", String(err));
        return i;
      }
      assert.ok(c.memoryBytes <= maxMemory, `${c.memoryBytes} counted past ${maxMemory} at ${i}`);
    }
    return -1;
  };
  const sink = new FakeSink();
  const subs: Subscription[] = [];
  assert.ok(fill((i) => subs.push(c.subscribe(sink, { topic: `/s/${i}/x` }).sub)) > 100);
  // Room again: half of them go; then new topics, then retained values on them.
  for (const s of subs.slice(0, subs.length / 2)) c.unsubscribe(s);
  assert.ok(fill((i) => c.publish(`/t/${i}`, "v", false, 0)) > 100);
  for (const s of subs.slice(subs.length / 2)) c.unsubscribe(s);
  const big = "x".repeat(4096);
  assert.ok(fill((i) => c.publish(`/t/${i}`, big, true, 0)) > 10);
});
