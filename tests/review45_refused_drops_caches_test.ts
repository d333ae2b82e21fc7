/**
 * review45 R4 (08304ad, hostile45b K-B2's fix): `wouldCross` now drops
 * cached targets before it refuses anything, and always at least half of
 * what all caches hold (matching.ts dropCaches), whether or not that makes
 * the new topic, subscription or retained value fit. At the budget, a
 * refused publish to a new topic (it costs its sender nothing: MQTT 5 QoS 1
 * gets PUBACK 0x97 and stays connected) thus drops every topic's cache, the
 * hot ones in use included, and each honest publish must match again. With
 * a costly tree (8,192 patterns: a match of 16k visits, spread over turns)
 * 300 honest publishes, each after one refused new topic, took 2.7 s where
 * they took 5 ms before 08304ad (alone: 1 ms either way).
 */
import assert from "node:assert/strict";
import { BrokerCore } from "../roles/broker/mod.ts";
import type { Publisher } from "../roles/broker/fanout.ts";
import { FakeSink } from "./helpers/broker_sink.ts";

class FakePublisher implements Publisher {
  waiting = 0;
  heldBack = false;
  constructor(readonly source: string) {}
  holdBack(): void {}
  goOn(): void {}
}

const depth = 13;
const xs = "/" + Array(depth).fill("x").join("/");

Deno.test("review45 R4: at the budget, refused new topics do not make every honest publish match again", async () => {
  const c = new BrokerCore({
    retainBytes: 1 << 26,
    maxPending: 1 << 26,
    maxTopics: 1e6,
    maxMemory: 1e12,
  });
  // Every mix of x and + over 13 levels: a match of /x^13/… visits 2^14 nodes.
  for (let bits = 0; bits < 1 << depth; bits++) {
    const segs = Array.from({ length: depth }, (_, k) => (bits >> k) & 1 ? "+" : "x");
    c.subscribe(new FakeSink(), { topic: "/" + segs.join("/") + "/nomatch" }).sub.release();
  }
  const honest = new FakeSink();
  honest.size = 1;
  c.subscribe(honest, { topic: xs }).sub.release();
  const hp = new FakePublisher("10.0.0.1");
  const ap = new FakePublisher("10.0.0.2");
  const hot = `${xs}/hot`;
  await c.publish(hot, 1, false, 0, hp).later;
  // At the budget: a new topic is refused.
  (c as { maxMemory: number }).maxMemory = c.memoryBytes + 10;
  let refused = 0;
  const t0 = performance.now();
  for (let i = 0; i < 300; i++) {
    try {
      c.publish(`/a/${i}`, 1, false, 0, ap);
    } catch {
      refused++;
    }
    const r = c.publish(hot, 1, false, 0, hp);
    if (r.later !== undefined) await r.later;
    if (i % 50 === 0) honest.written.length = 0;
  }
  const ms = performance.now() - t0;
  assert.equal(refused, 300, "every new topic refused at the budget");
  // Before 08304ad: 5 ms (cached match); c45: 2,700 ms.
  assert.ok(
    ms < 500,
    `300 honest publishes, each after a refused new topic, took ${ms.toFixed(0)} ms; ` +
      `hot topic cached: ${c.topics.get(hot)?.cache !== undefined}; load ${Deno.loadavg()[0]}`,
  );
});

Deno.test("review45 R4: at the budget, a refused new topic does not walk every topic the broker holds", () => {
  // A cheap tree (one subscription on /t): what a refused publish costs is the walk (dropCaches
  // from the oldest topic to the one cache left, the hot topic's, on the newest).
  const c = new BrokerCore({
    retainBytes: 1 << 26,
    maxPending: 1 << 26,
    maxTopics: 1e6,
    maxMemory: 1e12,
  });
  const sink = new FakeSink();
  sink.size = 1;
  c.subscribe(sink, { topic: "/t" }).sub.release();
  const hp = new FakePublisher("10.0.0.1");
  const ap = new FakePublisher("10.0.0.2");
  for (let i = 0; i < 50_000; i++) {
    c.publish(`/t/${i}`, 1, false, 0, ap);
    if (i % 1000 === 0) sink.written.length = 0;
  }
  c.publish("/t/hot", 1, false, 0, hp);
  // At the budget even with every cache dropped: new topics are refused.
  (c as { maxMemory: number }).maxMemory = c.memoryBytes - c.subscriptions.cacheBytes * 2 + 10;
  assert.throws(() => c.publish("/t/first", 1, false, 0, ap));
  let refused = 0;
  const t0 = performance.now();
  for (let i = 0; i < 2000; i++) {
    c.publish("/t/hot", 1, false, 0, hp);
    try {
      c.publish(`/n/${i}`, 1, false, 0, ap);
    } catch {
      refused++;
    }
    if (i % 100 === 0) sink.written.length = 0;
  }
  const ms = performance.now() - t0;
  assert.equal(refused, 2000);
  // Before 08304ad: 15-52 ms; c45: 655-749 ms (about 350 us a refused publish at 50,000 topics).
  assert.ok(
    ms < 300,
    `2000 hot publishes, each with a refused new topic, took ${
      ms.toFixed(0)
    } ms beside ${c.topics.size} topics; load ${Deno.loadavg()[0]}`,
  );
});
