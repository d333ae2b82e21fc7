/**
 * A broker restarted on its data file (issue 19): restored topics go into
 * the index flat and are placed in the topic tree later (in slices, or at
 * once for what a walk needs). Retained delivery to exact and wildcard
 * subscribers is right before, during and after that build; the topic
 * byte budget counts what exists and holds once the tree is built. In
 * process with a fake transport, then a real broker restarted on 12,000
 * values and subscribed to the moment it listens.
 */
import assert from "node:assert/strict";
import { BrokerCore } from "../roles/broker/mod.ts";
import { NODE_BYTES, TOPIC_BYTES } from "../roles/broker/topics.ts";
import { PLACE_PER_TURN } from "../roles/broker/durable.ts";
import { placeRestored, restoreRetained } from "../roles/broker/restore.ts";
import { FakeSink } from "./helpers/broker_sink.ts";
import { dial } from "../wire/mod.ts";
import { waitUntil } from "./helpers/binder.ts";
import { startDist } from "./helpers/dist.ts";

const MIB = 1024 * 1024;

function core(options: Partial<ConstructorParameters<typeof BrokerCore>[0]> = {}): BrokerCore {
  return new BrokerCore({ retainBytes: 64 * MIB, maxPending: 8 * MIB, maxTopics: 1e6, ...options });
}

/** `/site{s}/dev{d}/temp` for s < sites, d < devices: value `{s, d}`. */
function restoreGrid(c: BrokerCore, sites: number, devices: number): void {
  for (let d = 0; d < devices; d++) {
    for (let s = 0; s < sites; s++) restoreRetained(c, `/site${s}/dev${d}/temp`, { s, d }, 1000);
  }
}

/** The retained values a new subscriber of `pattern` gets, by topic (a repeat fails). */
async function snapshot(c: BrokerCore, pattern: string): Promise<Map<string, unknown>> {
  const sink = new FakeSink();
  const { sub } = c.subscribe(sink, { topic: pattern });
  sub.release();
  // A large snapshot goes out over several turns.
  await waitUntil(() => !sub.snapshotting, "the snapshot sent", 5000);
  const got = new Map<string, unknown>();
  for (const d of sink.written) {
    assert.ok(d.retained, `${d.topic} came as retained`);
    assert.ok(!got.has(d.topic), `${d.topic} came once`);
    got.set(d.topic, d.value);
  }
  return got;
}

Deno.test("restored topics: exact and wildcard subscribers get every value before any placing", async () => {
  const c = core();
  restoreGrid(c, 10, 50);
  assert.equal(c.topics.unplaced, 500, "nothing placed yet");
  assert.equal(c.retained.count, 500);
  const exact = await snapshot(c, "/site3/dev7/temp");
  assert.deepEqual([...exact], [["/site3/dev7/temp", { s: 3, d: 7 }]]);
  assert.equal(c.topics.unplaced, 450, "a subscribe places only its first segment's topics");
  const sites = await snapshot(c, "/+/dev7/temp");
  assert.equal(sites.size, 10);
  for (let s = 0; s < 10; s++) assert.deepEqual(sites.get(`/site${s}/dev7/temp`), { s, d: 7 });
  assert.equal(c.topics.unplaced, 0, "a pattern beginning with + places them all");
  assert.equal((await snapshot(c, "/")).size, 500);
});

Deno.test("restored topics: a subscribe in the middle of the build gets each value once", async () => {
  const c = core();
  restoreGrid(c, 4, 3000);
  // Part of the build done (as after a few turns), and a publish to a waiting topic meanwhile.
  assert.equal(placeRestored(c, PLACE_PER_TURN), true);
  assert.ok(c.topics.unplaced > 0 && c.topics.unplaced < 12_000);
  c.publish("/site2/dev5/temp", "newer");
  c.publish("/site9/new", "made after the start");
  const all = await snapshot(c, "/");
  assert.equal(all.size, 12_001);
  assert.equal(all.get("/site2/dev5/temp"), "newer", "the value published after the restart");
  assert.deepEqual(all.get("/site3/dev2999/temp"), { s: 3, d: 2999 });
  // The subscriber's snapshot is a cursor: the rest of the build cannot repeat a value in it.
  const sink = new FakeSink();
  sink.size = 64 * 1024; // a few hundred deliveries fill the subscriber's budget
  sink.stalled = true;
  const c2 = core();
  restoreGrid(c2, 4, 3000);
  placeRestored(c2, 100);
  const s = c2.subscribe(sink, { topic: "/site1" }).sub;
  s.release();
  assert.ok(sink.written.length < 3000, "the snapshot waits for the subscriber");
  while (placeRestored(c2, PLACE_PER_TURN));
  sink.drain();
  await waitUntil(() => !s.snapshotting, "the snapshot sent", 5000);
  const topics = sink.written.map((d) => d.topic);
  assert.equal(topics.length, 3000);
  assert.equal(new Set(topics).size, 3000, "no value twice");
});

Deno.test("restored topics: a subscription to / reads the index and waits for no build", async () => {
  const c = core();
  restoreGrid(c, 4, 2000);
  placeRestored(c, 100);
  c.publish("/$sys/x", "hidden from /");
  const sink = new FakeSink();
  sink.size = 64 * 1024; // a few hundred deliveries fill the subscriber's budget
  sink.stalled = true;
  const answer = c.subscribe(sink, { topic: "/" });
  assert.equal(answer.topicCount, 8001);
  assert.equal(answer.topics.length, 1000);
  assert.equal(answer.complete, true);
  assert.equal(c.topics.unplaced, 7900, "nothing placed for it");
  answer.sub.release();
  assert.ok(sink.written.length < 8000, "the snapshot waits for the subscriber");
  // The build goes on, and a value changes, while the snapshot is under way.
  while (placeRestored(c, PLACE_PER_TURN));
  c.publish("/site0/dev1999/temp", "changed");
  sink.drain();
  await waitUntil(() => !answer.sub.snapshotting, "the snapshot sent", 5000);
  const retained = sink.written.filter((d) => d.retained).map((d) => d.topic);
  assert.equal(new Set(retained).size, retained.length, "no value twice");
  assert.ok(!retained.includes("/$sys/x"));
  assert.ok(!retained.includes("/site0/dev1999/temp"), "the change comes live, not retained");
  assert.equal(retained.length, 7999);
  assert.deepEqual(sink.written.at(-1), {
    sid: answer.sub.sid,
    topic: "/site0/dev1999/temp",
    value: "changed",
    retained: false,
  });
});

Deno.test("restored topics: a topic listing and its counts are whole during the build", () => {
  const c = core();
  restoreGrid(c, 3, 100);
  const { topics, truncated } = c.listTopics("/site1");
  assert.equal(topics.length, 100);
  assert.equal(truncated, false);
  assert.ok(topics.every((t) => t.retained));
  const sub = c.subscribe(new FakeSink(), { topic: "/+/dev1" });
  assert.equal(sub.topicCount, 3);
  assert.deepEqual(sub.topics.sort(), ["/site0/dev1/temp", "/site1/dev1/temp", "/site2/dev1/temp"]);
});

Deno.test("restored topics: bytes count what exists, and equal a tree built by publishes", () => {
  const restored = core();
  restoreGrid(restored, 5, 40);
  const flat = restored.topics.bytes;
  let names = 0;
  for (let d = 0; d < 40; d++) for (let s = 0; s < 5; s++) names += `/site${s}/dev${d}/temp`.length;
  assert.equal(flat, 200 * TOPIC_BYTES + names, "no nodes yet: the topics and their names");
  while (placeRestored(restored, 7));
  const published = core();
  for (let d = 0; d < 40; d++) {
    for (let s = 0; s < 5; s++) published.publish(`/site${s}/dev${d}/temp`, { s, d });
  }
  assert.equal(restored.topics.bytes, published.topics.bytes);
  assert.ok(restored.topics.bytes > flat + 200 * NODE_BYTES, "the nodes counted once made");
});

Deno.test("restored topics: max-topic-bytes holds once the nodes are made (oldest forgotten)", async () => {
  const probe = core();
  restoreGrid(probe, 2, 500);
  const flat = probe.topics.bytes;
  while (placeRestored(probe, PLACE_PER_TURN));
  // Between what the topics count flat and what they count with their nodes.
  const budget = Math.floor((flat + probe.topics.bytes) / 2);
  const c = core({ maxTopicBytes: budget });
  restoreGrid(c, 2, 500);
  assert.equal(c.topics.size, 1000, "flat, all fit");
  while (placeRestored(c, 64));
  assert.ok(c.topics.bytes <= budget, `${c.topics.bytes} within ${budget}`);
  assert.ok(c.topicsEvicted > 0);
  assert.equal(c.topics.size + c.topicsEvicted, 1000);
  assert.equal(c.retained.count, c.topics.size, "a forgotten topic's value went with it");
  assert.equal((await snapshot(c, "/")).size, c.topics.size);
  // The first restored were the least recently active: they went first.
  assert.equal(c.topics.get("/site0/dev0/temp"), undefined);
  assert.ok(c.topics.get("/site1/dev499/temp") !== undefined);
});

Deno.test("restored topics: max-topics forgets waiting topics, which are then never placed", async () => {
  const c = core({ maxTopics: 150 });
  restoreGrid(c, 2, 100);
  assert.equal(c.topics.size, 150);
  assert.equal(c.topicsEvicted, 50);
  while (placeRestored(c, PLACE_PER_TURN));
  assert.equal(c.topics.unplaced, 0);
  assert.equal((await snapshot(c, "/")).size, 150);
  assert.equal(c.listTopics("/").topics.length, 150);
});

Deno.test({
  name: "broker restarted on 12,000 retained values: subscribers served right away get them all",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const first = await startDist(["broker", "--port", "0", "--data-dir", dir], {
        timeoutMs: 30_000,
      });
      const pub = await dial({ host: "127.0.0.1", port: first.port }, {
        role: "client",
        name: "fill",
      });
      const batch: Promise<unknown>[] = [];
      for (let i = 0; i < 12_000; i++) {
        // Confirmed (an id): durable once answered.
        batch.push(pub.call("broker.publish", { topic: `/s${i % 12}/d${i}`, value: { i } }));
        if (batch.length === 500) await Promise.all(batch.splice(0));
      }
      await Promise.all(batch);
      pub.close();
      await first.stop();

      const b = await startDist(["broker", "--port", "0", "--data-dir", dir], {
        timeoutMs: 30_000,
      });
      try {
        const at = { host: "127.0.0.1", port: b.port };
        const subscriber = (seen: Map<string, unknown>) =>
          dial(at, {
            role: "client",
            name: "sub",
            onNotification: (_method, p) => {
              const m = p as { topic: string; value: unknown; retained: boolean };
              assert.ok(m.retained);
              seen.set(m.topic, m.value);
            },
          });
        const all = new Map<string, unknown>();
        const one = new Map<string, unknown>();
        const [peer, exact] = await Promise.all([subscriber(all), subscriber(one)]);
        // At once, while the restored topics may still be waiting for their branches.
        await Promise.all([
          exact.call("broker.subscribe", { topic: "/s11/d1007" }),
          peer.call("broker.subscribe", { topic: "/+" }),
        ]);
        await waitUntil(() => all.size === 12_000, "12,000 retained values", 15_000);
        assert.deepEqual([...one], [["/s11/d1007", { i: 1007 }]]);
        assert.deepEqual(all.get("/s11/d11999"), { i: 11999 });
        exact.close();
        const stats = await peer.call("sys.stats") as {
          store: { restored: number; unplaced: number };
        };
        assert.equal(stats.store.restored, 12_000);
        assert.equal(stats.store.unplaced, 0, "the tree is built");
        peer.close();
      } finally {
        await b.stop();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
