/**
 * What a queue group member had queued when it leaves is the group's loss:
 * counted dropped (`sys.stats` `dropped`, `dist_broker_dropped_total`),
 * where before it went uncounted (hostile46b M-B3's check of native
 * members). A plain subscription's queue is its own client's: not counted.
 */
import assert from "node:assert/strict";
import { BrokerCore } from "../roles/broker/mod.ts";
import { FakeSink } from "./helpers/broker_sink.ts";

const MIB = 1024 * 1024;

Deno.test("BrokerCore queue group: a member that leaves with deliveries queued counts them dropped", () => {
  const c = new BrokerCore({ retainBytes: 64 * MIB, maxPending: 8 * MIB, maxTopics: 1e6 });
  const a = new FakeSink(), b = new FakeSink(), plain = new FakeSink();
  a.stalled = b.stalled = plain.stalled = true; // none reads: what they are given stays pending
  a.size = b.size = plain.size = 10_000;
  const left = c.subscribe(a, { topic: "/q", group: "g", policy: "drop-oldest" }).sub;
  left.release();
  c.subscribe(b, { topic: "/q", group: "g", policy: "drop-oldest" }).sub.release();
  const own = c.subscribe(plain, { topic: "/q", policy: "drop-oldest" }).sub;
  own.release();
  for (let i = 0; i < 200; i++) c.publish("/q/x", i);
  const queued = left.queued;
  assert.ok(queued > 0, "the leaving member had deliveries queued");
  assert.ok(own.queued > 0, "so had the plain subscription");
  const before = c.dropped;
  c.unsubscribe(left);
  assert.equal(c.dropped - before, queued, "its queue counted dropped");
  c.unsubscribe(own);
  assert.equal(c.dropped - before, queued, "a plain subscription's queue is not the group's");
});
