/**
 * The broker over the wire protocol, run in-process on port 0 with real
 * connections: routing, retained values, listing, groups, codecs, confirms,
 * slow consumers and bad input.
 */
import assert from "node:assert/strict";
import { DistError } from "../wire/mod.ts";
import {
  BrokerClient,
  type Delivery,
  rawSubscriber,
  statsUntil,
  withBroker,
} from "./helpers/broker.ts";
import { closeQuietly, header, rawHandshake, RawReader, sleep, writeAll } from "./helpers/raw.ts";

const isCode = (code: string) => (err: unknown) => {
  assert.ok(err instanceof DistError, String(err));
  assert.equal(err.code, code, err.message);
  return true;
};

function brief(ds: Delivery[]) {
  // `retained` is on the wire only when true.
  return ds.map((d) => [d.topic, d.value, d.retained ?? "absent"]);
}

Deno.test("broker delivers subtree, + and exact-parent matches with a sid each", async () => {
  await withBroker(async (b) => {
    const sub = await BrokerClient.connect(b.port);
    const pub = await BrokerClient.connect(b.port);
    try {
      const tel = await sub.subscribe("telephony");
      const plus = await sub.subscribe("/+/orange");
      assert.equal(tel.topic, "/telephony");
      assert.notEqual(tel.sid, plus.sid);
      pub.publish("/telephony/orange", 1);
      pub.publish("/telephony", 2);
      pub.publish("/msg/orange", 3);
      pub.publish("/msg", 4);
      await pub.confirm("/end", 0);
      const got = await sub.received(4);
      const bySid = (sid: number) => got.filter((d) => d.sid === sid).map((d) => d.value);
      assert.deepEqual(bySid(tel.sid), [1, 2]);
      assert.deepEqual(bySid(plus.sid), [1, 3]);
      assert.ok(got.every((d) => !("retained" in d)), "live deliveries carry no retained member");
    } finally {
      sub.close();
      pub.close();
    }
  });
});

Deno.test("broker sends retained values first on a late subscribe, then live ones", async () => {
  await withBroker(async (b) => {
    const c = await BrokerClient.connect(b.port);
    try {
      await c.confirm("/telephony/orange", 10);
      await c.confirm("/telephony/unite", 20);
      await c.confirm("/telephony/unite", 21, false); // not retained: 20 stays
      await c.confirm("/telephony/moldcell", 30);
      await c.confirm("/telephony/moldcell", null); // cleared
      const late = await BrokerClient.connect(b.port);
      try {
        const { topics } = await late.subscribe("/telephony");
        assert.deepEqual(topics, ["/telephony/orange", "/telephony/unite", "/telephony/moldcell"]);
        await c.confirm("/telephony/orange", 11);
        assert.deepEqual(brief(await late.received(3)), [
          ["/telephony/orange", 10, true],
          ["/telephony/unite", 20, true],
          ["/telephony/orange", 11, "absent"],
        ]);
      } finally {
        late.close();
      }
    } finally {
      c.close();
    }
  });
});

Deno.test("broker retained byte budget evicts the least recently updated, in sys.stats", async () => {
  await withBroker(async (b) => {
    const c = await BrokerClient.connect(b.port);
    try {
      const value = "v".repeat(128);
      for (let i = 0; i < 100; i++) c.publish(`/r/${i}`, value);
      const stats = await statsUntil(c, (s) => s.messages_in === 100);
      const retained = stats.retained as Record<string, number>;
      assert.ok(retained.evicted > 0, JSON.stringify(retained));
      assert.ok(retained.bytes <= 4096);
      assert.equal(retained.count + retained.evicted, 100);
      const late = await BrokerClient.connect(b.port);
      try {
        await late.subscribe("/r");
        const got = await late.received(retained.count);
        await sleep(50);
        assert.equal(got.length, retained.count);
        assert.equal(got.at(-1)!.topic, "/r/99", "the newest survived");
      } finally {
        late.close();
      }
    } finally {
      c.close();
    }
  }, { retainBytes: 4096 });
});

Deno.test("broker unsubscribe and disconnect leave zero subscriptions", async () => {
  await withBroker(async (b) => {
    const admin = await BrokerClient.connect(b.port);
    const a = await BrokerClient.connect(b.port);
    const bb = await BrokerClient.connect(b.port);
    try {
      const { sid } = await a.subscribe("/x");
      await a.subscribe("/y", { group: "g" });
      await bb.subscribe("/");
      await bb.subscribe("/x/+", { policy: "latest" });
      assert.equal((await admin.stats()).subscriptions, 4);
      const res = await a.peer.call("broker.unsubscribe", { sid });
      assert.deepEqual(res, { sid, delivered: 0, dropped: 0 });
      await assert.rejects(a.peer.call("broker.unsubscribe", { sid }), isCode("NOT_FOUND"));
      await assert.rejects(
        bb.peer.call("broker.unsubscribe", { sid: 999 }),
        isCode("NOT_FOUND"),
      );
      assert.equal((await admin.stats()).subscriptions, 3);
      a.close();
      bb.close();
      const stats = await statsUntil(admin, (s) => s.subscriptions === 0);
      assert.equal(stats.connections, 1);
    } finally {
      a.close();
      bb.close();
      admin.close();
    }
  });
});

Deno.test("broker.topics lists each topic; subscribers get broker.topic_created", async () => {
  await withBroker(async (b) => {
    const watcher = await BrokerClient.connect(b.port);
    const c = await BrokerClient.connect(b.port);
    try {
      const { sid } = await watcher.subscribe("/telephony");
      await c.confirm("/telephony/orange", 1);
      await c.confirm("/telephony/orange", 2);
      await c.confirm("/msg", "hi", false);
      const listing = await c.peer.call("broker.topics", {}) as {
        topics: Record<string, unknown>[];
        truncated: boolean;
      };
      assert.equal(listing.truncated, false);
      assert.deepEqual(
        listing.topics.map((t) => [t.topic, t.retained, t.subscribers, t.messages]),
        [
          ["/telephony/orange", true, 1, 2],
          ["/msg", false, 0, 1],
        ],
      );
      assert.ok(!Number.isNaN(Date.parse(listing.topics[0].last_active as string)));
      const under = await c.peer.call("broker.topics", { prefix: "/telephony" }) as {
        topics: { topic: string }[];
      };
      assert.deepEqual(under.topics.map((t) => t.topic), ["/telephony/orange"]);
      await watcher.received(2);
      assert.deepEqual(watcher.created, [{ sid, topic: "/telephony/orange" }]);
    } finally {
      watcher.close();
      c.close();
    }
  });
});

Deno.test("broker queue group splits messages; plain subscribers get them all", async () => {
  await withBroker(async (b) => {
    const members = await Promise.all([0, 1, 2].map(() => BrokerClient.connect(b.port)));
    const plain = await BrokerClient.connect(b.port);
    const pub = await BrokerClient.connect(b.port);
    try {
      for (const m of members) await m.subscribe("/jobs", { group: "workers" });
      await plain.subscribe("/jobs");
      for (let i = 0; i < 90; i++) pub.publish(`/jobs/${i % 3}`, i);
      await plain.received(90);
      await Promise.all(members.map((m) => m.received(30)));
      await sleep(50);
      assert.deepEqual(members.map((m) => m.deliveries.length), [30, 30, 30]);
      const all = members.flatMap((m) => m.deliveries.map((d) => d.value as number));
      assert.deepEqual(all.sort((x, y) => x - y), Array.from({ length: 90 }, (_, i) => i));
    } finally {
      for (const c of [...members, plain, pub]) c.close();
    }
  });
});

Deno.test("broker translates codecs: JSON to MessagePack and back", async () => {
  await withBroker(async (b) => {
    const json = await BrokerClient.connect(b.port, "json");
    const mp = await BrokerClient.connect(b.port, "msgpack");
    try {
      await json.subscribe("/x");
      await mp.subscribe("/x");
      const values = [
        { nested: { list: [1, 2.5, "trois", null, true] }, text: "héllo ✓ 😀" },
        -42,
        "plain",
      ];
      for (const v of values) await json.confirm("/x/from-json", v);
      for (const v of values) await mp.confirm("/x/from-mp", v);
      const [j, m] = [await json.received(6), await mp.received(6)];
      for (const got of [j, m]) {
        assert.deepEqual(got.map((d) => d.value), [...values, ...values]);
        assert.deepEqual(got.map((d) => d.topic), [
          ...values.map(() => "/x/from-json"),
          ...values.map(() => "/x/from-mp"),
        ]);
      }
    } finally {
      json.close();
      mp.close();
    }
  });
});

Deno.test("broker.publish as a request is confirmed with its deliveries", async () => {
  await withBroker(async (b) => {
    const c = await BrokerClient.connect(b.port);
    try {
      assert.deepEqual(await c.confirm("a/b/", 1), { topic: "/a/b", deliveries: 0 });
      await c.subscribe("/a");
      await c.subscribe("/a", { group: "g" });
      assert.deepEqual(await c.confirm("/a/b", 2), { topic: "/a/b", deliveries: 2 });
    } finally {
      c.close();
    }
  });
});

Deno.test("broker answers bad input with an error and keeps serving", async () => {
  await withBroker(async (b) => {
    const c = await BrokerClient.connect(b.port);
    try {
      await assert.rejects(c.peer.call("broker.nope", {}), isCode("UNKNOWN_METHOD"));
      await assert.rejects(c.peer.call("broker.publish", { value: 1 }), isCode("BAD_REQUEST"));
      await assert.rejects(c.peer.call("broker.publish", { topic: "/a" }), isCode("BAD_REQUEST"));
      await assert.rejects(c.confirm("/a//b", 1), isCode("BAD_REQUEST"));
      await assert.rejects(c.confirm("/a", 1, "yes" as unknown as boolean), isCode("BAD_REQUEST"));
      await assert.rejects(c.subscribe("/a//b"), isCode("BAD_REQUEST"));
      await assert.rejects(c.peer.call("broker.subscribe", {}), isCode("BAD_REQUEST"));
      await assert.rejects(c.peer.call("broker.subscribe", "x"), isCode("BAD_REQUEST"));
      await assert.rejects(c.subscribe("/a", { policy: "never" }), isCode("BAD_REQUEST"));
      await assert.rejects(c.peer.call("broker.topics", { limit: 0 }), isCode("BAD_REQUEST"));
      c.publish("/bad//topic", 1); // fire-and-forget: counted, reported, no crash

      // An oversized frame closes that connection only.
      const raw = await Deno.connect({ hostname: "127.0.0.1", port: b.port });
      const reader = new RawReader(raw);
      try {
        await rawHandshake(raw, reader);
        await writeAll(raw, header(2 * 1024 * 1024));
        const err = await reader.json();
        assert.equal((err?.error as { code: string }).code, "FRAME_TOO_LARGE");
        await reader.untilClosed();
      } finally {
        closeQuietly(raw);
      }
      const stats = await statsUntil(c, (s) => s.bad_publishes === 1);
      assert.equal(stats.topics, 0);
      assert.deepEqual(await c.confirm("/still/serving", 1), {
        topic: "/still/serving",
        deliveries: 0,
      });
    } finally {
      c.close();
    }
  });
});

Deno.test("broker cuts off a subscriber that stops reading; a fast one gets every message", async () => {
  await withBroker(async (b) => {
    // A raw subscriber that subscribes, then never reads again.
    const { conn: raw } = await rawSubscriber(b.port, { topic: "/t" });
    const fast = await BrokerClient.connect(b.port);
    const pub = await BrokerClient.connect(b.port);
    try {
      await fast.subscribe("/t");
      // 10 MB: more than the kernel's socket buffers (about 4 MB here) plus
      // the stalled reader's 256 KiB of max-pending.
      const value = "x".repeat(2000);
      const n = 5000;
      for (let i = 0; i < n; i++) {
        pub.publish("/t", { i, value });
        // As fast as the fast subscriber takes them (it shares this process).
        if (i % 50 === 49) await fast.received(i - 49, 10_000);
      }
      await fast.received(n, 20_000);
      assert.deepEqual(fast.deliveries.map((d) => (d.value as { i: number }).i), [
        ...Array(n).keys(),
      ]);
      const stats = await statsUntil(pub, (s) => s.slow_consumers === 1);
      assert.equal(stats.subscriptions, 1, "only the fast subscriber is left");
    } finally {
      closeQuietly(raw);
      fast.close();
      pub.close();
    }
  }, { maxPending: 256 * 1024 });
});

Deno.test("broker drop-oldest keeps a stalled subscriber bounded and connected", async () => {
  await withBroker(async (b) => {
    const { conn: raw } = await rawSubscriber(b.port, { topic: "/t", policy: "drop-oldest" });
    const pub = await BrokerClient.connect(b.port);
    try {
      const value = "x".repeat(2000); // 10 MB in all, past the kernel's buffers
      for (let i = 0; i < 5000; i++) {
        pub.publish("/t", { i, value });
        if (i % 100 === 99) await pub.peer.conn.drained(64 * 1024);
      }
      const stats = await statsUntil(pub, (s) => s.messages_in === 5000);
      assert.equal(stats.slow_consumers, 0);
      assert.equal(stats.subscriptions, 1, "still subscribed");
      assert.ok((stats.dropped as number) > 0, "older messages were dropped");
      assert.ok((stats.queued_bytes as number) <= 256 * 1024, `queued ${stats.queued_bytes}`);
    } finally {
      closeQuietly(raw);
      pub.close();
    }
  }, { maxPending: 256 * 1024 });
});

Deno.test("broker: many producers × many consumers, no loss, no duplicate, in order", async () => {
  await withBroker(async (b) => {
    const producers = 4;
    const consumers = 3;
    const perProducer = 2000;
    const subs = await Promise.all(
      Array.from({ length: consumers }, () => BrokerClient.connect(b.port)),
    );
    const pubs = await Promise.all(
      Array.from({ length: producers }, (_, p) => BrokerClient.connect(b.port, "json", `p${p}`)),
    );
    try {
      for (const s of subs) await s.subscribe("/load");
      await Promise.all(pubs.map(async (pub, p) => {
        for (let seq = 0; seq < perProducer; seq++) {
          pub.publish(`/load/p${p}/${seq % 5}`, { p, seq });
          if (seq % 200 === 199) await pub.peer.conn.drained(0);
        }
      }));
      for (const s of subs) {
        const got = await s.received(producers * perProducer, 20_000);
        await sleep(20);
        assert.equal(got.length, producers * perProducer, "no duplicates");
        const next = new Array(producers).fill(0);
        for (const d of got) {
          const { p, seq } = d.value as { p: number; seq: number };
          assert.equal(seq, next[p], `producer ${p}: sequence in order, none missing`);
          next[p]++;
        }
      }
    } finally {
      for (const c of [...subs, ...pubs]) c.close();
    }
  });
});
