/**
 * The fan-out backlog is bounded: a publisher that floods a topic with
 * 20,000 subscriptions is held back (its connection is not read) while the
 * backlog is past its bound, and resumes as it drains, so a well-behaved
 * client's publishes and subscriptions elsewhere stay prompt, and nothing
 * the flooder sent is lost. Against a real broker process; bounded counts,
 * every wait with a deadline.
 */
import assert from "node:assert/strict";
import { startDist } from "./helpers/dist.ts";
import { concat, jsonFrame, rawHandshake, RawReader, sleep, writeAll } from "./helpers/raw.ts";
import { BrokerClient } from "./helpers/broker.ts";
import { type Flood, flood } from "./helpers/flood.ts";
import { MAX_WAITING } from "../roles/broker/fanout.ts";
import { withMqttBroker } from "./helpers/mqtt.ts";
import mp from "mqtt-packet";

const SUBS = 20_000;
const FLOOD = 150;

Deno.test("broker fan-out: a publisher flooding a wide topic is held back; a client elsewhere stays prompt", async () => {
  const b = await startDist(["broker", "--port=0", "--write-timeout=120000"]);
  let f: Flood | undefined;
  let raw: Deno.Conn | undefined;
  const clients: BrokerClient[] = [];
  try {
    f = await flood(b.port, 4, SUBS / 4, { topic: "/wide" });
    assert.equal(f.refused, 0);
    const calm = await BrokerClient.connect(b.port);
    const pub = await BrokerClient.connect(b.port);
    const watch = await BrokerClient.connect(b.port);
    clients.push(calm, pub, watch);
    await calm.subscribe("/calm");

    // 150 fire-and-forget publishes to /wide in one write: 3 million deliveries.
    raw = await Deno.connect({ hostname: "127.0.0.1", port: b.port });
    const reader = new RawReader(raw);
    await rawHandshake(raw, reader);
    const publishes = [];
    for (let i = 0; i < FLOOD; i++) {
      publishes.push(jsonFrame({
        method: "broker.publish",
        params: { topic: "/wide", value: { i, pad: "x".repeat(40) }, retain: false },
      }));
    }
    const flooded = performance.now();
    await writeAll(raw, concat(publishes));

    // Meanwhile: the backlog, sampled, and a client publishing and subscribing elsewhere.
    let most = 0;
    let heldBack = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const stats = await watch.stats();
        most = Math.max(most, stats.fanout_waiting as number);
        heldBack = stats.fanout_held_back as number;
        await sleep(10);
      }
    })();
    const latencies: number[] = [];
    for (let i = 0; i < 20; i++) {
      const t0 = performance.now();
      await pub.confirm("/calm", { i }, false);
      await calm.received(i + 1, 10_000);
      latencies.push(performance.now() - t0);
      await sleep(25);
    }
    const t0 = performance.now();
    const late = await pub.subscribe("/calm/late");
    const subscribeMs = performance.now() - t0;
    assert.equal(late.topic, "/calm/late");

    // The flood is all delivered in the end: nothing it sent was lost.
    const deadline = Date.now() + 60_000;
    let stats = await watch.stats();
    while ((stats.messages_in as number) < FLOOD + 20 || (stats.fanout_waiting as number) > 0) {
      assert(Date.now() < deadline, `the flood is routed within 60 s: ${JSON.stringify(stats)}`);
      await sleep(50);
      stats = await watch.stats();
    }
    const floodMs = performance.now() - flooded;
    sampling = false;
    await sampler;
    assert.equal(stats.messages_out, FLOOD * SUBS + 20);
    assert(heldBack > 0, "the flooding connection was held back");
    // One publish past the bound (the one that crossed it) and no more.
    assert(most <= MAX_WAITING + SUBS, `the backlog reached ${most} deliveries`);
    latencies.sort((a, b) => a - b);
    const max = latencies[latencies.length - 1];
    // Unbounded, the first of these waited behind all 3 million deliveries: about the whole
    // flood's time (6.5 s of 7 on a quiet machine). Bounded, behind at most 85,536 of them.
    assert(
      max <= floodMs / 4,
      `publish to delivery elsewhere: at most ${Math.round(max)} ms (median ` +
        `${Math.round(latencies[latencies.length >> 1])} ms), the flood took ${
          Math.round(floodMs)
        } ms`,
    );
    assert(subscribeMs <= floodMs / 4, `a subscribe elsewhere took ${subscribeMs} ms`);
  } finally {
    raw?.close();
    for (const c of clients) c.close();
    f?.stop();
    await b.stop();
  }
});

Deno.test({
  name: "broker fan-out: an MQTT publisher flooding a wide topic is held back the same way",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withMqttBroker(async (b) => {
      const f = await flood(b.port, 2, SUBS / 4, { topic: "/wide" }); // 10,000 deliveries a publish
      const c = await Deno.connect({ hostname: "127.0.0.1", port: b.mqttPort });
      try {
        const packets = [mp.generate({
          cmd: "connect",
          protocolId: "MQTT",
          protocolVersion: 4,
          clientId: "flooder",
          clean: true,
          keepalive: 0,
        })];
        for (let i = 0; i < FLOOD; i++) {
          packets.push(mp.generate({
            cmd: "publish",
            topic: "wide",
            payload: `${i} ${"x".repeat(40)}`,
            qos: 0,
            dup: false,
            retain: false,
          }));
        }
        await writeAll(c, concat(packets));
        let most = 0;
        let stats = await b.stats();
        const deadline = Date.now() + 60_000;
        while ((stats.messages_in as number) < FLOOD || (stats.fanout_waiting as number) > 0) {
          assert(Date.now() < deadline, `the flood is routed within 60 s: ${stats.messages_in}`);
          most = Math.max(most, stats.fanout_waiting as number);
          await sleep(10);
          stats = await b.stats();
        }
        assert.equal(stats.messages_out, FLOOD * SUBS / 2);
        assert((stats.fanout_held_back as number) > 0, "the MQTT flooder was held back");
        assert(most <= MAX_WAITING + SUBS / 2, `the backlog reached ${most} deliveries`);
      } finally {
        c.close();
        f.stop();
      }
    }, { writeTimeout: 120_000 }), // the never-reading subscribers stay: not what is tested here
});
