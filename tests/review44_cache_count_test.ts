/**
 * review44 R3: a topic's cached targets are counted in memoryBytes
 * (b8abf3f, matching.ts keep) and uncounted when the topic is forgotten
 * (topics.ts forget). A match that waits (a costly one, or a publish behind
 * its publisher's waiting one) keeps its targets on the topic when it is
 * done (core.ts keepTargets) — also when the topic was forgotten meanwhile
 * (evicted at max-topics, or its user's oldest replaced): the cost is added
 * for a topic no one will forget again, and the count only grows.
 */
import assert from "node:assert/strict";
import { BrokerCore } from "../roles/broker/mod.ts";
import type { Publisher } from "../roles/broker/fanout.ts";
import { FakeSink } from "./helpers/broker_sink.ts";

class FakePublisher implements Publisher {
  waiting = 0;
  heldBack = false;
  readonly source = "10.0.0.9";
  holdBack(): void {}
  goOn(): void {}
}

const depth = 13;
const xs = "/" + Array(depth).fill("x").join("/");

Deno.test("cached targets of topics forgotten while their match waited are not left counted", async () => {
  const c = new BrokerCore({ retainBytes: 1 << 26, maxPending: 1 << 26, maxTopics: 8 });
  // Every mix of x and + over 13 levels: a match of /x^13/… visits 2^14 nodes, more than a turn's.
  for (let bits = 0; bits < 1 << depth; bits++) {
    const segs = Array.from({ length: depth }, (_, k) => (bits >> k) & 1 ? "+" : "x");
    c.subscribe(new FakeSink(), { topic: "/" + segs.join("/") + "/nomatch" }).sub.release();
  }
  c.subscribe(new FakeSink(), { topic: xs }).sub.release();
  const p = new FakePublisher();
  const names = Array.from({ length: 40 }, (_, k) => `${xs}/e${k}`);
  const waits: Promise<number>[] = [];
  for (const name of names) {
    const r = c.publish(name, 1, false, 0, p);
    if (r.later !== undefined) waits.push(r.later);
  }
  await Promise.all(waits);
  let held = 0;
  for (const name of names) held += c.topics.get(name)?.cacheCost ?? 0;
  assert.ok(c.topics.size <= 8, `${c.topics.size} topics`);
  assert.equal(
    c.subscriptions.cacheBytes,
    held,
    "counted cache bytes are those of the topics still held",
  );
});
