/**
 * The client library's publish/subscribe (clients/pubsub.ts) against a
 * real broker run in this process: the iterator's order, queue groups,
 * slow-subscriber policies with a paused iterator, unsubscribe, and a
 * subscription that outlives a broker restart.
 */
import assert from "node:assert/strict";
import { connect, type Connection, type Message, type Subscription } from "../clients/mod.ts";
import { startBroker, type TestBroker } from "./helpers/broker.ts";
import { waitFor, within } from "./helpers/raw.ts";
import { freePort } from "./helpers/dist.ts";

/** The next `n` messages of `sub` (within 5 s). */
async function take(sub: Subscription, n: number): Promise<Message[]> {
  const out: Message[] = [];
  await within(
    (async () => {
      while (out.length < n) {
        const r = await sub.next();
        if (r.done) break;
        out.push(r.value);
      }
    })(),
    5000,
    `${n} messages`,
  );
  return out;
}

async function withConnections(
  count: number,
  body: (b: TestBroker, conns: Connection[]) => Promise<void>,
  brokerOptions: Record<string, unknown> = {},
  codec: "json" | "msgpack" = "json",
): Promise<void> {
  const b = await startBroker(brokerOptions);
  const conns: Connection[] = [];
  try {
    for (let i = 0; i < count; i++) conns.push(await connect(b.address, { codec }));
    await body(b, conns);
  } finally {
    for (const c of conns) c.close();
    await b.stop();
  }
}

for (const codec of ["json", "msgpack"] as const) {
  Deno.test(`subscribe() (${codec}): retained values first, flagged, then live ones in publish order`, async () => {
    await withConnections(
      2,
      async (_b, [pub, conn]) => {
        await pub.publish("/t/a", "A", { confirm: true });
        await pub.publish("t/b/", { n: 1 }, { confirm: true });
        await pub.publish("/other", 0, { confirm: true });
        const sub = await conn.subscribe("/t");
        assert.equal(sub.topic, "/t");
        assert.deepEqual(sub.answer?.topics, ["/t/a", "/t/b"]);
        for (let i = 1; i <= 5; i++) await pub.publish("/t/a", i);
        const got = await take(sub, 7);
        assert.deepEqual(
          got.map((m) => [m.topic, m.value, m.retained ?? false]),
          [
            ["/t/a", "A", true],
            ["/t/b", { n: 1 }, true],
            ...[1, 2, 3, 4, 5].map((i) => ["/t/a", i, false]),
          ],
        );
      },
      {},
      codec,
    );
  });
}

Deno.test("subscribe(): every shape of value arrives as published, also to a listener of broker.message", async () => {
  await withConnections(2, async (_b, [pub, conn]) => {
    const values = [
      "plain",
      { id: 18223, name: "sensor-12", ok: true, temp: 21.5, tags: ["a", "b"] },
      { "clé": 'naïve café "q" \\ \n', text: "héllo ✓ 日本語 😀", n: -7e-3 },
      [[1, [2, [3]]], { a: { b: null } }, false],
      null,
      1.5,
    ];
    // Deliveries to a subscription are read as bytes, only the value parsed.
    const sub = await conn.subscribe("/v");
    for (const v of values) pub.publish("/v", v, { retain: false });
    assert.deepEqual((await take(sub, values.length)).map((m) => m.value), values);
    // A listener of the raw event sees them too (they then take the ordinary path).
    const heard: unknown[] = [];
    const stop = conn.on("broker.message", (p) => heard.push((p as { value: unknown }).value));
    for (const v of values) pub.publish("/v", v, { retain: false });
    assert.deepEqual((await take(sub, values.length)).map((m) => m.value), values);
    assert.deepEqual(heard, values);
    stop();
  });
});

Deno.test("subscribe(): a group of two shares the messages, each to one of them", async () => {
  await withConnections(3, async (_b, [pub, a, b]) => {
    const subA = await a.subscribe("/jobs", { group: "g" });
    const subB = await b.subscribe("/jobs", { group: "g" });
    const n = 40;
    for (let i = 0; i < n; i++) await pub.publish("/jobs", i, { retain: false });
    const ends = await pub.publish("/jobs", "end", { retain: false, confirm: true });
    assert.equal(ends?.deliveries, 1, "one member of the group, not both");
    const seen: unknown[] = [];
    const drain = async (sub: Subscription) => {
      const mine: unknown[] = [];
      while (sub.waiting > 0) mine.push((await sub.next()).value!.value);
      seen.push(...mine);
      return mine.length;
    };
    await waitFor(() => subA.waiting + subB.waiting === n + 1, 5000, "every message");
    const [na, nb] = [await drain(subA), await drain(subB)];
    assert.ok(na > 0 && nb > 0, `both got some: ${na} and ${nb}`);
    assert.equal(new Set(seen).size, n + 1, "none twice");
  });
});

for (const policy of ["drop-oldest", "latest"] as const) {
  Deno.test(`subscribe() ${policy}: a paused iterator stays bounded and connected`, async () => {
    const maxPending = 64 * 1024;
    await withConnections(2, async (_b, [pub, conn]) => {
      const sub = await conn.subscribe("/fast", { policy, buffer: 16 });
      const payload = "x".repeat(1000);
      for (let i = 0; i < 3000; i++) {
        pub.publish("/fast", { i, payload }, { retain: false });
        if (i % 100 === 99) await new Promise((r) => setTimeout(r, 1));
      }
      const last = await pub.publish("/fast", { i: "last" }, { retain: false, confirm: true });
      assert.equal(last?.deliveries, 1);
      const stats = await pub.request("sys.stats") as { dropped: number };
      await waitFor(() => sub.waiting >= 16, 5000, "the buffer to fill");
      // Read pauses at the buffer; what one read brought in may still land.
      assert.ok(sub.waiting < 16 + 80, `bounded: ${sub.waiting} waiting`);
      let dropped = stats.dropped;
      let lastSeen: unknown;
      await within(
        (async () => {
          while (lastSeen !== "last") {
            lastSeen = ((await sub.next()).value!.value as { i: unknown }).i;
          }
        })(),
        10_000,
        "the last message",
      );
      dropped = (await pub.request("sys.stats") as { dropped: number }).dropped;
      assert.ok(dropped > 0, "the broker applied the policy");
      assert.equal(conn.connected, true, "not cut off");
    }, { maxPending });
  });
}

Deno.test("subscribe(): a consumer that never yields to the event loop keeps up with its reads; one that waits gets its whole buffer", async () => {
  await withConnections(2, async (_b, [pub, conn]) => {
    const n = 20_000;
    const busy = await conn.subscribe("/busy", { buffer: 100_000 });
    let most = 0;
    let count = 0;
    const consumed = (async () => {
      for await (const m of busy) {
        most = Math.max(most, busy.waiting);
        if (m.value === "last") break;
        count++;
      }
    })();
    const payload = "x".repeat(100);
    for (let i = 0; i < n; i++) {
      pub.publish("/busy", { i, payload }, { retain: false });
      if (i % 2000 === 1999) await pub.publish("/sync", 0, { confirm: true, retain: false });
    }
    await pub.publish("/busy", "last", { retain: false });
    await within(consumed, 10_000, "every message");
    assert.equal(count, n);
    // Reading waits for the iterator past 512; one read may bring a few hundred more.
    assert.ok(most < 2000, `at most ${most} waited`);

    const slow = await conn.subscribe("/slow", { buffer: 3000 });
    for (let i = 0; i < 2500; i++) pub.publish("/slow", { i, payload }, { retain: false });
    await pub.publish("/sync", 0, { confirm: true, retain: false });
    // Nothing taken: reading goes on past 512 a task at a time, up to the buffer.
    await waitFor(() => slow.waiting === 2500, 5000, "2,500 waiting");
  });
});

Deno.test("subscribe() disconnect: a subscriber that falls behind is cut off", async () => {
  await withConnections(2, async (_b, [pub, conn]) => {
    const cut = await connect(pub.address.host + ":" + pub.address.port, { redial: false });
    try {
      await cut.subscribe("/fast", { buffer: 4 });
      const payload = "x".repeat(4000);
      for (let i = 0; i < 2000 && cut.connected; i++) {
        pub.publish("/fast", { i, payload }, { retain: false });
        if (i % 50 === 49) await new Promise((r) => setTimeout(r, 1));
      }
      await waitFor(() => !cut.connected, 5000, "the cut-off");
      const stats = await pub.request("sys.stats") as { slow_consumers: number };
      assert.equal(stats.slow_consumers, 1);
      void conn;
    } finally {
      cut.close();
    }
  }, { maxPending: 16 * 1024 });
});

Deno.test("unsubscribe() ends the iterator: a for await loop leaves", async () => {
  await withConnections(2, async (_b, [pub, conn]) => {
    const sub = await conn.subscribe("/u");
    const seen: unknown[] = [];
    const loop = (async () => {
      for await (const m of sub) {
        seen.push(m.value);
        if (seen.length === 2) {
          const counts = await sub.unsubscribe();
          assert.equal(counts?.delivered, 2);
        }
      }
    })();
    await pub.publish("/u", 1, { confirm: true });
    await pub.publish("/u", 2, { confirm: true });
    await within(loop, 5000, "the loop to end");
    const after = await pub.publish("/u", 3, { confirm: true });
    assert.equal(after?.deliveries, 0, "the broker stopped delivering");
    assert.deepEqual(seen, [1, 2]);
    const topics = await conn.topics({ prefix: "/u" });
    assert.deepEqual(topics.topics.map((t) => [t.topic, t.subscribers]), [["/u", 0]]);
  });
});

Deno.test("a subscription outlives a broker restart: subscribed again, the iterator goes on", async () => {
  const port = freePort(); // listened on again after the restart: below the ephemeral range
  let b = await startBroker({ port });
  const conn = await connect(b.address);
  try {
    const sub = await conn.subscribe("/r");
    const pub1 = await connect(b.address);
    await pub1.publish("/r", "before", { retain: false, confirm: true });
    assert.equal((await take(sub, 1))[0].value, "before");
    pub1.close();
    await b.stop();
    b = await startBroker({ port });
    const pub2 = await connect(b.address);
    try {
      // Resubscribed once the connection is back: the publish reaches it.
      await waitFor(() => conn.connected, 8000, "the redial");
      let delivered = 0;
      await within(
        (async () => {
          while (delivered === 0) {
            delivered = (await pub2.publish("/r", "after", { retain: true, confirm: true }))!
              .deliveries;
            await new Promise((r) => setTimeout(r, 20));
          }
        })(),
        8000,
        "a delivery after the restart",
      );
      const after = await take(sub, 1);
      assert.equal(after[0].value, "after");
    } finally {
      pub2.close();
    }
  } finally {
    conn.close();
    await b.stop();
  }
});

Deno.test("drain(): fire-and-forget publishes all reach the broker; a subscription ends with what waits; then closed", async () => {
  await withConnections(3, async (_b, [watcher, pub, sink]) => {
    const seen = await watcher.subscribe("/d");
    const own = await sink.subscribe("/d");
    const n = 3000;
    for (let i = 0; i < n; i++) pub.publish("/d", i, { retain: false });
    await within(pub.drain(5000), 6000, "the publisher's drain");
    assert.equal(pub.connected, false);
    await assert.rejects(pub.publish("/d", "late"), /draining|closed/i);
    const got = await take(seen, n);
    assert.deepEqual(got.map((m) => m.value), Array.from({ length: n }, (_, i) => i));

    // The sink's iterator holds at most its buffer, reading paused; drain
    // unsubscribes anyway, and the loop reads what waited, in order, then ends.
    await waitFor(() => own.waiting > 0, 5000, "deliveries to the sink");
    await within(sink.drain(2000), 3000, "the sink's drain");
    const rest: unknown[] = [];
    await within(
      (async () => {
        for await (const m of own) rest.push(m.value);
      })(),
      5000,
      "the sink's loop to end",
    );
    assert.ok(rest.length > 0 && rest.length <= n, `${rest.length} read`);
    assert.deepEqual(rest, Array.from({ length: rest.length }, (_, i) => i));
    const topics = await watcher.topics({ prefix: "/d" });
    assert.deepEqual(topics.topics.map((t) => t.subscribers), [1], "only the watcher is left");
  });
});
