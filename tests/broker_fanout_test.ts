/**
 * Fan-out bounded per turn of the event loop (issue 17): the broker core
 * with fake transports. A publish to more subscriptions than a turn's
 * budget is delivered partly now and the rest in later turns, and whatever
 * is published meanwhile reaches each subscription after it, in order.
 */
import assert from "node:assert/strict";
import { BrokerCore } from "../roles/broker/mod.ts";
import { DELIVERIES_PER_TURN, MAX_WAITING, type Publisher } from "../roles/broker/fanout.ts";
import { FakeSink } from "./helpers/broker_sink.ts";
import { waitFor } from "./helpers/raw.ts";

const MIB = 1024 * 1024;

function core(): BrokerCore {
  return new BrokerCore({ retainBytes: 64 * MIB, maxPending: 64 * MIB, maxTopics: 1e6 });
}

function subscribeMany(c: BrokerCore, sinks: FakeSink[], topic: string, each: number) {
  for (const sink of sinks) {
    for (let i = 0; i < each; i++) c.subscribe(sink, { topic }).sub.release();
  }
}

const written = (sinks: FakeSink[]) => sinks.reduce((n, s) => n + s.written.length, 0);

Deno.test("fan-out: a publish past a turn's budget is finished in later turns, in publish order", async () => {
  const c = core();
  const sinks = [new FakeSink(), new FakeSink(), new FakeSink(), new FakeSink()];
  const each = 5000; // 20,000 subscriptions: more than two turns' budget
  subscribeMany(c, sinks, "/big", each);
  const small = new FakeSink();
  c.subscribe(small, { topic: "/" }).sub.release(); // covers /big and /small
  const grouped = new FakeSink();
  c.subscribe(grouped, { topic: "/big", group: "g" }).sub.release();
  c.subscribe(grouped, { topic: "/big", group: "g" }).sub.release();
  const total = 4 * each + 2;

  const first = c.publish("/big", 1, false);
  const second = c.publish("/big", 2, false);
  c.publish("/small", 3, false);
  assert.equal(first.deliveries, total, "each publish counts every delivery it will make");
  assert.equal(second.deliveries, total);
  // This turn made its budget's worth and no more; the rest waits.
  assert.equal(written([...sinks, small, grouped]), DELIVERIES_PER_TURN);
  assert.equal(c.fanOut.waiting, 2 * total + 1 - DELIVERIES_PER_TURN);

  await waitFor(() => c.fanOut.waiting === 0, 10_000, "the backlog to be worked off");
  for (const sink of sinks) {
    const values = sink.values();
    assert.equal(values.length, 2 * each);
    // Each subscription got 1 then 2: the first 5,000 writes are the 1s.
    assert.deepEqual(
      [values.slice(0, each).every((v) => v === 1), values.slice(each).every((v) => v === 2)],
      [true, true],
    );
  }
  assert.deepEqual(small.values(), [1, 2, 3], "a later publish waits behind the backlog");
  assert.deepEqual(grouped.values(), [1, 2], "a group gets each message once");
  assert.equal(c.messagesOut, 2 * total + 1);
});

Deno.test("fan-out: a subscription cut off while a backlog waits gets nothing more", async () => {
  const c = core();
  const sinks = [new FakeSink(), new FakeSink()];
  subscribeMany(c, sinks, "/big", DELIVERIES_PER_TURN);
  const last = new FakeSink();
  const { sub } = c.subscribe(last, { topic: "/big" });
  sub.release();
  c.publish("/big", "x", false);
  assert(c.fanOut.waiting > 0);
  c.unsubscribe(sub); // subscribed last: its delivery is still waiting
  await waitFor(() => c.fanOut.waiting === 0, 10_000, "the backlog to be worked off");
  assert.equal(last.written.length, 0);
  assert.equal(written(sinks), 2 * DELIVERIES_PER_TURN);
});

Deno.test("fan-out: below the budget every delivery is made within the publish", () => {
  const c = core();
  const sink = new FakeSink();
  subscribeMany(c, [sink], "/t", 100);
  for (let i = 0; i < 50; i++) c.publish("/t", i, false);
  assert.equal(sink.written.length, 5000);
  assert.equal(c.fanOut.waiting, 0);
});

/** A connection that publishes, recording when it is held back and let go. */
class FakePublisher implements Publisher {
  waiting = 0;
  heldBack = false;
  events: string[] = [];
  holdBack(): void {
    this.events.push("hold");
  }
  goOn(): void {
    this.events.push("go");
  }
}

Deno.test("fan-out: past its bound the publisher filling the backlog is held back, and let go once it drains; what waits is counted", async () => {
  const c = core();
  const sinks = [new FakeSink(), new FakeSink()];
  subscribeMany(c, sinks, "/wide", 10_000); // 20,000 deliveries a publish
  const small = new FakeSink();
  c.subscribe(small, { topic: "/small" }).sub.release();
  const flooder = new FakePublisher();
  const calm = new FakePublisher();
  const before = c.memoryBytes;
  let n = 0;
  while (flooder.events.length === 0) {
    assert(n < 10, "held back within a few publishes");
    c.publish("/wide", { n: n++, text: "x".repeat(1000) }, false, 2, flooder);
    c.publish("/small", n, false, 2, calm);
  }
  // Held back by the publish that crossed the bound, not before.
  assert(c.fanOut.waiting > MAX_WAITING && c.fanOut.waiting <= MAX_WAITING + 20_000);
  assert.equal(flooder.waiting + calm.waiting, c.fanOut.waiting);
  assert.deepEqual(calm.events, [], "a publisher with a small share of the backlog goes on");
  assert(
    c.memoryBytes - before >= n * 2000,
    `the waiting publishes are counted: ${c.memoryBytes - before} bytes for ${n}`,
  );
  await waitFor(() => flooder.events.length === 2, 10_000, "the flooder to be let go");
  assert.deepEqual(flooder.events, ["hold", "go"]);
  assert(c.fanOut.waiting <= MAX_WAITING / 2, "let go once the backlog is down to half its bound");
  await waitFor(() => c.fanOut.waiting === 0, 10_000, "the backlog to be worked off");
  assert.equal(c.fanOut.bytes, 0);
  assert.equal(flooder.waiting, 0);
  assert.equal(written(sinks), n * 20_000, "nothing was lost");
  assert.equal(small.written.length, n);
});
