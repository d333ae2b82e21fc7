/**
 * review44 R1: an unsubscribed subscription that drains what it queued
 * (BrokerCore.unsubscribe(sub, drained): the MQTT one-copy UNSUBSCRIBE of
 * 89e39e3) is cut, and `drained` told, only when its pump finds the queue
 * empty. When the queue's last delivery is also the one that fills the sink
 * (its pending bytes reach the fill limit, or an MQTT window is full after
 * it), the pump stops there with nothing left, is not armed again, and the
 * subscription is never cut: it stays in its session's `leaving` set and its
 * journal range for the session's life (one more per UNSUBSCRIBE).
 */
import assert from "node:assert/strict";
import { BrokerCore, type Subscription } from "../roles/broker/mod.ts";
import { FakeSink } from "./helpers/broker_sink.ts";

/** A sink whose waiters run while it stays stalled (a slow reader that took a little). */
class SlowSink extends FakeSink {
  waiters: (() => void)[] = [];
  override whenDrained(_bytes: number, fn: () => void): void {
    this.waiters.push(fn);
  }
  /** Took everything written so far, still slow: what comes next stays pending. */
  took(): void {
    this.pendingBytes = 0;
    for (const fn of this.waiters.splice(0)) fn();
  }
}

for (const queued of [9, 10]) {
  Deno.test(`an unsubscribed subscription draining ${queued} queued deliveries is cut once they went`, () => {
    // maxPending 4000: fill limit 1000, ten deliveries of 100 bytes.
    const c = new BrokerCore({ retainBytes: 1 << 20, maxPending: 4000, maxTopics: 1000 });
    const sink = new SlowSink();
    sink.stalled = true;
    const { sub } = c.subscribe(sink, { topic: "/t", policy: "drop-oldest" });
    sub.release();
    sink.pendingBytes = 1000; // full: what comes waits in the queue
    for (let i = 0; i < queued; i++) c.publish("/t", i);
    assert.equal((sub as Subscription).queued, queued);
    let drained = 0;
    assert.ok(c.unsubscribe(sub, () => drained++));
    for (let round = 0; round < 5 && drained === 0; round++) sink.took();
    assert.equal(sink.written.length, queued, "every queued delivery went");
    assert.equal(drained, 1, "told drained (its session then forgets it)");
    assert.ok(sub.cancelled, "cut once drained");
  });
}
